"""`aiops score|monitor --engine dask`: the partition functions of runtime/scale/partition.py run
as Dask tasks, one per partition of a Parquet input (a file, or a folder of files, local or
any fsspec URL).

- Partitions are row ranges of the input's files (`--partition-rows`, default 500,000), in
  file-name order; a partition knows its first row in the whole input, so row numbers, row
  windows and predictions are those of the single-process run.
- Each worker process verifies the artefacts once, checks they are the client's (manifest
  sha256), and keeps one onnxruntime session (`_cached`).
- Scoring writes each partition's predictions and quarantine to a staging folder next to the
  output: a local temporary file (through runtime.score's writer, so encryption at rest
  applies), then moved to `part-NNNNN.parquet` under its final name in one rename. A retried
  partition (a task failed, or its worker died) writes the same name again: nothing is lost or
  duplicated.
- `unique: true` holds across partitions as in one process: a first pass reads only the
  `unique` columns and returns the 64-bit hashes of each partition's distinct values; for
  hashes found in two partitions (none when the keys are unique) a second look returns the
  values themselves; the client finds the values an earlier partition holds
  (runtime/scale/unique.py, exact) and gives them to each partition's task, whose rows with
  them are duplicates, as in one process. The client moves the staged parts into the output only after every partition
  succeeded and the counts reconcile, then writes `_SUCCESS` with the counts.
- Monitoring returns each partition's mergeable state (runtime/monitor/merge.py); the client
  merges them in partition order and writes the report as the single-process run does.

Cluster: `--scheduler ADDRESS`, else $DASK_SCHEDULER_ADDRESS, else a LocalCluster bound to
127.0.0.1 (one single-threaded worker process per core, dashboard on a free local port).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from aiops.runtime.datafile import counts_line
from aiops.runtime.scale.partition import MonitorState, PartitionMonitor, PartitionScorer, ScoreCounts
from aiops.runtime.scale.unique import candidates, colliding, key_hashes, unique_across

PARTITION_ROWS = 500_000
RETRIES = 3
_CACHE: dict[tuple, Any] = {}  # per worker process: one scorer/monitor (and onnxruntime session) per artefacts


class EngineError(Exception):
    """A user error of the Dask engine (exit 2): no dask installed, bad input, no scheduler."""


@dataclass(frozen=True)
class Part:
    index: int
    path: str  # inside the filesystem of `url`
    start: int  # row range in the file
    stop: int
    first_row: int  # 0-based position of the first row in the whole input


# ------------------------------------------------------------------ cluster
def client_for(scheduler: str | None, workers: int | None = None):
    """(client, cluster or None): the given scheduler, $DASK_SCHEDULER_ADDRESS, or a local cluster."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise EngineError("--engine dask needs Dask: pip install 'aiops[dask]' (dask and distributed)") from None
    address = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        try:
            return Client(address, timeout="20s"), None
        except (OSError, TimeoutError) as exc:
            raise EngineError(f"cannot reach the Dask scheduler at '{address}': {exc}; start one with "
                              "'dask-scheduler', or leave out --scheduler (and DASK_SCHEDULER_ADDRESS) for a local "
                              "cluster") from None
    import importlib.util
    import sys

    n = workers or max(os.cpu_count() or 1, 1)
    board = importlib.util.find_spec("bokeh") is not None  # the dashboard needs bokeh
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0" if board else None, silence_logs=40)
    client = Client(cluster)
    print(f"dask: local cluster of {n} worker processes on 127.0.0.1; dashboard "
          + (client.dashboard_link if board else "off (pip install bokeh)"), file=sys.stderr)
    return client, cluster


def _close(client, cluster) -> None:
    client.close()
    if cluster is not None:
        cluster.close()


# ------------------------------------------------------------------ input
def _fs(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)


