"""The ceiling for `aiops serve` on this machine: a raw ASGI app that only parses the JSON
body, calls onnxruntime on the same model and writes the JSON answer. No validation, no
features (the body carries the ONNX inputs already featurized), no metrics, no log.

    AIOPS_BENCH_MODEL=generated/credit_risk/model.onnx \
        uvicorn --factory _raw_asgi:create_app --http httptools --loop uvloop

Body: {"inputs": {"<onnx input>": value, ...}} for one row (null for a missing number). Session options as the
Predictor's (one intra-op thread), uvicorn options as `aiops serve`'s.
"""
from __future__ import annotations

import json
import os

import numpy as np


def create_app():
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(os.environ["AIOPS_BENCH_MODEL"], sess_options=so, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type == "tensor(string)") for i in sess.get_inputs()]
    headers = [(b"content-type", b"application/json")]

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        if scope["method"] == "GET":
            out = b'{"ready":true}'
        else:
            row = json.loads(body)["inputs"]
            feed = {n: np.array([[row[n]]], dtype=object) if s else
                    np.array([[np.nan if row[n] is None else row[n]]], dtype=np.float32) for n, s in inputs}
            res = sess.run(None, feed)
            out = json.dumps({"label": np.asarray(res[0]).tolist(),
                              "probabilities": np.asarray(res[1]).tolist() if len(res) > 1 else None}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": out})

    return app
