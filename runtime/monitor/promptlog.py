"""The prompt calls of the audit log, as `aiops monitor` reads them, and the feedback labels.

Prompt calls are written to the same hash-chained (and, with encryption at rest, sealed)
log as predictions (docs/genai.md#monitoring-prompts for the entry format). They are read
leniently, as the prediction log is (runtime/monitor/reader.py): lines that are not JSON,
are not prompt calls, belong to another prompt or another build, or cannot be decrypted are
counted in `LogStats.skipped` and left out.

Feedback labels: a CSV, Parquet or JSON-lines file with `prediction_id` and `passed`
(or `label`): true/false, 1/0, yes/no, pass/fail, as the reviewers' verdict on the answer.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

from aiops.runtime.monitor.reader import LogStats, MonitorInputError, load_labels

TRUE = frozenset({"true", "1", "yes", "pass", "passed", "y", "t"})
FALSE = frozenset({"false", "0", "no", "fail", "failed", "n", "f"})


def log_file(path: Path) -> Path:
    """The log's first segment file or the file given (for messages)."""
    return path / "predictions.jsonl" if path.is_dir() else path


def read_prompt_log(path: Path, prompts: list[str], manifest_sha256: str, stats: LogStats,
                    cipher_loader: Callable[[], Any]) -> Iterator[dict[str, Any]]:
    """Every prompt call of the log at `path` (a folder of segments, or one file) for one of `prompts`."""
    from aiops.runtime.audit.chain import open_lines, segment_paths
    from aiops.runtime.monitor.reader import _decrypt

    p = log_file(path)
    if not (segment_paths(path) if path.is_dir() else p.is_file()):
        raise MonitorInputError(f"no prompt log at '{p}': serve the prompts first ('aiops serve'), or pass "
                                "--from-log PATH")
    wanted = set(prompts)
    cipher = None
    with open_lines(path if path.is_dir() else p) as fh:
        for line in fh:
            if not line.strip() or line.startswith(b'{"detail":'):
                continue  # a segment, repair or expiry event (runtime/audit/chain.py)
            stats.lines += 1
            try:
                e = json.loads(line)
            except ValueError:
                stats.skip("not JSON")
                continue
            if not isinstance(e, dict):
                stats.skip("not a JSON object")
                continue
            if "enc" in e:
                if cipher is None:
                    cipher = cipher_loader()
                e = _decrypt(e, cipher, stats)
                if e is None:
                    continue
            if e.get("kind") != "prompt":
                stats.skip("not a prompt call")
                continue
            if e.get("prompt") not in wanted:
                stats.skip("another prompt")
                continue
            if e.get("manifest_sha256") not in (None, manifest_sha256):
                stats.skip("another build (manifest_sha256 differs)")
                continue
            stats.used += 1
            yield e


def load_feedback(path: Path) -> dict[str, bool]:
    """{prediction_id: passed} from the feedback file; a value that is not a verdict is an error."""
    key, table = load_labels(path, ["prediction_id"], "passed")
    out: dict[str, bool] = {}
    for pid, v in table.items():
        verdict = _verdict(v)
        if verdict is None:
            raise MonitorInputError(
                f"the feedback file '{path}' gives prediction_id '{pid}' the verdict {v!r}: 'passed' (or 'label') "
                "must be true/false, 1/0, yes/no or pass/fail")
        out[pid] = verdict
    return out


def _verdict(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        t = v.strip().lower()
        if t in TRUE:
            return True
        if t in FALSE:
            return False
    return None
