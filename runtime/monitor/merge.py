"""Merge the monitoring state of partitions scored apart (runtime/scale/partition.py): windows and
their sketches (runtime/monitor/window.py, runtime/monitor/stats.py) are sums of counts and
sums, so two partitions' states combine exactly, up to the order of float additions.

Every attribute of every accumulator is listed below with how it merges: "same" (reference
data, taken from the first), "sum", "min", "max", "dict" (sum per key) or "nested" (merged
recursively). An attribute that is not listed is refused: an accumulator that gains a field
must say here how it merges, or a distributed run would silently drop it.
"""
from __future__ import annotations

from typing import Any

from aiops.runtime.monitor.stats import CategorySketch, Fairness, NumericSketch, Performance
from aiops.runtime.monitor.window import Window

RULES: dict[type, dict[str, str]] = {
    NumericSketch: {**dict.fromkeys(("edges", "grid", "ref_cdf", "ref_int", "ref_counts", "ref_n", "ref_std",
                                     "grid_to_bin"), "same"),
                    **dict.fromkeys(("n", "nulls", "bins", "grid_counts", "grid_sums", "total", "total_sq"), "sum"),
                    "min": "min", "max": "max"},
    CategorySketch: {"ref": "same", "counts": "dict", "nulls": "sum"},
    Performance: {**dict.fromkeys(("task", "classes", "positive", "binary"), "same"),
                  **dict.fromkeys(("n", "sums", "confusion", "hist", "ovr", "brier", "log_loss"), "sum")},
    Fairness: {"positive": "same", "regression": "same", "groups": "dict"},
    Window: {**dict.fromkeys(("key", "job", "known", "regression"), "same"),
             **dict.fromkeys(("rows", "bad_rows", "scored"), "sum"), "last_day": "max", "columns": "dict",
             **dict.fromkeys(("sketches", "score", "labels", "target", "perf", "fairness"), "nested")},
}


def merge(a: Any, b: Any) -> Any:
    """Add accumulator `b` into `a` (same class, same reference); returns `a`."""
    if a is None or b is None:
        if a is not None or b is not None:
            raise TypeError("cannot merge an accumulator with None")
        return a
    if isinstance(a, dict):
        for k, v in b.items():
            a[k] = merge(a[k], v) if k in a else v
        return a
    if isinstance(a, list):
        if len(a) != len(b):
            raise TypeError(f"cannot merge lists of {len(a)} and {len(b)} accumulators")
        return [merge(x, y) for x, y in zip(a, b)]
    rules = RULES.get(type(a))
    if rules is None or type(b) is not type(a):
        raise TypeError(f"cannot merge {type(a).__name__} with {type(b).__name__}")
    unknown = sorted((set(vars(a)) | set(vars(b))) - set(rules))
    if unknown:
        raise TypeError(f"{type(a).__name__} has attributes {unknown} that runtime/monitor/merge.py does not know how "
                        "to merge: add them to RULES")
    for name, how in rules.items():
        if name not in vars(a):
            continue
        x, y = getattr(a, name), getattr(b, name)
        if how == "same":
            continue
        if how == "sum":
            setattr(a, name, x + y)
        elif how == "min":
            setattr(a, name, min(x, y))
        elif how == "max":
            setattr(a, name, max(x, y))
        elif how == "dict":
            for k, v in y.items():
                x[k] = x[k] + v if k in x else v
        else:
            setattr(a, name, merge(x, y))
    return a


def merge_totals(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Add the run totals `b` (runtime.monitor.new_totals) into `a`."""
    for k, v in b.items():
        if k == "absent":
            a[k] &= v  # a column is absent when no partition had it
        elif k == "codes":
            for code, n in v.items():
                a[k][code] = a[k].get(code, 0) + n
        elif isinstance(v, int) and not isinstance(v, bool):
            a[k] += v  # rows, unassigned, bad_rows, labelled, ...: counts
        else:
            raise TypeError(f"the monitoring total {k!r} has no merge rule in runtime/monitor/merge.py")
    return a


def merge_states(a, b):
    """Add one `runtime.partition.MonitorState` into another; returns the first."""
    merge(a.windows, b.windows)
    merge_totals(a.totals, b.totals)
    a.has_labels |= b.has_labels
    a.max_day = max(a.max_day, b.max_day)
    return a
