"""Scoring validated requests on the event loop, several at once when they arrive together.

Each request is validated on its own (its errors are its own); its clean columns then wait
for the next turn of the event loop, where every request that reached this point in the
same turn is scored in one onnxruntime call. Under concurrency this shares the fixed cost
of building the feed and running the session; alone, a request waits for nothing.

A row gets the same bits whatever else is in the batch: onnxruntime scores rows
independently once a batch has two or more rows, and a lone row is scored as two copies
(as `Predictor.run_feed` does), so the result never depends on the company it keeps.
"""
from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from .features import derive
from .http_rows import small_feed
from .predictor import Predictor

SMALL = 16  # up to this many rows, the feed is built by http_rows.small_feed


def score_columns(p: Predictor, cols: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Predictions for n rows of clean contract columns (n >= 1)."""
    if n == 1:
        out = p.run_feed(small_feed(p.steps, cols, copies=2))
        return {k: v[:1] for k, v in out.items()}
    return p.run_feed(small_feed(p.steps, cols) if n <= SMALL else derive(p.steps, cols))


class Batcher:
    def __init__(self, predictor: Predictor):
        self.p = predictor
        self._pending: list[tuple[dict[str, np.ndarray], int, asyncio.Future]] = []
        self.batches = 0  # onnxruntime calls made
        self.requests = 0

    def score(self, cols: dict[str, np.ndarray], n: int) -> asyncio.Future:
        """A future of the predictions of these n rows."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((cols, n, fut))
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
        for (_, _, fut), out in zip(batch, outs):
            if not fut.done():  # the client may have gone
                fut.set_result(out)

    def _run(self, batch: list[tuple[dict[str, np.ndarray], int, Any]]) -> list[dict[str, np.ndarray]]:
        self.batches += 1
        self.requests += len(batch)
        if len(batch) == 1:
            cols, n, _ = batch[0]
            return [score_columns(self.p, cols, n)]
        total = sum(n for _, n, _ in batch)
        cols = {k: np.concatenate([b[0][k] for b in batch]) for k in batch[0][0]}
        out = score_columns(self.p, cols, total)
        res = []
        at = 0
        for _, n, _ in batch:
            res.append({k: v[at:at + n] for k, v in out.items()})
            at += n
        return res
