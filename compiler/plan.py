"""plan: resolve a checked spec into frozen dataclasses. Templates see only this.

Every name, default, dtype, import and constructor is decided here; the templates print.
"""
from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from typing import Any

from aiops.compiler import __version__
from aiops.compiler import estimators as E
from aiops.compiler import schema as S
from aiops.compiler.load import Loaded

# pandas' nullable dtypes: the schema re-checks rows the contract core accepted (docs/contract.md)
PANDERA_DTYPE = {"int": "Int64", "float": "float64", "str": "str", "category": "str", "bool": "boolean",
                 "date": "str", "datetime": "str"}


@dataclass(frozen=True)
class ColumnPlan:
    name: str
    dtype: str
    pandera_dtype: str  # the dtype expression pandera coerces to
    nullable: bool
    checks: tuple[tuple[str, tuple[Any, ...]], ...]  # (pandera.Check method, its arguments)
    unique: bool
    unique_nulls_aside: bool  # nullable and unique: as the contract core, a null is no value, so no repeat
    formats: tuple[str, ...]
    pii: bool
    sensitive: bool
    masking: str | None
    description: str
    required: bool  # needed by a scoring request (a model feature reads it)
    known_after_outcome: bool  # leakage: never a model input (`aiops check` E328)
    contract: dict  # the runtime contract entry (contract.json)


@dataclass(frozen=True)
class EncoderPlan:
    """The scikit-learn transformer of one model input: an encoder, or impute -> bins -> scale."""
    kind: str  # onehot | ordinal | numeric
    categories: tuple[str, ...] = ()  # ordinal
    impute: str = "median"  # numeric: SimpleImputer strategy
    fill_value: float | None = None  # impute "constant"
    bins: int | None = None  # numeric: KBinsDiscretizer quantile bins
    scaler: str | None = None  # numeric: StandardScaler | MinMaxScaler | RobustScaler
    min_frequency: int | float | None = None  # onehot: rarer categories share the "other" column
    max_categories: int | None = None  # onehot: at most this many columns, "other" included


@dataclass(frozen=True)
class FeaturePlan:
    name: str
    transform: str
    source: str
    other: str | None
    kind: str  # numeric | categorical
    step_args: tuple[tuple[str, Any], ...]  # the FeatureStep(...) keyword arguments the template prints
    encoder: "EncoderPlan"  # the scikit-learn transformer of this input
    step: dict  # the runtime FeatureStep fields (features.json)
    summary: str  # one line for humans


@dataclass(frozen=True)
class DroppedPlan:
    name: str
    source: str
    reason: str


@dataclass(frozen=True)
class Plan:
    name: str
    version: str
    description: str
    spec_dir: str
    spec_hash: str
    overrides: tuple[str, ...]
    choices: tuple[tuple[str, str], ...]
    tool_version: str
    regenerate: str
    task: str
    target: str
    positive_class: str | None
    key: str | None
    data_source: str  # relative to the repository root (cwd)
    data_format: str
    columns: tuple[ColumnPlan, ...]
    features: tuple[FeaturePlan, ...]
    dropped: tuple[DroppedPlan, ...]
    estimator: str
    estimator_module: str
    params: tuple[tuple[str, Any], ...]
    has_proba: bool
    encoder_imports: tuple[tuple[str, tuple[str, ...]], ...]  # (module, names) that features.py imports
    train_config: dict  # the generated pipeline's CONFIG: task, target, rejection tolerance, split
    verify_config: dict  # the compiler's checks of the fitted model: thresholds, parity, explainability
    security: S.Security  # masking (of the quarantine too), roles, audit log, encryption, signing key
    serving: S.Serving
    risk_tier: str  # governance.risk_tier: a high-risk model is never served without API keys
    problem: S.Problem  # the typed spec sections the documents read
    kpis: tuple[S.KPI, ...]
    data: S.Data
    feature_specs: tuple[S.Feature, ...]
    thresholds: S.Thresholds
    monitoring: S.Monitoring
    governance: S.Governance
    env: S.Env  # where the registry is (governance.json, the compliance document)


def _checks(c: S.Column) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """pandera checks of a column, as (pa.Check method, arguments); a date column's format check
    is the template's (it needs the column's formats only)."""
    out: list[tuple[str, tuple[Any, ...]]] = []
    ch = c.checks
    for op in ("ge", "le", "gt", "lt"):
        v = getattr(ch, op)
        if v is not None and c.dtype not in ("date", "datetime"):
            v = int(v) if c.dtype == "int" and float(v).is_integer() else v
            name = {"ge": "greater_than_or_equal_to", "le": "less_than_or_equal_to",
                    "gt": "greater_than", "lt": "less_than"}[op]
            out.append((name, (v,)))
    if ch.isin is not None:
        vals = [str(v) for v in ch.isin] if c.dtype in ("str", "category") else list(ch.isin)
        out.append(("isin", (vals,)))
    if ch.regex is not None:
        out.append(("str_matches", (ch.regex,)))
    if ch.str_length is not None and (ch.str_length.min is not None or ch.str_length.max is not None):
        out.append(("str_length", (ch.str_length.min, ch.str_length.max)))
    return tuple(out)