def list_parts(url: str, partition_rows: int) -> tuple[Any, list[Part], list[str], list[str]]:
    """(filesystem, partitions, files, columns of the first file); EngineError if unusable."""
    fs, root = _fs(url)
    if fs.isdir(root):
        files = sorted(p for p in fs.find(root) if p.lower().endswith((".parquet", ".pq"))
                       and not any(s.startswith(("_", ".")) for s in p[len(root.rstrip("/")) + 1:].split("/")))
        if not files:
            raise EngineError(f"no Parquet files (*.parquet, *.pq) under '{url}'")
    elif fs.isfile(root):
        if not root.lower().endswith((".parquet", ".pq")):
            raise EngineError(f"--engine dask reads Parquet (a .parquet file or a folder of them). Got '{url}' "
                              "instead; use the default engine for CSV")
        files = [root]
    else:
        raise EngineError(f"no input at '{url}'")
    parts: list[Part] = []
    columns: list[str] | None = None
    total = 0
    for f in files:
        try:
            with fs.open(f, "rb") as fh:
                pf = pq.ParquetFile(fh)
                n, names = pf.metadata.num_rows, list(pf.schema_arrow.names)
        except (pa.ArrowInvalid, OSError) as exc:
            raise EngineError(f"cannot read '{f}' as Parquet: {exc}") from None
        if columns is None:
            columns = names
        elif names != columns:
            raise EngineError(f"'{f}' has the columns {names}, not those of '{files[0]}' ({columns}): the files of "
                              "one input must share a schema")
        for s in range(0, n, partition_rows):
            parts.append(Part(len(parts), f, s, min(s + partition_rows, n), total + s))
        total += n
    return fs, parts, files, columns or []


def _read(fs, part: Part, columns: list[str], renames: dict[str, str] | None = None) -> pa.Table:
    """The partition's `columns` (contract names; `renames`: header name -> contract name)."""
    if renames:
        in_file = {v: k for k, v in renames.items()}
        t = _read(fs, part, [in_file.get(c, c) for c in columns])
        return t.rename_columns([renames.get(c, c) for c in t.column_names])
    with fs.open(part.path, "rb") as fh:
        pf = pq.ParquetFile(fh)
        md = pf.metadata
        groups, off, first = [], 0, None
        for g in range(md.num_row_groups):
            n = md.row_group(g).num_rows
            if off < part.stop and off + n > part.start:
                groups.append(g)
                first = off if first is None else first
            off += n
        if not groups:
            return pf.schema_arrow.empty_table().select(columns)
        t = pf.read_row_groups(groups, columns=columns, use_threads=False)
    return t.slice(part.start - first, part.stop - part.start)


def _cached(kind: str, *args):
    key = (kind, *args)
    if key not in _CACHE:
        _CACHE[key] = PartitionScorer(*args) if kind == "score" else PartitionMonitor(*args)
    return _CACHE[key]


# ------------------------------------------------------------------ scoring
def _stage(fs, target: str, schema: pa.Schema, table: pa.Table, cipher, kind: str) -> None:
    """Write `table` to `target` in one step: to a unique temporary name, then one rename
    (for a remote filesystem: a local file, one upload, then a rename)."""
    from fsspec.implementations.local import LocalFileSystem

    from aiops.runtime.score.scorer import _Writer

    import inspect

    extra = {"kind": kind} if "kind" in inspect.signature(_Writer).parameters else {}  # sealed files name their kind

    def write(path: Path) -> None:
        w = _Writer(path, "parquet", schema, cipher, **extra)  # runtime.score's writer: encryption at rest applies
        try:
            w.write(table)
        finally:
            w.close()

    tmp = f"{target}.{uuid.uuid4().hex}.tmp"
    if isinstance(fs, LocalFileSystem):
        try:
            write(Path(tmp))
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return
    with tempfile.TemporaryDirectory(prefix="aiops-dask-") as d:
        write(Path(d) / "part.parquet")
        fs.put_file(str(Path(d) / "part.parquet"), tmp)
    fs.mv(tmp, target)


def _unique_task(kind: str, art: str, manifest: str, url: str, columns: list[str], part: Part,
                 coll: dict | None = None) -> dict:
    """The first pass of `unique` across partitions, on the partition's `unique` columns only:
    the hashes of its distinct values, or (given the hashes that collide across partitions)
    its distinct values with those hashes."""
    fs, _ = _fs(url)
    if kind == "score":
        worker = _cached("score", art, tuple(columns), manifest)
        have, renames = worker.unique_columns, worker.pred.contract.renames
    else:
        worker = _cached("monitor", art, manifest)
        renames = worker.mon.contract.renames
        with fs.open(part.path, "rb") as fh:
            names = [renames.get(c, c) for c in pq.ParquetFile(fh).schema_arrow.names]
        have = [c for c in worker.unique_columns if c in names]
    values = worker.unique_values(_read(fs, part, have, renames)) if have else {}
    if coll is None:
        return {k: key_hashes(v) for k, v in values.items()}
    return candidates(values, coll)


