"""The framework baseline for `aiops serve`: the same work behind Starlette instead of the
hand-written ASGI app of runtime/serve/server.py, so that the choice of the hand-written
app is measured, not assumed (bench/README.md has the figures and the decision).

Same work per POST /v1/predict: the same `Service` (verified artefacts, onnxruntime session,
policy, metrics, the MAC-chained and, for credit_risk, encrypted prediction log and its writer
process), the stdlib JSON parse, the same contract validation (`FeatureRows` fast path of
runtime/serve/rows.py, then `Contract.validate_records` for the errors), the same adaptive
batcher, the same answer bytes, the same log hand-off and metric counts. What differs is
what a framework does per request: Starlette's routing, `Request`, `Response` and
middleware stack (anyio under uvicorn).

    AIOPS_SERVE_ARTEFACTS=generated/credit_risk AIOPS_SERVE_LOG_DIR=/tmp/log \
        uvicorn --factory _starlette_app:create_app --http httptools --loop uvloop

Open (no API keys), like the other baselines: the benchmark starts it with insecure dev mode.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiops.runtime.serve.batching import Batcher
from aiops.runtime.serve.metrics import PUBLISH_EVERY
from aiops.runtime.serve.server import ENV_ARTEFACTS, ENV_LOG_DIR, SMALL_REQUEST, Service


def create_app() -> Starlette:
    s = Service(os.environ[ENV_ARTEFACTS], os.environ.get(ENV_LOG_DIR) or None, insecure_dev=True)
    batcher = Batcher(s.predictor, s.rows)
    decode = json.JSONDecoder().decode

    async def predict(request: Request) -> Response:
        t0 = time.perf_counter()
        if not s.log.has_room:
            return JSONResponse({"error": {"code": "log_backlog"}}, 503, headers={"retry-after": "1"})
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return JSONResponse({"error": {"code": "unsupported_media_type"}}, 415)
        raw = await request.body()
        if len(raw) > s.max_body:
            return JSONResponse({"error": {"code": "body_too_large"}}, 413)
        try:
            obj = decode(raw.decode("utf-8"))
        except ValueError:
            return JSONResponse({"error": {"code": "malformed_json"}}, 400)
        records = obj.get("records") if type(obj) is dict and len(obj) == 1 else None
        if type(records) is not list or not records or len(records) > s.max_records:
            return JSONResponse({"error": {"code": "bad_request"}}, 422)
        n = len(records)
        item = s.rows.rows(records) if n <= SMALL_REQUEST else None
        if item is None:
            item = s.acceptor.accept(records)
        if item is None:
            item, errors = s.predictor.contract.validate_records(records)
            if errors.items:
                return JSONResponse({"error": {"code": "contract_violation",
                                               "message": f"{len(errors.by_row())} of {n} records break the data "
                                                          "contract"}}, 422)
        res = batcher.score(item, n)
        labels, vals = res if type(res) is tuple else await res
        body = s.answers.body(s.ids.take(n), labels, vals)
        s.log.submit_http("predict", time.time(), raw, body)
        s.metrics.answered("http", labels, vals)
        s.metrics.request("/v1/predict", "POST", 200, time.perf_counter() - t0)
        return Response(body, media_type="application/json")

    async def readyz(request: Request) -> Response:
        return JSONResponse({"status": "ready" if s.log.writable else "not ready"}, 200 if s.log.writable else 503)

    async def publish() -> None:
        while True:
            await asyncio.sleep(PUBLISH_EVERY)
            s.metrics.publish()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        s.start()
        task = asyncio.get_running_loop().create_task(publish())
        try:
            yield
        finally:
            task.cancel()
            s.metrics.publish()
            s.stop()

    return Starlette(routes=[Route("/v1/predict", predict, methods=["POST"]), Route("/readyz", readyz)],
                     lifespan=lifespan)