def _contract_entry(name: str, c: S.Column, required: bool, masking: str | None) -> dict:
    ch = c.checks
    return {
        "name": name, "dtype": c.dtype, "nullable": c.nullable, "required": required,
        "ge": ch.ge, "le": ch.le, "gt": ch.gt, "lt": ch.lt,
        "isin": list(ch.isin) if ch.isin is not None else None,
        "regex": ch.regex,
        "min_length": ch.str_length.min if ch.str_length else None,
        "max_length": ch.str_length.max if ch.str_length else None,
        "unique": ch.unique, "formats": list(c.formats), "pii": c.pii, "sensitive": c.sensitive,
        "masking": masking, "source_name": c.source_name,
    }


def row_check_entries(data: S.Data) -> list[dict]:
    """The contract.json entries of data.row_checks (checked by `aiops check`: E230)."""
    from aiops.runtime import rowchecks

    dtypes = {n: c.dtype for n, c in data.columns.items()}
    return [{"name": r.name, "check": r.check, **rowchecks.resolve(rowchecks.parse(r.check), dtypes)}
            for r in data.row_checks]


def contract_dict(plan: "Plan") -> dict:
    """contract.json: the columns, the target, the key and the row checks."""
    return {"columns": [c.contract for c in plan.columns], "target": plan.target, "key": plan.key,
            "row_checks": row_check_entries(plan.data)}


def _encoder(f: S.Feature) -> tuple[EncoderPlan, set[tuple[str, str]]]:
    """The scikit-learn transformer for one model input, and the (module, name) pairs it imports."""
    pre = "sklearn.preprocessing"
    if f.transform == "onehot":
        return EncoderPlan("onehot", min_frequency=f.min_frequency, max_categories=f.max_categories), \
            {(pre, "OneHotEncoder")}
    if f.transform == "ordinal":
        return EncoderPlan("ordinal", categories=tuple(str(c) for c in f.categories)), {(pre, "OrdinalEncoder")}
    names = {("sklearn.pipeline", "Pipeline"), ("sklearn.impute", "SimpleImputer")}
    strategy = f.impute or ("most_frequent" if f.transform in ("bucketize", "date_part") else "median")
    bins = f.bins if f.transform == "bucketize" and isinstance(f.bins, int) else None
    if bins is not None:
        names.add((pre, "KBinsDiscretizer"))
    scaler = None
    if f.scale is not None:
        scaler = {"standard": "StandardScaler", "minmax": "MinMaxScaler", "robust": "RobustScaler"}[f.scale]
        names.add((pre, scaler))
    fill = float(f.fill_value) if strategy == "constant" else None
    return EncoderPlan("numeric", impute=strategy, fill_value=fill, bins=bins, scaler=scaler), names


def _step(f: S.Feature) -> dict:
    from aiops.runtime.features import reference_days

    edges = tuple(float(b) for b in f.bins) if isinstance(f.bins, list) else None
    return {"name": f.name, "transform": f.transform, "source": f.source, "other": f.other,
            "reference_days": reference_days(f.reference), "part": f.part,
            "clip_min": f.min if f.transform == "clip" else None,
            "clip_max": f.max if f.transform == "clip" else None,
            "edges": list(edges) if edges else None}


def _step_args(step: dict) -> tuple[tuple[str, Any], ...]:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in step.items()
                 if v is not None or k in ("name", "transform", "source"))


def _summary(f: S.Feature) -> str:
    t = f.transform
    base = {
        "passthrough": f"{f.source} as is", "impute": f"{f.source}", "scale": f"{f.source}",
        "onehot": f"one-hot of {f.source}" + _rare(f), "ordinal": f"ordinal code of {f.source} in {f.categories}",
        "log": f"log(1 + {f.source})", "clip": f"{f.source} clipped to [{f.min}, {f.max}]",
        "bucketize": f"bucket of {f.source} ({f.bins if isinstance(f.bins, int) else 'edges ' + str(f.bins)})",
        "days_between": f"days from {f.other or f.reference} to {f.source}",
        "date_part": f"{f.part} of {f.source}", "ratio": f"{f.source} / {f.other}",
        "difference": f"{f.source} - {f.other}",
    }[t]
    extra = []
    if t not in ("onehot", "ordinal"):
        extra.append(f"missing -> {f.impute or ('most frequent' if t in ('bucketize', 'date_part') else 'median')}")
    if f.scale:
        extra.append(f"{f.scale} scaling")
    return base + (f" ({', '.join(extra)})" if extra else "")


def _labels(col: S.Column) -> dict[str, str]:
    """A column's labels keyed as runtime/evaluation.groups_of writes its values: a bool is 1 or 0."""
    if col.dtype != "bool":
        return dict(col.labels)
    return {{"true": "1", "false": "0"}.get(k.lower(), k): v for k, v in col.labels.items()}


def _slice_rules(spec: S.Spec) -> list[dict]:
    """thresholds.slices, each with the readable names of its column's codes (when it has labels)."""
    out = []
    for sb in spec.thresholds.slices:
        rule = jsonable(sb)
        col = spec.data.columns.get(sb.column)
        if col is not None and col.labels and not sb.bins:
            rule["labels"] = _labels(col)
        out.append(rule)
    return out