def _unique_pass(client, kind: str, art: str, manifest: str, url: str, columns: list[str],
                 parts: list[Part]) -> list:
    """Per partition, the values of its `unique` columns that an earlier partition holds (None:
    none). Hashes first (8 bytes a value to the client), then the values themselves only
    for hashes found in two partitions: with unique keys, nothing more."""
    n = len(parts)
    args = ([kind] * n, [art] * n, [manifest] * n, [url] * n, [columns] * n, parts)
    coll = colliding(client.gather(client.map(_unique_task, *args, retries=RETRIES, pure=False)))
    if not coll:
        return [None] * n
    shared = client.scatter(coll, broadcast=True)
    cands = client.gather(client.map(_unique_task, *args, [shared] * n, retries=RETRIES, pure=False))
    return [e or None for e in unique_across(cands)]


def _score_task(art: str, manifest: str, url: str, columns: list[str], out_url: str, stage: str,
                part: Part, earlier: dict[str, pa.Array] | None = None) -> dict:
    """One partition: read, score, stage predictions and quarantine (`stage`: a folder of the
    output's filesystem). Idempotent: a retry writes the same two names again. `earlier`:
    values of `unique` columns that earlier partitions hold (runtime/scale/unique.py)."""
    scorer = _cached("score", art, tuple(columns), manifest)
    fs_in, _ = _fs(url)
    preds, quarantine, counts = scorer.score(_read(fs_in, part, columns, scorer.pred.contract.renames), part.first_row,
                                             earlier)
    fs, _ = _fs(out_url)
    name = f"part-{part.index:05d}.parquet"
    _stage(fs, f"{stage}/predictions/{name}", scorer.output_schema, preds, scorer.cipher, "score-output")
    _stage(fs, f"{stage}/quarantine/{name}", scorer.quarantine_schema, quarantine, scorer.cipher, "score-quarantine")
    return {"index": part.index, "rows": part.stop - part.start, "rows_in": counts.rows_in, "scored": counts.scored,
            "quarantined": counts.quarantined, "chunks": counts.chunks, "reasons": counts.reasons,
            "encrypted": scorer.cipher is not None}


@dataclass
class DaskScoreResult:
    rows_in: int
    scored: int
    quarantined: int
    seconds: float
    output: str
    quarantine: str
    partitions: int
    reasons: dict[str, int]
    encrypted: bool = False

    @property
    def rejected_share(self) -> float:
        return self.quarantined / self.rows_in if self.rows_in else 0.0

    def summary(self) -> str:
        rate = self.rows_in / self.seconds if self.seconds > 0 else float("inf")
        return (counts_line(self.rows_in, self.scored, self.quarantined, 0, "scored")
                + f" ({rate:,.0f} rows/s, {self.seconds:.2f} s, {self.partitions} partition"
                f"{'s' if self.partitions != 1 else ''} on Dask)")


