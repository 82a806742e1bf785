"""Prometheus metrics of the server (prometheus_client; multiprocess mode when the CLI set
PROMETHEUS_MULTIPROC_DIR for --workers > 1).

The prediction distribution is counted per decile of the reference profile's prediction
score (evidence/profile.json): with no drift each bin receives about a tenth.

The event loop counts in plain Python (`request`, `answered`) and publishes the counts to
prometheus_client in bulk (`publish`): every `PUBLISH_EVERY` seconds, before every scrape
this worker answers, and at shutdown. An update in prometheus_client takes a lock, and in
multiprocess mode writes a shared memory map; per request that cost more than the model.
So a scrape answered by one worker shows the other workers' counts as of at most
PUBLISH_EVERY seconds ago. Other threads (job workers) update prometheus_client directly.
"""
from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from typing import Any

import numpy as np

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PUBLISH_EVERY = 0.5  # seconds


class Metrics:
    def __init__(self, model: str, version: str, classes: tuple[str, ...], pos_index: int | None,
                 score_edges: list[float] | None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        reg = None if self.multiprocess else self.registry
        self.requests = Counter("aiops_http_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=reg)
        self.latency = Histogram("aiops_http_request_duration_seconds", "Time to answer a request, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=reg)
        self.scored = Counter("aiops_records_scored", "Records scored, by source (http, explain, job)",
                              ["source"], registry=reg)
        self.rejected = Counter("aiops_records_rejected", "Records rejected by the data contract, by source",
                                ["source"], registry=reg)
        self.labels = Counter("aiops_predictions", "Predicted labels (classification)", ["label"], registry=reg)
        self.bins = Counter("aiops_prediction_score_bin",
                            "Predictions per decile bin of the reference prediction score (evidence/profile.json)",
                            ["bin"], registry=reg)
        kw: dict[str, Any] = {"multiprocess_mode": "max"} if self.multiprocess else {}
        info = Gauge("aiops_model_info", "The model being served", ["model", "version"], registry=reg, **kw)
        info.labels(model, version).set(1)
        self.classes = classes
        self.pos_index = pos_index
        self.edges = np.asarray(score_edges or [], dtype=np.float64)
        self.bin_names = [str(i + 1) for i in range(len(self.edges) + 1)]
        self._req_children: dict[tuple[str, str, int], Any] = {}
        self._lat_children: dict[str, Any] = {}
        self._scored = {s: self.scored.labels(s) for s in ("http", "explain", "job")}
        self._rejected = {s: self.rejected.labels(s) for s in ("http", "explain", "job")}
        self._labels = {c: self.labels.labels(c) for c in classes}
        self._bins = [self.bins.labels(b) for b in self.bin_names]
        self._labels_by_index = [self._labels[c] for c in classes]
        self._edge_list = [float(e) for e in self.edges]
        # the event loop's counts since the last publish()
        self._req_counts: dict[tuple[str, str, int], int] = {}
        self._lat_counts: dict[str, list[float]] = {}
        self._scored_counts: dict[str, int] = {}
        self._label_counts = [0] * len(classes)
        self._bin_counts = [0] * len(self._bins)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request (event loop only)."""
        key = (route, method, status)
        c = self._req_counts.get(key)
        if c is None:
            self._req_counts[key] = 1
        else:
            self._req_counts[key] = c + 1
        lat = self._lat_counts.get(route)
        if lat is None:
            lat = self._lat_counts[route] = [0] * (len(LATENCY_BUCKETS) + 2)  # buckets, +Inf, sum
        lat[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bucket with seconds <= bound
        lat[-1] += seconds

    def answered(self, source: str, labels: list[int] | None, vals: list[Any]) -> None:
        """Count predictions given as `Predictor.lists` gives them (event loop only): label
        indices (None for a regressor) and probability rows or values. The binned score is
        the positive class's probability, the top probability, or the value."""
        self._scored_counts[source] = self._scored_counts.get(source, 0) + len(vals)
        if labels is None:
            scores = vals
        else:
            lc = self._label_counts
            for i in labels:
                lc[i] += 1
            pos = self.pos_index
            scores = [r[pos] for r in vals] if pos is not None else [max(r) for r in vals]
        if self._edge_list:
            bc, edges = self._bin_counts, self._edge_list
            for x in scores:
                bc[bisect_right(edges, x)] += 1  # np.searchsorted(side="right"); NaN goes last, as there

    def publish(self) -> None:
        """Hand the event loop's counts to prometheus_client (event loop only)."""
        if self._req_counts:
            counts, self._req_counts = self._req_counts, {}
            for (route, method, status), n in counts.items():
                child = self._req_children.get((route, method, status))
                if child is None:
                    child = self._req_children[(route, method, status)] = self.requests.labels(route, method,
                                                                                               str(status))
                child.inc(n)
        if self._lat_counts:
            counts, self._lat_counts = self._lat_counts, {}
            for route, lat in counts.items():
                child = self._lat_children.get(route)
                if child is None:
                    child = self._lat_children[route] = self.latency.labels(route)
                # Histogram.observe(x) adds x to _sum and 1 to the first bucket >= x; in bulk:
                for b, n in zip(child._buckets, lat[:-1]):
                    if n:
                        b.inc(n)
                child._sum.inc(lat[-1])
        if self._scored_counts:
            counts, self._scored_counts = self._scored_counts, {}
            for source, n in counts.items():
                self._scored[source].inc(n)
        for counts, children in ((self._label_counts, self._labels_by_index), (self._bin_counts, self._bins)):
            for i, n in enumerate(counts):
                if n:
                    children[i].inc(n)
                    counts[i] = 0

    def predictions(self, source: str, out: dict[str, np.ndarray]) -> None:
        """Count predictions given as the predictor's arrays, straight into prometheus_client
        (thread-safe: the job workers call this)."""
        if "value" in out:
            score = out["value"]
            self._scored[source].inc(len(score))
        else:
            labels = out["label"]
            self._scored[source].inc(len(labels))
            if len(labels) == 1:
                self._labels[labels[0]].inc()
            else:
                names, counts = np.unique(labels.astype(str), return_counts=True)
                for n, c in zip(names.tolist(), counts.tolist()):
                    self._labels[n].inc(c)
            proba = out["probabilities"]
            score = proba[:, self.pos_index] if self.pos_index is not None else proba.max(axis=1)
        if len(self.edges):
            idx = np.searchsorted(self.edges, score, side="right")
            if len(idx) == 1:
                self._bins[int(idx[0])].inc()
            else:
                for i, c in enumerate(np.bincount(idx, minlength=len(self._bins)).tolist()):
                    if c:
                        self._bins[i].inc(c)

    def rejected_records(self, source: str, n: int) -> None:
        if n:
            self._rejected[source].inc(n)

    def render(self) -> tuple[bytes, str]:
        """The exposition text (event loop only: this worker's counts are published first)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.publish()

        if self.multiprocess:
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            reg = CollectorRegistry()
            MultiProcessCollector(reg)
            return generate_latest(reg), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
