"""`aiops compile`: check -> plan -> render -> train -> verify -> evidence -> write.

Output depends only on the spec, the data and the tool's (and its libraries') versions:
no clocks, sorted keys, byte-identical on a second run.
"""
from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import estimators as E
from .check import check
from .diagnostics import Diagnostic, render_all
from .load import parse_path
from .monitoring_plan import render_monitoring
from .plan import Plan, build_plan
from .render import render_code

MANIFEST_SCHEMA = 2  # 2: signature in manifest.sig, policy and gate recorded


class BuildFailed(Exception):
    def __init__(self, text: str, code: int):
        super().__init__(text)
        self.text = text
        self.code = code


@dataclass
class Progress:
    total: int
    quiet: bool = False
    step: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def __call__(self, msg: str) -> None:
        self.step += 1
        if not self.quiet:
            print(f"[{self.step}/{self.total}] {msg}", file=sys.stderr, flush=True)

    def done(self, msg: str) -> None:
        if not self.quiet:
            print(f"      {msg} ({time.perf_counter() - self.t0:.1f}s)", file=sys.stderr, flush=True)


from runtime.stable import dumps  # noqa: E402,F401 - re-exported for the build steps


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _import_pipeline(folder: Path, plan: Plan):
    """Import the generated pipeline package from `folder` under a private name."""
    pkg = f"_aiops_generated_{plan.name}_{abs(hash(str(folder))) % 10**8}"
    spec = importlib.util.spec_from_file_location(pkg, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[pkg] = mod
    before, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the artefacts
    try:
        spec.loader.exec_module(mod)
        return {name: importlib.import_module(f"{pkg}.{name}") for name in ("schema", "features", "train")}
    finally:
        sys.dont_write_bytecode = before


def compile_spec(spec_dir: str, overrides: list[str], out: str | None = None, check_only: bool = False,
                 quiet: bool = False) -> int:
    loaded, spec, diags = check(spec_dir, overrides)
    if spec is None or loaded is None or any(d.is_error for d in diags):
        raise BuildFailed(render_all(diags), 2)
    src = (loaded.spec_dir / spec.data.source).resolve()
    try:
        data_rel = str(src.relative_to(Path.cwd().resolve()))
    except ValueError:
        data_rel = str(src)
    plan = build_plan(loaded, spec, data_rel)
    from .compliance import missing_error, missing_sections

    missing = missing_sections(plan)  # fail before training, not after it
    if missing:
        exc = missing_error(plan, missing)
        path = parse_path(missing[0].key)
        loc = loaded.sources.locate(path)
        raise BuildFailed(render_all([Diagnostic("E905", exc.summary, missing[0].key, loc,
                                                 loaded.sources.line_of(loc), tuple(exc.notes), exc.help)]), 2)
    out_dir = Path(out) if out else Path("generated") / plan.name
    from .cli import UserError
    from .sign import signing_key

    try:
        signing_key(plan.spec)  # a build the policy wants signed fails here, before training, without a key
    except UserError as exc:
        raise BuildFailed(f"error[E906]: {exc}", 2) from None
    files = render_code(plan)
    files.update(render_monitoring(plan))
    with tempfile.TemporaryDirectory(prefix="aiops-build-") as tmp:
        stage = Path(tmp) / plan.name
        for rel, text in files.items():
            p = stage / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        from .train import train_and_verify

        try:
            result = train_and_verify(plan, spec, stage, Progress(7, quiet=quiet))
        except Exception as exc:
            from runtime.training import DataError

            if isinstance(exc, DataError):
                raise BuildFailed(render_all([_data_diag(exc, loaded)]), 2) from None
            raise
        write_manifest(stage, plan, result)
        if check_only:
            return compare(stage, out_dir, plan)
        _replace(stage, out_dir)
    from .registry import record_run

    record_run(spec.env.registry, plan, out_dir, result)
    blessed = result["blessed"]
    if not quiet:
        print(f"wrote {out_dir} ({sum(p.is_file() for p in out_dir.rglob('*'))} files); "
              f"model {'BLESSED' if blessed else 'NOT BLESSED'}", file=sys.stderr)
    if not blessed:
        failed = [t for t in result["evaluation"]["thresholds"] if not t["passed"]]
        lines = ["error[E902]: the model did not pass its gate; it is marked not blessed and will not be served",
                 f"  --> {out_dir / 'evidence' / 'evaluation.json'}"]
        for t in failed:
            lines.append(f"   = {t['kind']} {t['name']}: {t['value_text']} (needs {t['bound_text']})")
        if not failed:
            lines.append("   = the spec sets no threshold: with no thresholds, nothing is blessed")
        lines.append("   = help: the evidence is kept for inspection; improve the model or revisit the thresholds")
        raise BuildFailed("\n".join(lines), 1)
    return 0


def _data_diag(exc, loaded) -> Diagnostic:
    """A build-time error (data, training, document) as a diagnostic located at the data source."""
    return Diagnostic("E901", exc.summary, "data.source", loaded.sources.locate(("data", "source")),
                      None, tuple(exc.notes), exc.help)


def write_manifest(stage: Path, plan: Plan, result: dict[str, Any]) -> None:
    """manifest.json over every file of `stage`, then manifest.sig over all of them when a signing
    key is set (required by the policy: compiler/sign.py)."""
    from .sign import sign_folder, signature_policy, signing_key

    key = signing_key(plan.spec)

    files = {}
    for p in sorted(stage.rglob("*")):
        if p.is_file() and p.relative_to(stage).as_posix() not in ("manifest.json", "manifest.sig"):
            b = p.read_bytes()
            files[str(p.relative_to(stage))] = {"sha256": sha256_bytes(b), "size": len(b)}
    body = {
        "manifest_schema": MANIFEST_SCHEMA,
        "name": plan.name,
        "version": plan.version,
        "tool": {"name": "aiops", "version": plan.tool_version},
        "libraries": E.versions(),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "spec": {"dir": plan.spec_dir, "hash": plan.spec_hash, "overrides": list(plan.overrides),
                 "choices": dict(plan.choices)},
        "data": {"source": plan.data_source, "sha256": result["data"]["sha256"]},
        "blessed": result["blessed"],
        "gate": {k: plan.train_config[k] for k in ("evaluation", "slices", "fairness")},
        "policy": signature_policy(plan.spec),
        "files": files,
    }
    (stage / "manifest.json").write_text(dumps(body))
    if key is not None:
        sign_folder(stage, plan.name, key)


def _replace(stage: Path, out_dir: Path) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_old = out_dir.with_name(out_dir.name + ".old")
    if tmp_old.exists():
        shutil.rmtree(tmp_old)
    new = out_dir.with_name(out_dir.name + ".new")
    if new.exists():
        shutil.rmtree(new)
    shutil.copytree(stage, new)
    if out_dir.exists():
        out_dir.rename(tmp_old)
    new.rename(out_dir)
    if tmp_old.exists():
        shutil.rmtree(tmp_old)


def compare(stage: Path, out_dir: Path, plan: Plan) -> int:
    want = {str(p.relative_to(stage)): p.read_bytes() for p in stage.rglob("*") if p.is_file()}
    have = {str(p.relative_to(out_dir)): p.read_bytes() for p in out_dir.rglob("*") if p.is_file()} \
        if out_dir.is_dir() else {}
    stale = sorted(k for k in want if have.get(k) != want[k])
    extra = sorted(k for k in have if k not in want)
    if not stale and not extra:
        print(f"ok: {out_dir} is up to date with {plan.spec_dir}", file=sys.stderr)
        return 0
    print(f"error[E903]: {out_dir} is stale: it is not what {plan.spec_dir} and its data produce now",
          file=sys.stderr)
    for k in stale:
        print(f"   = {'changed' if k in have else 'missing'}: {out_dir / k}", file=sys.stderr)
    for k in extra:
        print(f"   = not generated any more: {out_dir / k}", file=sys.stderr)
    print(f"   = help: run '{plan.regenerate}' and commit {out_dir}", file=sys.stderr)
    return 1
