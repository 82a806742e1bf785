"""Scoring validated requests on the event loop, several at once when they arrive together.

Each request is validated on its own (its errors are its own). A request of a few plainly
valid records arrives as feature rows (`http_rows.FeatureRows`); any other as the
contract's clean columns. Rows that reach the batcher in the same turn of the event loop
are scored in one onnxruntime call, which shares the fixed cost of the call under
concurrency. When no other request has just arrived (as with one client at a time), the
rows are scored at once instead, without waiting for the next turn: `Batcher.score` then
returns the result, not a future. Either way the bits are the same:

A row gets the same bits whatever else is in the batch: onnxruntime scores rows
independently once a batch has two or more rows, and a lone row is scored as two copies
(as `Predictor.run_feed` does), so the result never depends on the company it keeps.

Results are Python lists (`Predictor.lists`): (label indices or None, probability rows or
values), which the server writes as JSON and counts in its metrics directly.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Union

import numpy as np

from .features import derive
from .http_rows import FeatureRows
from .predictor import Predictor

Rows = list  # feature rows: list[tuple[list[float], list[str]]]
Cols = dict  # contract columns: dict[str, np.ndarray]
Result = tuple  # (list[int] | None, list)
ALONE_GAP = 50e-6  # seconds: a request starting sooner after the last scoring had company waiting


def score_columns(p: Predictor, cols: dict[str, np.ndarray], n: int) -> Result:
    """Predictions for n rows of clean contract columns (n >= 1)."""
    feed = derive(p.steps, cols)
    if n == 1:
        feed = {k: np.concatenate([v, v]) for k, v in feed.items()}
    return p.lists(p.run(feed), n)


class Batcher:
    def __init__(self, predictor: Predictor, rows: FeatureRows):
        self.p = predictor
        self.rows = rows
        self._pending: list[tuple[Union[Rows, Cols], int, asyncio.Future]] = []
        self._last = 0.0  # perf_counter when the last scoring ended
        self.batches = 0  # onnxruntime calls made
        self.requests = 0

    def score(self, item: Union[Rows, Cols], n: int, arrived: float) -> Union[Result, asyncio.Future]:
        """The predictions of these n rows, or a future of them. `arrived` is the request's
        perf_counter at arrival: one that arrives right after a scoring ended was waiting
        behind it, so others may be too, and it waits for the end of this turn to be scored
        with them; otherwise it is scored now."""
        if not self._pending and arrived - self._last > ALONE_GAP:
            res = self._run([(item, n, None)])[0]
            self._last = time.perf_counter()
            return res
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((item, n, fut))
        return fut

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            outs = self._run(batch)
        except Exception as exc:  # a bug: every waiting request answers 500 with its own reference
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        finally:
            self._last = time.perf_counter()
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