def _fairness_rules(spec: S.Spec) -> list[dict]:
    """thresholds.fairness, each with how its groups are named: the attribute column's labels,
    or the indicator columns of data.indicators (runtime/evaluation.attribute_groups)."""
    out = []
    for fb in spec.thresholds.fairness:
        rule = jsonable(fb)
        ind = spec.data.indicators.get(fb.attribute)
        col = spec.data.columns.get(fb.attribute)
        rule["labels"] = _labels(col) if col is not None and col.labels and not fb.bins else None
        rule["indicators"] = dict(ind.columns) if ind is not None else None
        out.append(rule)
    return out


def _rare(f: S.Feature) -> str:
    parts = ([f"categories seen fewer than {f.min_frequency} times" if isinstance(f.min_frequency, int)
              else f"categories under {f.min_frequency:.2%} of the rows"] if f.min_frequency is not None else []) + \
        ([f"all but the {f.max_categories - 1} most frequent"] if f.max_categories is not None else [])
    return f" (other: {' and '.join(parts)}, and unseen ones)" if parts else ""


def jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {k: jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj


def _rel(p) -> str:
    from pathlib import Path

    try:
        return Path(p).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(p).resolve().as_posix()


def build_plan(loaded: Loaded, spec: S.Spec, data_source: str) -> Plan:
    live = [f for f in spec.features if f.transform != "drop"]
    dropped = tuple(DroppedPlan(f.name, f.source, f.reason or "not used") for f in spec.features
                    if f.transform == "drop")
    needed = {s for f in live for s in (f.source, f.other) if s}
    masking = {k: m.method for k, m in spec.security.masking.items()}
    columns = []
    for name, c in spec.data.columns.items():
        columns.append(ColumnPlan(
            name=name, dtype=c.dtype, pandera_dtype=PANDERA_DTYPE[c.dtype], nullable=c.nullable,
            checks=_checks(c), unique=c.checks.unique and not c.nullable,
            unique_nulls_aside=c.checks.unique and c.nullable, formats=tuple(c.formats), pii=c.pii, sensitive=c.sensitive,
            masking=masking.get(name), description=c.description, required=name in needed,
            known_after_outcome=c.known_after_outcome, contract=_contract_entry(name, c, name in needed, masking.get(name)),
        ))
    imports: set[tuple[str, str]] = {("sklearn.compose", "ColumnTransformer")}
    feats = []
    for f in live:
        enc, names = _encoder(f)
        imports |= names
        step = _step(f)
        feats.append(FeaturePlan(
            name=f.name, transform=f.transform, source=f.source, other=f.other,
            kind="categorical" if f.transform in ("onehot", "ordinal") else "numeric",
            step_args=_step_args(step), encoder=enc, step=step, summary=_summary(f),
        ))
    info = E.ALLOWED[spec.model.estimator]
    params = tuple(sorted(spec.model.params.items()))
    pos = None if spec.problem.positive_class is None else str(spec.problem.positive_class)
    th = spec.thresholds
    train_config = {
        "task": spec.problem.task, "target": spec.problem.target,
        "max_rejected_share": spec.data.max_rejected_share, "split": jsonable(spec.data.split),
    }
    verify_config = {
        "evaluation": {k: jsonable(b) for k, b in sorted(th.evaluation.items())},
        "slices": _slice_rules(spec), "fairness": _fairness_rules(spec), "parity": jsonable(th.parity),
        "explainability": jsonable(spec.governance.explainability),
        "seed": spec.data.split.seed,
    }
    overrides = tuple(loaded.overrides)
    spec_dir = _rel(loaded.spec_dir)
    regenerate = "aiops compile " + shlex.join([spec_dir, *overrides])  # a shell line: each word quoted
    fmt = spec.data.format or ("parquet" if data_source.endswith((".parquet", ".pq")) else "csv")
    return Plan(
        name=spec.name, version=spec.version, description=spec.description, spec_dir=spec_dir,
        spec_hash=loaded.spec_hash, overrides=overrides, choices=tuple(sorted(loaded.choices.items())),
        tool_version=__version__, regenerate=regenerate, task=spec.problem.task, target=spec.problem.target,
        positive_class=pos, key=spec.data.key, data_source=data_source, data_format=fmt,
        columns=tuple(columns), features=tuple(feats), dropped=dropped, estimator=spec.model.estimator,
        estimator_module=info.module, params=params, has_proba=info.has_proba,
        encoder_imports=tuple((m, tuple(sorted(n for mm, n in imports if mm == m)))
                              for m in sorted({m for m, _ in imports})),
        train_config=train_config, verify_config=verify_config, security=spec.security, serving=spec.serving,
        risk_tier=spec.governance.risk_tier, problem=spec.problem, kpis=tuple(spec.kpis), data=spec.data,
        feature_specs=tuple(spec.features), thresholds=spec.thresholds, monitoring=spec.monitoring,
        governance=spec.governance, env=spec.env,
    )
