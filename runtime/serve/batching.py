"""Scoring validated requests on the event loop, several at once when they arrive together.

Each request is validated on its own (its errors are its own). A request of a few plainly
valid records arrives as feature rows (`http_rows.FeatureRows`); any other as the
contract's clean columns. Rows that reach the batcher in the same turn of the event loop
are scored in one onnxruntime call, which shares the fixed cost of the call under
concurrency. Waiting for the end of the turn costs a request about 20 µs, which buys
nothing when it is alone. After ALONE_AFTER batches of one request in a row (clients that
take turns), the batcher scores a request at once unless others are already waiting
(`Batcher.score` then returns the result, not a future), and lets every PROBE_EVERY-th
request wait anyway, to notice when company comes back. (Counting the requests in flight
does not tell: the requests queued behind one in the event loop are not in flight yet, so
under concurrency every request looked alone; bench/README.md, 2026-12-01.)

A row gets the same bits whatever else is in the batch: onnxruntime scores rows
independently once a batch has two or more rows, and a lone row is scored as two copies
(as `Predictor.run_feed` does) unless the model's graph gives it the same bits alone
(runtime/row_kernels.py), so the result never depends on the company it keeps.

Results are Python lists (`Predictor.lists`): (label indices or None, probability rows or
values), which the server writes as JSON and counts in its metrics directly.
"""
from __future__ import annotations

import asyncio
from typing import Any, Union

import numpy as np

from aiops.runtime.features import derive
from aiops.runtime.serve.rows import FeatureRows
from aiops.runtime.predictor import Predictor

Rows = list  # feature rows: list[tuple[list[float], list[str]]]
Cols = dict  # contract columns: dict[str, np.ndarray]
Result = tuple  # (list[int] | None, list)
ALONE_AFTER = 16  # batches of one request in a row before scoring requests at once
PROBE_EVERY = 16  # while scoring at once, every this-many-th request waits for the turn's end


def score_columns(p: Predictor, cols: dict[str, np.ndarray], n: int) -> Result:
    """Predictions for n rows of clean contract columns (n >= 1)."""
    return p.lists(p.run(p.lone_feed(derive(p.steps, cols), n)), n)


class Batcher:
    def __init__(self, predictor: Predictor, rows: FeatureRows):
        self.p = predictor
        self.rows = rows
        self._pending: list[tuple[Union[Rows, Cols], int, asyncio.Future]] = []
        self._singles = 0  # batches of one request in a row
        self._at_once = 0  # requests scored at once since the last probe
        self.batches = 0  # onnxruntime calls made
        self.requests = 0

    @property
    def alone(self) -> bool:
        """Requests have been coming one at a time: score them at once."""
        return self._singles >= ALONE_AFTER

    def score(self, item: Union[Rows, Cols], n: int) -> Union[Result, asyncio.Future]:
        """The predictions of these n rows, or a future of them (see the module's text)."""
        if not self._pending and self._singles >= ALONE_AFTER:
            self._at_once += 1
            if self._at_once < PROBE_EVERY:
                return self._run([(item, n, None)])[0]
            self._at_once = 0
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((item, n, fut))
        return fut

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._singles = self._singles + 1 if len(batch) == 1 else 0
        try:
            outs = self._run(batch)
        except Exception as exc:  # a bug: every waiting request answers 500 with its own reference
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, _, fut), out in zip(batch, outs):
            if not fut.done():  # the client may have gone
                fut.set_result(out)

    def _run(self, batch: list[tuple[Any, int, Any]]) -> list[Result]:
        self.requests += len(batch)
        res: list[Any] = [None] * len(batch)
        rows: list = []
        for k, (item, n, _) in enumerate(batch):
            if type(item) is dict:  # columns: scored on their own
                self.batches += 1
                res[k] = score_columns(self.p, item, n)
            else:
                rows += item
        if rows:
            self.batches += 1
            labels, vals = self.p.lists(self.p.run(self.rows.feed(rows)), len(rows))
            at = 0
            for k, (item, n, _) in enumerate(batch):
                if res[k] is None:
                    res[k] = (labels[at:at + n] if labels is not None else None, vals[at:at + n])
                    at += n
        return res
