"""Shared by the benchmarks: the bundled examples, the same scikit-learn pipeline the
compiler fitted, inputs of a given size, timing and process statistics.

Nothing here writes into generated/: inputs, outputs and virtual environments go under
.aiops/bench/ (ignored by git).
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable


ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".aiops" / "bench"
RESULTS = Path(__file__).resolve().parent / "results"
DATA = {"credit_risk": ROOT / "specs" / "credit_risk" / "data" / "german_credit.csv",
        "flight_delays": ROOT / "specs" / "flight_delays" / "data" / "flights_2013.parquet"}
DATA_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"  # bench only

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def artefacts(name: str, given: str | None = None) -> Path:
    d = Path(given) if given else ROOT / "generated" / name
    if not (d / "manifest.json").is_file():
        sys.exit(f"no artefacts at {d}: run 'aiops compile specs/{name}' first")
    return d


def trust(art: Path) -> None:
    """Configure this process (and the processes it starts) to trust the artefacts as their
    deployment would: the examples signed with the repository's TEST-ONLY key are verified
    against it; an unsigned example runs with no trusted keys configured, as `aiops score`
    and `aiops serve` run it."""
    if (art / "manifest.sig").is_file():
        os.environ["AIOPS_TRUSTED_KEYS"] = str(ROOT / "tests" / "keys" / "TEST_ONLY_trusted.keys")
    else:
        os.environ.pop("AIOPS_TRUSTED_KEYS", None)


def bench_env() -> dict[str, str]:
    """The environment for the processes under test: the bench's data key (credit_risk
    encrypts at rest) and audit log keys, no API keys (open mode, as a benchmark has no clients to tell apart)."""
    env = {k: v for k, v in os.environ.items() if k not in ("AIOPS_API_KEYS", "PROMETHEUS_MULTIPROC_DIR")}
    env.setdefault("AIOPS_DATA_KEY", DATA_KEY)
    env.setdefault("AIOPS_LOG_KEY", "11" * 32)  # credit_risk enables the audit log: the server needs its keys
    env.setdefault("AIOPS_LOG_SIGNING_KEY", "22" * 32)
    # the repository first; then what the caller had (a worktree's import shim, docs: COMMON)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                       if p])
    return env


def read_table(name: str):
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    p = DATA[name]
    return pcsv.read_csv(p) if p.suffix == ".csv" else pq.read_table(p)


def repeat_table(table, rows: int, unique: list[str] = ()):
    """`rows` rows of the real data, repeated as often as needed. `unique`: text columns the
    contract declares unique; their values get a suffix per repetition (`-r2`, ...) so that
    they stay unique, as in real data (else the repeats would be quarantined as duplicates)."""
    import pyarrow as pa

    reps = -(-rows // table.num_rows)
    copies = []
    for r in range(reps):
        t = table
        for c in (u for u in unique if u in table.column_names and r):
            keys = [None if k is None else f"{k}-r{r}" for k in t.column(c).to_pylist()]
            t = t.set_column(t.schema.get_field_index(c), c, pa.array(keys, t.schema.field(c).type))
        copies.append(t)
    return pa.concat_tables(copies).slice(0, rows).combine_chunks()


def write_input(table, path: Path) -> Path:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        pq.write_table(table, path, compression="zstd", row_group_size=100_000)
    return path


def fitted_pipeline(art: Path):
    """The scikit-learn pipeline of the artefacts, fitted as `aiops compile` fits it: the
    generated pipeline/train.py model(), on the contract-clean rows of the spec's data,
    with the same features, split and seed (cached in .aiops/bench by manifest hash)."""
    import hashlib
    import pickle

    import sklearn

    key = hashlib.sha256((art / "manifest.json").read_bytes() + sklearn.__version__.encode()).hexdigest()[:16]
    cache = WORK / f"sklearn-{art.name}-{key}.pkl"
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    pipe = _fit(art)
    WORK.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(pipe))
    return pipe


def _fit(art: Path):
    import warnings

    from aiops.runtime.contract import Contract
    from aiops.runtime.features import FeatureStep
    from aiops.compiler.training import labels, model_frame, read_table as read_frame, split, validate

    pkg = f"_bench_pipeline_{art.name}"
    spec = importlib.util.spec_from_file_location(pkg, art / "pipeline" / "__init__.py",
                                                  submodule_search_locations=[str(art / "pipeline")])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[pkg] = mod
    spec.loader.exec_module(mod)
    train = importlib.import_module(f"{pkg}.train")
    schema = importlib.import_module(f"{pkg}.schema")
    cfg = train.CONFIG
    contract = Contract.load(art / "contract.json")
    feats = json.loads((art / "features.json").read_text())
    steps = [FeatureStep.from_dict(s) for s in feats["steps"]]
    # read and validated as `aiops compile` does (training.read_table, then the contract core); the
    # quarantine's PII masking needs a key, which changes nothing here (the quarantine is not kept)
    os.environ.setdefault("AIOPS_MASK_SALT", "bench-only-mask-salt-0123456789abcdef")
    v = validate(read_frame(ROOT / train.DATA, train.DATA_FORMAT, renames=contract.renames), schema.SCHEMA, contract)
    cols = v.columns
    y = labels(v.frame, cfg)
    frame, feed = model_frame(steps, cols)
    tr = split(frame, cols, y, cfg)["train"]
    pipe = train.model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(frame.iloc[tr], y[tr])
    return pipe


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def spread(xs: list[float]) -> float:
    """(max - min) / median: how noisy the repeats were."""
    return (max(xs) - min(xs)) / median(xs) if xs and median(xs) else float("nan")


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average_1m_at_start": round(load[0], 2)}


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of a process, by thread name (and id: names repeat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        key = "event loop" if task.name == str(pid) else f"{name}[{task.name}]"
        out[key] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its live descendants (uvicorn workers)."""
    total = proc_cpu_seconds(pid)
    for child in _children(pid):
        total += tree_cpu_seconds(child)
    return total


def _children(pid: int) -> list[int]:
    out = []
    for p in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(x) for x in p.read_text().split()]
        except OSError:
            pass
    return out


def write_results(name: str, results: dict[str, Any], quick: bool = False) -> Path:
    """bench/results/NAME.json for a full run; a --quick run (a direction check, not a
    record) goes to .aiops/bench/NAME-quick.json and leaves the recorded results alone."""
    folder = WORK if quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{name}-quick.json" if quick else f"{name}.json")
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def fmt_table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(c: Any) -> str:
    if isinstance(c, float):
        if c != c:
            return "-"
        return f"{c:,.0f}" if abs(c) >= 100 else f"{c:.2f}"
    return str(c)
