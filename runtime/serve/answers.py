"""The JSON of predictions, written from Python lists with one format string per model.

`json.dumps` of the same object gives the same bytes (tests hold the two together): keys in
the same order, no spaces, ASCII only, floats as `repr` (which is what json writes for a
finite float). A number that is not finite, which JSON cannot hold, is written as null;
rows holding one take the general path.
"""
from __future__ import annotations

import json
import math
from typing import Any

_encode = json.JSONEncoder(separators=(",", ":")).encode
_isfinite = math.isfinite


class Answers:
    def __init__(self, model: dict[str, str], classes: tuple[str, ...] | list[str], is_classifier: bool):
        self.classes = list(classes)
        self.is_classifier = is_classifier
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.head = '{"model":' + _encode(model) + ',"predictions":['
        self._labels = [_encode(c) for c in self.classes]
        if is_classifier:
            probs = ",".join(_encode(c).replace("%", "%%") + ":%r" for c in self.classes)
            self._fmt = '{"prediction_id":"%s","label":%s,"probabilities":{' + probs + "}}"
        else:
            self._fmt = '{"prediction_id":"%s","value":%r}'

    def predictions(self, ids: list[str], labels: list[int] | None, vals: list[Any]) -> list[str]:
        """One JSON object per prediction: ids, label indices (None for a regressor) and
        probability rows or values."""
        fmt = self._fmt
        if labels is None:
            if all(map(_isfinite, vals)):
                return [fmt % pv for pv in zip(ids, vals)]
            return [_encode({"prediction_id": i, "value": v if _isfinite(v) else None}) for i, v in zip(ids, vals)]
        names = self._labels
        out = []
        for pid, lab, row in zip(ids, labels, vals):
            if _isfinite(sum(row)):  # NaN and infinities propagate through the sum
                out.append(fmt % (pid, names[lab], *row))
            else:
                out.append(_encode({"prediction_id": pid, "label": self.classes[lab], "probabilities": {
                    c: p if _isfinite(p) else None for c, p in zip(self.classes, row)}}))
        return out

    def body(self, ids: list[str], labels: list[int] | None, vals: list[Any]) -> bytes:
        """The answer to POST /v1/predict."""
        return (self.head + ",".join(self.predictions(ids, labels, vals)) + "]}").encode()

    def lists(self, out: dict[str, Any]) -> tuple[list[int] | None, list[Any]]:
        """`Predictor.run_feed`'s arrays as the lists `predictions` takes."""
        if "value" in out:
            return None, out["value"].tolist()
        index = self.index
        return [index[lab] for lab in out["label"].tolist()], out["probabilities"].tolist()