def score_dask(artefact_dir: str | Path, input_url: str, output_url: str, *, quarantine_url: str | None = None,
               max_rejected_share: float | None = None, scheduler: str | None = None,
               partition_rows: int = PARTITION_ROWS, workers: int | None = None, client=None) -> DaskScoreResult:
    """Score a Parquet input into the folder `output_url` (part-NNNNN.parquet, _SUCCESS) and its
    quarantine folder (default OUTPUT.quarantine). ScoreError as `runtime.score.score_file`."""
    from aiops.runtime.artefacts import ArtefactError, verify
    from aiops.runtime.contract import Contract
    from aiops.runtime.score.scorer import ScoreError, _columns_to_read

    try:
        art = verify(artefact_dir, action="score")
    except ArtefactError as exc:
        raise ScoreError(str(exc)) from None
    serving = art.json("serving.json")
    modes = (serving.get("serving") or {}).get("modes", ["batch"])
    if "batch" not in modes:
        raise ScoreError(f"serving.json serving.modes is {list(modes)}: this model is not meant to be scored in "
                         "batch (add 'batch' to serving.modes in the spec)")
    if max_rejected_share is not None and not 0.0 <= max_rejected_share <= 1.0:
        raise ScoreError(f"max_rejected_share must be a share in [0, 1]. Got {max_rejected_share} instead.")
    contract = Contract.load(art.root / "contract.json")
    try:
        _, parts, files, present = list_parts(str(input_url), partition_rows)
    except EngineError as exc:
        raise ScoreError(str(exc)) from None
    from aiops.runtime.datafile import DataFileError, renamed

    try:
        present = renamed(Path(files[0]), present, contract.renames)
    except DataFileError as exc:
        raise ScoreError(str(exc)) from None
    columns = _columns_to_read(Path(files[0]), present, contract, serving.get("key") or contract.key)
    out_url = str(output_url).rstrip("/")
    q_url = str(quarantine_url).rstrip("/") if quarantine_url else out_url + ".quarantine"
    fs, out = _fs(out_url)
    _, qdir = _fs(q_url)
    if out.rstrip("/") in (p.rstrip("/") for p in files) or out == qdir:
        raise ScoreError(f"the output '{out_url}' must be a new folder, not the input or the quarantine folder")
    stage = f"{out}.aiops-staging-{uuid.uuid4().hex[:12]}"
    for sub in ("predictions", "quarantine"):
        fs.makedirs(f"{stage}/{sub}", exist_ok=True)
    own = client is None
    if own:
        try:
            client, cluster = client_for(scheduler, workers)
        except EngineError as exc:
            fs.rm(stage, recursive=True)
            raise ScoreError(str(exc)) from None
    t0 = time.perf_counter()
    n = len(parts)
    try:
        earlier: list = [None] * n
        if n > 1 and any(c.unique and c.name in columns for c in contract.request_columns):
            # `unique` across partitions: first each partition's values, then which of them an
            # earlier partition holds, so the counts are those of the single-process run
            earlier = _unique_pass(client, "score", str(art.root), art.manifest_sha256, str(input_url), columns,
                                   parts)
        futures = client.map(_score_task, [str(art.root)] * n, [art.manifest_sha256] * n,
                             [str(input_url)] * n, [columns] * n, [out_url] * n,
                             [stage] * n, parts, earlier,
                             retries=RETRIES, pure=False)
        stats = client.gather(futures)
    except BaseException:
        fs.rm(stage, recursive=True)  # the output is left as it was
        raise
    finally:
        if own:
            _close(client, cluster)
    total = ScoreCounts()
    for s in sorted(stats, key=lambda s: s["index"]):
        if s["rows_in"] != s["rows"] or s["scored"] + s["quarantined"] != s["rows_in"]:
            raise RuntimeError(f"partition {s['index']}: the counts do not reconcile ({s})")
        total.add(ScoreCounts(s["rows_in"], s["scored"], s["quarantined"], s["chunks"], s["reasons"]))
    expected = sum(p.stop - p.start for p in parts)
    if total.rows_in != expected or len(stats) != len(parts):
        raise RuntimeError(f"{total.rows_in} rows scored in {len(stats)} partitions; the input has {expected} rows in "
                           f"{len(parts)} partitions")
    result = DaskScoreResult(total.rows_in, total.scored, total.quarantined, time.perf_counter() - t0, out_url, q_url,
                             len(parts), dict(sorted(total.reasons.items())),
                             any(s["encrypted"] for s in stats))
    _commit(fs, f"{stage}/quarantine", qdir, result, len(parts))
    if max_rejected_share is not None and result.rejected_share > max_rejected_share:
        fs.rm(stage, recursive=True)
        raise ScoreError(f"{result.quarantined} of {result.rows_in} rows ({result.rejected_share:.2%}) were "
                         f"quarantined, more than --max-rejected-share {max_rejected_share:.2%}; no predictions were "
                         f"written. The rejected rows and their reasons are in '{q_url}'", code=1)
    _commit(fs, f"{stage}/predictions", out, result, len(parts))
    fs.rm(stage, recursive=True)
    return result


