"""`unique: true` across the partitions of one input (runtime/scale/engine.py runs the passes):

1. each partition's distinct values of its `unique` columns (`PartitionScorer.unique_values`,
   `PartitionMonitor.unique_values`: `arrow_keys` for text and numbers, else the contract),
   sent to the client as 64-bit hashes (`key_hashes`);
2. the hashes found in two partitions (`colliding`: a sort; none when the keys are unique);
3. for those only, the values themselves (`candidates`), grouped exactly (`unique_across`):
   per partition, the values an earlier partition holds, which its rows then repeat.

Engine-agnostic, like runtime/scale/partition.py: arrays in, arrays out.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa


def arrow_keys(col: pa.Array, rule) -> pa.Array | None:
    """The first pass without the contract's row-by-row check, when Arrow's distinct values are
    the clean values themselves: text read as text (the contract keeps a string as it is), and
    numbers read as numbers (the contract keeps float(x): cast to float64, -0.0 as 0.0, NaN
    left out). Values the contract would not count (null-like text, values failing another
    check of the column) may be included: a value is judged alone, so it fails in every
    partition, and a failing or null row is never a duplicate. None: ask the contract."""
    import pyarrow.compute as pc

    t = col.type
    if rule.dtype in ("str", "category") and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return pc.unique(col).drop_null().cast(pa.large_string())
    if rule.dtype in ("int", "float") and (pa.types.is_integer(t) or pa.types.is_floating(t)):
        x = pc.unique(pc.add(col.cast(pa.float64()), 0.0)).drop_null()
        return x.filter(pc.invert(pc.is_nan(x)))
    return None


def key_array(vals: list) -> pa.Array:
    # one key per value as a dict sees it: -0.0 == 0.0 there, so one of them here
    if vals and type(vals[0]) is float:
        return pa.array([v + 0.0 for v in vals], pa.float64())
    return pa.array(vals, pa.large_string()) if vals and type(vals[0]) is str else pa.array(vals)


def _later(arrays: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows (position in the concatenation of `arrays`, partition) whose group id (the
    arrays' values) appears in an earlier partition: the input is in partition order, so a
    group's first row is in its first partition."""
    g = np.concatenate([a for _, a in arrays])
    p = np.concatenate([np.full(len(a), i, dtype=np.int64) for i, a in arrays])
    _, first_row, inverse = np.unique(g, return_index=True, return_inverse=True)
    later = np.flatnonzero(p > p[first_row][inverse])
    return later, p[later]


def unique_across(values: list[dict[str, pa.Array]]) -> list[dict[str, pa.Array]]:
    """Given each partition's `PartitionScorer.unique_values` (in input order), the values of
    each partition that an earlier partition holds too: what `score(..., earlier=)` takes.
    Exact: the values themselves, grouped by Arrow's dictionary encoding (a hash table in
    C++), then numpy on the group ids."""
    out: list[dict[str, pa.Array]] = [{} for _ in values]
    for name in sorted({k for v in values for k in v}):
        arrays = [(i, v[name]) for i, v in enumerate(values) if name in v and len(v[name])]
        if len(arrays) < 2:
            continue
        allv = pa.concat_arrays([a for _, a in arrays])
        ids = allv.dictionary_encode().indices.to_numpy(zero_copy_only=False)
        at = 0
        groups = []
        for i, a in arrays:
            groups.append((i, ids[at:at + len(a)]))
            at += len(a)
        rows, parts = _later(groups)
        for i in np.unique(parts).tolist():
            out[i][name] = allv.take(pa.array(rows[parts == i]))
    return out


_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def key_hashes(values: pa.Array) -> np.ndarray:
    """64-bit hashes of distinct keys (`unique_values`), the same in every process (no
    per-process seed), for the pre-pass of `colliding`: numbers by their float64 bits; text
    by a polynomial of its UTF-8 bytes, strings of one length at a time, then mixed
    (splitmix64's finaliser). Equal values give equal hashes; unequal ones rarely do, and
    the exact pass after `colliding` settles those."""
    if pa.types.is_floating(values.type):
        return values.to_numpy(zero_copy_only=False).astype(np.float64).view(np.uint64).copy()
    a = values.cast(pa.large_string())
    if len(a) == 0:
        return np.zeros(0, dtype=np.uint64)
    offsets = np.frombuffer(a.buffers()[1], dtype=np.int64)[a.offset:a.offset + len(a) + 1]
    data = np.frombuffer(a.buffers()[2], dtype=np.uint8) if a.buffers()[2] is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for n in np.unique(lengths).tolist():
            if n == 0:
                continue
            sel = np.flatnonzero(lengths == n)
            powers = np.cumprod(np.full(n, 1099511628211, dtype=np.uint64))  # FNV prime powers, wrapping
            for lo in range(0, len(sel), 65536):  # bounded memory: 65,536 strings at a time
                part = sel[lo:lo + 65536]
                chars = data[starts[part][:, None] + np.arange(n)].astype(np.uint64)
                h[part] += (chars * powers).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(30)
        h *= _MIX1
        h ^= h >> np.uint64(27)
        h *= _MIX2
        h ^= h >> np.uint64(31)
    return h


def colliding(hashes: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per column, the hashes that partitions after the first one holding them hold again: the
    only values that can be duplicates across partitions (sorted; none for unique keys)."""
    out = {}
    for name in sorted({k for h in hashes for k in h}):
        arrays = [h[name] for h in hashes if name in h and len(h[name])]
        if len(arrays) < 2:
            continue
        # a partition's values are distinct: a hash found twice is in two partitions (or two
        # values of one partition share it, which the exact pass then tells apart)
        h = np.concatenate(arrays)
        h.sort()
        twice = h[1:][h[1:] == h[:-1]]
        if len(twice):
            out[name] = np.unique(twice)
    return out


def candidates(values: dict[str, pa.Array], colliding_hashes: dict[str, np.ndarray]) -> dict[str, pa.Array]:
    """The partition's distinct values whose hash collides across partitions (`colliding`)."""
    out = {}
    for name, vals in values.items():
        c = colliding_hashes.get(name)
        if c is not None and len(vals):
            keep = np.isin(key_hashes(vals), c)
            if keep.any():
                out[name] = vals.filter(pa.array(keep))
    return out
