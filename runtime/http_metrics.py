"""Prometheus metrics of the server (prometheus_client; multiprocess mode when the CLI set
PROMETHEUS_MULTIPROC_DIR for --workers > 1).

The prediction distribution is counted per decile of the reference profile's prediction
score (evidence/profile.json): with no drift each bin receives about a tenth.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


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

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._req_children.get(key)
        if child is None:
            child = self._req_children[key] = self.requests.labels(route, method, str(status))
        child.inc()
        lat = self._lat_children.get(route)
        if lat is None:
            lat = self._lat_children[route] = self.latency.labels(route)
        lat.observe(seconds)

    def predictions(self, source: str, out: dict[str, np.ndarray]) -> None:
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
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.multiprocess:
            from prometheus_client import CollectorRegistry
            from prometheus_client.multiprocess import MultiProcessCollector

            reg = CollectorRegistry()
            MultiProcessCollector(reg)
            return generate_latest(reg), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