def _commit(fs, staged: str, final: str, result: DaskScoreResult, n: int) -> None:
    """Replace the part files of `final` with the staged ones, then write _SUCCESS."""
    fs.makedirs(final, exist_ok=True)
    for old in fs.glob(f"{final}/part-*.parquet") + ([f"{final}/_SUCCESS"] if fs.exists(f"{final}/_SUCCESS") else []):
        fs.rm(old)
    for i in range(n):
        name = f"part-{i:05d}.parquet"
        fs.mv(f"{staged}/{name}", f"{final}/{name}")
    counts = {"rows_in": result.rows_in, "scored": result.scored, "quarantined": result.quarantined,
              "partitions": n, "reasons": result.reasons}
    with fs.open(f"{final}/_SUCCESS", "w") as fh:
        fh.write(json.dumps(counts, sort_keys=True, indent=1) + "\n")


# ------------------------------------------------------------------ monitoring
def _monitor_task(art: str, manifest: str, url: str, part: Part, labels, chunk_rows: int, earlier=None):
    pm = _cached("monitor", art, manifest)
    fs, _ = _fs(url)
    renames = pm.mon.contract.renames
    with fs.open(part.path, "rb") as fh:
        names = [renames.get(c, c) for c in pq.ParquetFile(fh).schema_arrow.names]
    have = [c for c in pm.wanted if c in names]
    label_key, table = labels if labels is not None else (None, None)
    state = pm.add(pm.new_state(), _read(fs, part, have, renames), part.first_row, table, label_key, chunk_rows,
                   earlier)
    return part.index, state


def monitor_dask(artefact_dir: str | Path, src, report_dir: str | Path | None = None, html: bool = True, *,
                 scheduler: str | None = None, partition_rows: int = PARTITION_ROWS, workers: int | None = None,
                 client=None):
    """`runtime.monitor.run` with the partitions' states computed on Dask and merged here."""
    from aiops.runtime.monitor.job import Monitor, MonitorError, _as_of, new_totals, write_outcome
    from aiops.runtime.monitor.reader import MonitorInputError, load_labels
    from aiops.runtime.monitor.merge import merge_states

    if src.log is not None or src.current is None:
        raise MonitorError("--engine dask monitors Parquet data given with --current; monitor the prediction log "
                           "(--from-log) with the default engine")
    mon = Monitor(artefact_dir)
    try:
        _, parts, _, _ = list_parts(str(src.current), partition_rows)
    except EngineError as exc:
        raise MonitorError(str(exc)) from None
    labels = None
    if src.labels is not None:
        keys = ([mon.job["label_key"]] if mon.job["label_key"] else []) + ["prediction_id"]
        try:
            labels = load_labels(src.labels, keys, mon.job["target"], mon.contract.renames)
        except MonitorInputError as exc:
            raise MonitorError(str(exc)) from None
    own = client is None
    if own:
        try:
            client, cluster = client_for(scheduler, workers)
        except EngineError as exc:
            raise MonitorError(str(exc)) from None
    try:
        shared = client.scatter(labels, broadcast=True) if labels is not None else None
        n = len(parts)
        earlier: list = [None] * n
        if n > 1 and any(c.unique for c in mon.contract.request_columns):  # as in score_dask
            earlier = _unique_pass(client, "monitor", str(mon.art.root), mon.art.manifest_sha256,
                                   str(src.current), [], parts)
        futures = client.map(_monitor_task, [str(mon.art.root)] * n, [mon.art.manifest_sha256] * n,
                             [str(src.current)] * n, parts, [shared] * n, [src.chunk_rows] * n, earlier,
                             retries=RETRIES, pure=False)
        results = sorted(client.gather(futures), key=lambda r: r[0])
    except MonitorInputError as exc:
        raise MonitorError(str(exc)) from None
    finally:
        if own:
            _close(client, cluster)
    total = MonitorState({}, new_totals([c.name for c in mon.contract.request_columns]))
    for _, s in results:
        merge_states(total, s)
    if total.totals["rows"] != sum(p.stop - p.start for p in parts):
        raise RuntimeError(f"{total.totals['rows']} rows monitored; the input has "
                           f"{sum(p.stop - p.start for p in parts)}")
    if total.totals["rows"] == 0:
        raise MonitorError(f"no rows to monitor in '{src.current}'")
    has_labels = total.has_labels or labels is not None
    outcome = mon._finish(src, total.windows, total.totals, _as_of(src.as_of, total.max_day), has_labels, None)
    return write_outcome(mon, outcome, report_dir, html)
