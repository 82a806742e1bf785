"""`aiops monitor`: run the generated monitoring job over current data, window by window,
against the reference profile, and write report.json, report.html and alerts.json.

    verify artefacts -> read monitoring/monitoring.json + evidence/profile.json
    -> stream the current data in chunks: validate (contract), score (ONNX) or read the
       logged outputs, join labels, add each row to its window's accumulators
    -> per window: data quality, drift (corrected for many tests), prediction drift,
       performance (labels old enough only), fairness -> alerts -> files, webhook

The report depends only on the inputs (no clock): the end of the data, not today,
decides which windows' labels count (`label_delay_days`).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aiops.runtime.artefacts import ArtefactError, verify
from aiops.runtime.contract import Contract
from aiops.runtime.monitor.columns import ColumnChecker
from aiops.runtime.monitor.alerts import collect_alerts, payload, summary
from aiops.runtime.monitor.delivery import deliver
from aiops.runtime.monitor.reader import CHUNK_ROWS, Chunk, LogStats, MonitorInputError, load_labels, read_chunks, read_log
from aiops.runtime.monitor.window import Window, window_keys, window_span
from aiops.runtime.stable import clean as _clean
from aiops.runtime.stable import dumps

REPORT_SCHEMA = 1
JOB_SCHEMA = 1


class MonitorError(Exception):
    """The job cannot run: bad artefacts or input. Printed without a traceback; exit 2."""


@dataclass
class Source:
    current: Path | None = None
    log: Path | None = None
    labels: Path | None = None
    as_of: str | None = None  # YYYY-MM-DD: labels count for windows that ended label_delay_days before it
    webhook: str | None = None  # overrides monitoring.json's webhook
    chunk_rows: int = CHUNK_ROWS


@dataclass
class Outcome:
    report: dict[str, Any]
    alerts: list[dict[str, Any]]
    exit_code: int
    files: list[Path] = field(default_factory=list)
    delivery: dict[str, Any] | None = None  # the webhook's delivery record (runtime/monitor/delivery.py)


def load_job(root: Path) -> dict[str, Any]:
    p = root / "monitoring" / "monitoring.json"
    if not p.is_file():
        raise MonitorError(f"'{root}' has no monitoring/monitoring.json: it was compiled by an older aiops; "
                           "recompile it with 'aiops compile SPEC_DIR'")
    job = json.loads(p.read_text())
    if job.get("monitoring_schema") != JOB_SCHEMA:
        raise MonitorError(f"{p} has monitoring schema {job.get('monitoring_schema')!r}; this aiops reads {JOB_SCHEMA}")
    return job


def new_totals(names: list[str]) -> dict[str, Any]:
    """The run's counts across windows (merged across partitions by runtime/monitor/merge.py)."""
    return {"rows": 0, "unassigned": 0, "bad_rows": 0, "codes": {}, "labelled": 0, "absent": set(names),
            "blank": 0}


class Monitor:
    def __init__(self, artefact_dir: str | Path):
        try:
            self.art = verify(artefact_dir, action="monitor")
        except ArtefactError as exc:
            raise MonitorError(str(exc)) from None
        root = self.art.root
        self.job = load_job(root)
        self.profile = self.art.json("evidence/profile.json")
        self.features = self.art.json("features.json")
        evaluation = self.art.json("evidence/evaluation.json") if (root / "evidence/evaluation.json").is_file() else {}
        self.reference_metrics = evaluation.get("metrics", {})
        self.contract = Contract.load(root / "contract.json")
        self.classes = tuple(self.features.get("classes") or ())
        self.positive = self.features.get("positive_class")
        self.checker = ColumnChecker(self.contract)
        cols = self.job["columns"]
        prof = self.profile["columns"]
        self.tested = [c["name"] for c in cols if c["tests"] and "kind" in prof.get(c["name"], {})
                       and not prof[c["name"]].get("pii")]
        self.known: dict[str, frozenset] = {}
        for c in cols:
            if not c["unseen_categories"]:
                continue
            prof = self.profile["columns"].get(c["name"], {})
            rule = self.contract.by_name.get(c["name"])
            if "categories" in prof:
                self.known[c["name"]] = frozenset(prof["categories"])
            elif rule is not None and rule.isin is not None:
                self.known[c["name"]] = frozenset(str(v) for v in rule.isin)
        self._predictor = None
        self.pii = {c.name for c in self.contract.columns if c.pii}
        self._masker = None
        self.batch_rows = int(self.art.json("serving.json").get("serving", {}).get("batch_chunk_rows") or 50_000)
        from aiops.runtime.monitor.kpi import KPITracker

        self.kpis = KPITracker.from_artefacts(root, self.features)

    @property
    def predictor(self):
        if self._predictor is None:
            from aiops.runtime.predictor import Predictor

            self._predictor = Predictor(self.art.root)
        return self._predictor

    def _predict(self, checked: dict, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The model's outputs for the given rows: the same feature steps as serving
        (`runtime.features.derive_one`), applied once per distinct value for text columns,
        scored in batches of serving.json's batch_chunk_rows."""
        from aiops.runtime.features import derive_one

        pred = self.predictor
        feed = {}
        for step in pred.steps:
            c = checked[step.source]
            if step.onnx_type == "string" and c.uniq is not None:
                u = np.empty(len(c.uniq), dtype=object)
                u[:] = c.uniq
                feed[step.name] = derive_one(step, {step.source: u})[c.idx[rows]]
            else:
                cols = {k: checked[k].values[rows] for k in (step.source, step.other) if k}
                feed[step.name] = derive_one(step, cols)
        size = self.batch_rows
        parts = [pred.run_feed({k: v[i:i + size] for k, v in feed.items()}) for i in range(0, len(rows), size)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    # -------------------------------------------------------------- the pass
    def run(self, src: Source) -> Outcome:
        job = self.job
        from_log = src.log is not None
        labels_table, label_key = None, None
        if src.labels is not None:
            keys = ([job["label_key"]] if job["label_key"] else []) + ["prediction_id"]
            label_key, labels_table = load_labels(src.labels, keys, job["target"], self.contract.renames)
        names = [c.name for c in self.contract.request_columns]
        wanted = names + [job["target"]]
        log_stats = LogStats()
        if from_log:
            chunks = read_log(src.log, self.art.name, self.art.manifest_sha256, names, list(self.classes), log_stats,
                              self._cipher, src.chunk_rows)
        else:
            chunks = read_chunks(src.current, wanted, src.chunk_rows, self.contract.renames)
        windows: dict[int, Window] = {}
        totals = new_totals(names)
        row0 = 0
        max_day = -math.inf
        has_labels = labels_table is not None
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="aiops-monitor-score") as pool:
            for chunk in chunks:
                _count_file(chunk, totals)
                if chunk.n == 0:
                    continue
                labelled, last_day = self._process(chunk, windows, totals, row0, from_log, labels_table, label_key,
                                                   pool)
                has_labels |= labelled
                max_day = max(max_day, last_day)
                row0 += chunk.n
        if totals["rows"] == 0:
            raise MonitorError(f"no rows to monitor in '{src.log or src.current}'")
        as_of = _as_of(src.as_of, max_day)
        return self._finish(src, windows, totals, as_of, has_labels, log_stats if from_log else None)

    def _cipher(self):
        from aiops.runtime.policy import PolicyError, load_cipher

        try:
            return load_cipher(self.art.json("serving.json").get("security", {}))
        except PolicyError as exc:
            raise MonitorError(str(exc)) from None

    def _process(self, chunk: Chunk, windows: dict[int, Window], totals: dict, row0: int, from_log: bool,
                 labels_table: dict | None, label_key: str | None, pool) -> tuple[bool, float]:
        """Add one chunk to its windows; (labels seen, last day in the chunk)."""
        job = self.job
        n = chunk.n
        totals["rows"] += n
        masked = {c.name for c in self.contract.request_columns if c.pii} if from_log else set()
        checked = {}
        for rule in self.contract.request_columns:
            if rule.name in masked:
                continue
            if rule.name in chunk.columns:
                totals["absent"].discard(rule.name)
                checked[rule.name] = c = self.checker.check(rule.name, chunk.columns[rule.name], n)
                if rule.name in self.known:
                    c.mark_unseen(self.known[rule.name])
            elif rule.required:
                checked[rule.name] = self.checker.missing(rule.name, n)
        bad = np.zeros(n, dtype=bool)
        rows_checked = self.checker.check_rows(checked, n)
        for c in list(checked.values()) + ([rows_checked] if rows_checked is not None else []):
            bad |= c.bad
            for code, k in c.codes.items():
                totals["codes"][code] = totals["codes"].get(code, 0) + k
        totals["bad_rows"] += int(bad.sum())
        # times and windows
        days = None
        if job["window_by"] == "time":
            col = job["window_column"]
            if col in chunk.columns and col in checked:
                days = checked[col].values.astype(np.float64)
            elif chunk.ts_days is not None:
                days = chunk.ts_days
            else:
                raise MonitorError(f"the current data has no column '{col}': the job's windows are by time on "
                                   f"'{col}' (monitoring.window.column)")
            keys = window_keys(days, job["window_size"])
        else:
            days = chunk.ts_days
            keys = (row0 + np.arange(n)) // int(job["window_size"])
        last_day = float(np.nanmax(days)) if days is not None and (~np.isnan(days)).any() else -math.inf
        # rows to windows
        assigned = keys >= 0
        totals["unassigned"] += int((~assigned).sum())
        order = np.argsort(keys, kind="stable")
        segments = [seg for seg in np.split(order, np.flatnonzero(np.diff(keys[order])) + 1)
                    if len(seg) and keys[seg[0]] >= 0]
        # outputs: the server's (log) or the model's on the rows the contract accepts, scored in a
        # worker thread (onnxruntime releases the GIL) while the column sketches fill
        future = pool.submit(self._outputs, chunk, checked, bad, n)
        for seg in segments:
            k = int(keys[seg[0]])
            w = windows.get(k)
            if w is None:
                w = windows[k] = Window(k, job, self.profile, self.tested, self.known, self.classes, self.positive)
            w.add_data(seg, checked, bad, days)
        y = self._labels(chunk, checked, labels_table, label_key, n)
        groups = self._groups(chunk, checked)
        scored, out = future.result()
        score = self._score(out, n)
        for seg in segments:
            windows[int(keys[seg[0]])].add_outputs(seg, out, scored, score, y, groups)
            self.kpis.add(int(keys[seg[0]]), score[seg], scored[seg], None if y is None else y[seg])
        if y is not None:
            totals["labelled"] += int((y != None).sum())  # noqa: E711 (element-wise on an object array)
        return y is not None, last_day

    def _groups(self, chunk: Chunk, checked: dict) -> list[np.ndarray | None]:
        """Each fairness rule's group of every row (None when the attribute is absent)."""
        from aiops.runtime.evaluation import attribute_groups, groups_of

        groups: list[np.ndarray | None] = []
        for rule in self.job["fairness"]:
            if rule.get("indicators"):  # 0/1 columns, never PII (compiler/rules_data.check_indicators)
                groups.append(attribute_groups(rule, lambda c: checked[c].values if c in checked else None))
                continue
            attr = rule["attribute"]
            bins = list(rule["bins"]) if rule["bins"] else None
            c = checked.get(attr)
            if c is not None:
                values = c.values
                if attr in self.pii and not bins:  # a PII group is shown by its masked label
                    values = self._masked(attr, values)
            elif attr in chunk.columns:  # a PII attribute in the prediction log: masked there
                values = np.asarray(_as_objects(chunk.columns[attr]), dtype=object)
                bins = None  # a masked value is its own bucket
            else:
                groups.append(None)
                continue
            groups.append(groups_of(values, bins, None if attr in self.pii else rule.get("labels")))
        return groups

    def _masked(self, column: str, values: np.ndarray) -> np.ndarray:
        """The values of a PII column as the prediction log holds them (runtime/masking.py)."""
        if self._masker is None:
            from aiops.runtime.masking import masker_for
            from aiops.runtime.policy import PolicyError

            try:
                self._masker = masker_for(self.art.json("serving.json").get("security"), self.contract)
            except PolicyError as exc:
                raise MonitorError(str(exc)) from None
        memo: dict[Any, Any] = {}
        out = np.empty(len(values), dtype=object)
        for i, v in enumerate(values.tolist()):
            if v not in memo:
                memo[v] = self._masker.mask(column, v)
            out[i] = memo[v]
        return out

    def _outputs(self, chunk: Chunk, checked: dict, bad: np.ndarray, n: int) -> tuple[np.ndarray, dict]:
        if chunk.outputs is not None:
            out = chunk.outputs
            if "value" in out:
                scored = ~np.isnan(out["value"])
            else:
                scored = np.array([v is not None for v in out["label"].tolist()], dtype=bool) & \
                    ~np.isnan(out["probabilities"]).any(axis=1)
            return scored, out
        scored = ~bad
        if self.job["task"] == "regression":
            out = {"value": np.full(n, np.nan)}
        else:
            out = {"label": np.full(n, None, dtype=object), "probabilities": np.full((n, len(self.classes)), np.nan)}
        if scored.any():
            for k, v in self._predict(checked, np.flatnonzero(scored)).items():
                out[k][scored] = v
        return scored, out

    def _score(self, out: dict, n: int) -> np.ndarray:
        if "value" in out:
            return out["value"]
        proba = out["probabilities"]
        if self.positive is not None and len(self.classes) == 2:
            return proba[:, self.classes.index(self.positive)]
        return proba.max(axis=1) if n else np.zeros(0)

    def _labels(self, chunk: Chunk, checked: dict, table: dict | None, key: str | None, n: int):
        target = self.job["target"]
        if table is not None:
            if key == "prediction_id" and chunk.ids is not None:
                ids = chunk.ids.tolist()
            elif key in chunk.columns:
                ids = _as_objects(chunk.columns[key])
            else:
                return np.full(n, None, dtype=object)
            raw = [table.get(str(k)) if k is not None else None for k in ids]
        elif target in chunk.columns:
            fast = _arrow_labels(chunk.columns[target], self.job["task"])
            if fast is not None:
                return fast
            raw = _as_objects(chunk.columns[target])
        else:
            return None
        return _norm_labels(raw, self.job["task"])

    # -------------------------------------------------------------- verdicts
    def _finish(self, src: Source, windows: dict[int, Window], totals: dict, as_of: float | None,
                has_labels: bool, log_stats: LogStats | None) -> Outcome:
        job = self.job
        results = []
        for k in sorted(windows):
            w = windows[k]
            results.append(w.result(self._mature(w, as_of), has_labels, self.reference_metrics))
        alerts = collect_alerts(job, results, totals)
        webhook = src.webhook or job.get("webhook")
        report = {
            "report_schema": REPORT_SCHEMA,
            "model": {"name": self.art.name, "version": self.art.version, "manifest_sha256": self.art.manifest_sha256,
                      "task": job["task"], "target": job["target"], "positive_class": self.positive},
            "job": {"window": {"by": job["window_by"], "column": job["window_column"], "size": job["window_size"]},
                    "min_window_rows": job["min_window_rows"], "drift_correction": job["drift_correction"],
                    "label_delay_days": job["label_delay_days"], "as_of": _iso(as_of),
                    "label_rule": "labels count for a window when it ended at least label_delay_days before as_of "
                                  "(the day after the last day in the data, unless --as-of is given)"},
            "source": self._source(src, totals, log_stats, has_labels),
            "windows": results,
            "summary": summary(results, alerts),
            "alerts": alerts,
            "exit_code": 1 if alerts else 0,
            "kpis": self.kpis.result([(k, r, self._mature(windows[k], as_of) and has_labels)
                                      for k, r in zip(sorted(windows), results)]),
        }
        delivery = deliver(webhook, _clean(payload(report))) if webhook and alerts else None
        report["webhook"] = {k: delivery[k] for k in ("url", "status", "error")} if delivery else None
        return Outcome(report, alerts, report["exit_code"], delivery=delivery)

    def _mature(self, w: Window, as_of: float | None) -> bool:
        job = self.job
        if as_of is None:
            return True  # no time in the data: every joined label counts
        delay = job["label_delay_days"]
        if job["window_by"] == "time":
            end = window_span(w.key, "time", job["window_size"])[3]
            return end + delay <= as_of
        if w.last_day == -math.inf:
            return True
        return w.last_day + 1 + delay <= as_of

    def _source(self, src: Source, totals: dict, log_stats: LogStats | None, has_labels: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "prediction_log" if src.log is not None else "file",
            "path": str(src.log if src.log is not None else src.current),
            "rows": totals["rows"], "rows_without_window": totals["unassigned"],
            "rows_breaking_contract": totals["bad_rows"], "problems": dict(sorted(totals["codes"].items())),
            "rows_accepted": totals["rows"] - totals["bad_rows"], "blank_lines_skipped": totals["blank"],
            "absent_columns": sorted(totals["absent"]),
            "labels": {"source": ("file" if src.labels is not None else ("target column" if has_labels else None)),
                       "path": str(src.labels) if src.labels is not None else None,
                       "rows_with_label": totals["labelled"]},
        }
        if log_stats is not None:
            out["log"] = {"lines": log_stats.lines, "used": log_stats.used,
                          "skipped": dict(sorted(log_stats.skipped.items()))}
        return out

def _count_file(chunk: Chunk, totals: dict) -> None:
    """A data file's malformed records (rows in, breaking the contract) and blank lines."""
    if chunk.malformed:
        totals["rows"] += chunk.malformed
        totals["bad_rows"] += chunk.malformed
        totals["codes"]["malformed"] = totals["codes"].get("malformed", 0) + chunk.malformed
    totals["blank"] += chunk.blank


def run(artefact_dir: str | Path, src: Source, report_dir: str | Path | None = None, html: bool = True) -> Outcome:
    """Run the job and write report.json, alerts.json (and report.html) into report_dir."""
    mon = Monitor(artefact_dir)
    try:
        outcome = mon.run(src)
    except MonitorInputError as exc:
        raise MonitorError(str(exc)) from None
    return write_outcome(mon, outcome, report_dir, html)


def write_outcome(mon: Monitor, outcome: Outcome, report_dir: str | Path | None, html: bool) -> Outcome:
    """Write report.json, alerts.json (and report.html) of a finished run into report_dir."""
    out = Path(report_dir) if report_dir else Path(mon.job["report_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(dumps(outcome.report))
    (out / "alerts.json").write_text(dumps({"report_schema": REPORT_SCHEMA, "model": outcome.report["model"],
                                            "alerts": outcome.alerts,
                                            "webhook": outcome.delivery or outcome.report["webhook"]}))
    outcome.files = [out / "report.json", out / "alerts.json"]
    from aiops.runtime.monitor.kpi import prometheus

    (out / "kpis.prom").write_text(prometheus(outcome.report["model"]["name"], outcome.report["kpis"]))
    if html:
        from aiops.runtime.monitor.report import write_html

        outcome.files.append(write_html(outcome.report, out / "report.html"))
    return outcome


# ------------------------------------------------------------------ helpers
def _as_objects(a: Any) -> list:
    return a.to_pylist() if hasattr(a, "to_pylist") else list(a)


def _norm_labels(raw: list, task: str) -> np.ndarray:
    """Labels as training sees them: classes as strings ('1', not 1.0), regression floats."""
    out = np.empty(len(raw), dtype=object)
    for i, v in enumerate(raw):
        if v is None or (isinstance(v, float) and v != v):
            out[i] = None
        elif task == "regression":
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                out[i] = None
        elif isinstance(v, (float, np.floating)) and float(v).is_integer():
            out[i] = str(int(v))
        elif isinstance(v, bool):
            out[i] = str(v)
        else:
            out[i] = str(v)
    return out


def _arrow_labels(a: Any, task: str) -> np.ndarray | None:
    """Integer or string label columns from parquet, without a Python loop (None: use _norm_labels)."""
    if not hasattr(a, "type"):
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    if task == "regression" and (pa.types.is_integer(a.type) or pa.types.is_floating(a.type)):
        x = pc.cast(a, pa.float64()).to_numpy(zero_copy_only=False)
        out = x.astype(object)
        out[np.isnan(x)] = None
        return out
    if task != "regression" and (pa.types.is_integer(a.type) or pa.types.is_string(a.type)):
        return np.asarray(pc.cast(a, pa.string()).to_numpy(zero_copy_only=False), dtype=object)
    return None


def _as_of(text: str | None, max_day: float) -> float | None:
    if text:
        try:
            return float(np.datetime64(text, "D").astype(np.int64))
        except ValueError:
            raise MonitorError(f"--as-of must be a date written YYYY-MM-DD. Got {text!r} instead.") from None
    return max_day + 1 if max_day != -math.inf else None


def _iso(days: float | None) -> str | None:
    return None if days is None else str(np.datetime64(int(days), "D"))
