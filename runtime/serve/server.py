"""The HTTP server: a raw ASGI callable (no framework on the hot path) over the compiled
artefacts. uvicorn runs it (`aiops serve`, runtime/serve/cli.py).

Connection limits (header size, read deadlines, connections) are enforced before a request
reaches this app (runtime/serve/limits.py); serving.timeout_s is enforced here (504).

POST /v1/predict: read the body (413 over the limit), parse it with the stdlib json (400),
accept the records row by row or let the data contract list their errors (422), score them
with the other requests of the same event-loop turn in one onnxruntime call
(http_batch.py), answer, then hand the request and response bytes to the prediction log's
writer process (predlog.py). No scikit-learn, no pandas, no DataFrame: see docs/serving.md.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

import numpy as np

from aiops.runtime.artefacts import verify
from aiops.runtime.features import derive
from aiops.runtime.serve.answers import Answers
from aiops.runtime.serve.batching import Batcher
from aiops.runtime.serve.explain import Explainer, is_linear
from aiops.runtime.serve.limits import Limits
from aiops.runtime.serve.metrics import PUBLISH_EVERY, Metrics
from aiops.runtime.serve.openapi import document
from aiops.runtime.serve.rows import FeatureRows, RowAcceptor
from aiops.runtime.serve.jobs import JOB_ID, IdSource, JobInputError, JobRunner, JobStore, describe, parse_job_body
from aiops.runtime.masking import masker_for
from aiops.runtime.policy import PolicyError, load_access, load_cipher, owner_id
from aiops.runtime.predictor import Predictor
from aiops.runtime.audit.keys import load_audit
from aiops.runtime.audit.predlog import PredictionLog

ENV_ARTEFACTS = "AIOPS_SERVE_ARTEFACTS"
ENV_LOG_DIR = "AIOPS_SERVE_LOG_DIR"
ENV_JOB_THREADS = "AIOPS_JOB_THREADS"
ENV_INSECURE_DEV = "AIOPS_SERVE_INSECURE_DEV"  # set by 'aiops serve --insecure-dev' for its worker processes only
DEADLINE_SWEEP_S = 0.1  # serving.timeout_s is checked this often
JOB_MAX_BYTES = 64 * 1024 * 1024
MAX_ERRORS_PER_RECORD = 50
SMALL_REQUEST = 16  # records: up to this many, a request of plainly valid records goes as feature rows

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def default_log_dir(name: str) -> Path:
    return Path(".aiops") / "serving" / name


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decode = json.JSONDecoder(parse_constant=_no_constant).decode
_encode = json.JSONEncoder(separators=(",", ":")).encode


class Service:
    """Everything a worker loads once: verified artefacts, the onnxruntime session, the
    policy, the prediction log, the job runner, metrics and the precomputed documents."""

    def __init__(self, artefact_dir: str | Path, log_dir: str | Path | None = None,
                 env: dict[str, str] | None = None, job_threads: int | None = None, insecure_dev: bool = False):
        env = dict(os.environ) if env is None else env
        if job_threads is None:
            text = env.get(ENV_JOB_THREADS, "1")
            if not text.isdigit():
                raise PolicyError(f"{ENV_JOB_THREADS} must be a whole number of job threads (0 turns them off). "
                                  f"Got {text!r} instead.")
            job_threads = int(text)
        art = verify(artefact_dir, action="serve")  # ArtefactError: tampered, untrusted or not blessed
        self.art = art
        serving = art.json("serving.json")
        security = serving.get("security", {})
        limits = serving.get("serving", {})
        self.modes = tuple(limits.get("modes", ("http",)))
        if "http" not in self.modes:
            raise PolicyError(f"serving.json serving.modes is {list(self.modes)}: this model is not meant to be "
                              "served over HTTP (add 'http' to serving.modes in the spec)")
        self.max_records = int(limits.get("max_records_per_request", 1000))
        self.max_body = int(limits.get("max_body_bytes", 1 << 20))
        self.limits = Limits.from_serving(limits)
        self.risk_tier = serving.get("risk_tier")
        self.access = load_access(security, env, risk_tier=self.risk_tier, insecure_dev=insecure_dev)
        self.cipher = load_cipher(security, env)
        self.job_threads = job_threads
        self.audit = load_audit(security, env, insecure_dev=insecure_dev)  # the log's keys; required when security.audit_log is enabled
        self.log_dir = Path(log_dir) if log_dir else default_log_dir(art.name)
        self.predictor = p = Predictor(art.root)
        contract = p.contract
        self.masker = masker_for(security, contract, env)  # a PII column never reaches the log unmasked
        if "async" in self.modes and self.cipher is None:  # a job input keeps what the model needs (E722)
            used = {src for st in p.steps if st.transform != "drop" for src in (st.source, st.other) if src}
            clear = sorted(c.name for c in contract.columns if c.pii and c.name in used)
            if clear:
                raise PolicyError(f"serving.json serving.modes has 'async' and the PII column(s) {', '.join(clear)} "
                                  "feed the model, but encryption at rest is off: job inputs would hold them in clear "
                                  "text; enable security.encryption_at_rest in the spec, or remove 'async'")
        self.acceptor = RowAcceptor(contract)
        self.rows = FeatureRows(self.acceptor, p.steps, p.input_names, p.lone_row_twice)
        self.classes = list(p.meta.classes)
        self.model = {"name": art.name, "version": art.version, "manifest_sha256": art.manifest_sha256}
        self.answers = Answers(self.model, self.classes, p.is_classifier)
        self.log = PredictionLog(self.log_dir, self.masker, self.acceptor.names,
                                 {"name": art.name, "version": art.version}, art.manifest_sha256,
                                 p.meta.classes, self.cipher, audit=self.audit)
        profile = art.json("evidence/profile.json")
        from aiops.runtime.profile import prediction_reference

        score = prediction_reference(profile)  # score (classification) or value (regression) bins
        self.metrics = Metrics(art.name, art.version, p.meta.classes, p.pos_index, score.get("edges"))
        importance = art.json("evidence/importance.json") if (art.root / "evidence/importance.json").is_file() else {}
        self.explainer = Explainer(p, profile, importance, is_linear(art.root / "model.onnx"))
        self.ids = IdSource()
        self.jobs: JobRunner | None = None
        if "async" in self.modes:
            store = JobStore(self.log_dir / "jobs", int(limits.get("job_max_attempts", 3)),
                             bool(limits.get("keep_job_inputs", False)))
            self.jobs = JobRunner(store, p, self.acceptor, self.log, self.metrics, self.ids, self.masker, self.cipher,
                                  int(limits.get("batch_chunk_rows", 50000)), job_threads)
        self.openapi = _encode(document(art.name, art.version, contract, self.max_records, self.max_body,
                                        p.is_classifier)).encode()
        self.metadata = _encode(self._metadata(security, limits, score.get("edges"))).encode()

    def _metadata(self, security: dict[str, Any], limits: dict[str, Any], score_edges: list | None) -> dict[str, Any]:
        """GET /v1/metadata: what is served, under which contract, limits and policy."""
        art, p, contract = self.art, self.predictor, self.predictor.contract
        blessing = art.json("evidence/blessing.json") if (art.root / "evidence/blessing.json").is_file() else {}
        evaluation = art.json("evidence/evaluation.json") if (art.root / "evidence/evaluation.json").is_file() else {}
        return {
            "model": {**self.model, "task": p.meta.task, "classes": self.classes, "positive_class": p.meta.positive_class,
                      "threshold": p.meta.threshold, "blessed": art.blessed, "signed": art.trust.signed,
                      "trust": art.trust.to_dict(), "spec": art.manifest.get("spec", {}),
                      "holdout_metrics": evaluation.get("metrics"), "failed_gates": blessing.get("failed", [])},
            "contract": {"columns": [{"name": c.name, "dtype": c.dtype, "required": c.required, "nullable": c.nullable,
                                      "pii": c.pii, "sensitive": c.sensitive} for c in contract.request_columns],
                         "target": contract.target, "key": contract.key},
            "features": [{"name": s.name, "transform": s.transform, "source": s.source, "other": s.other}
                         for s in p.steps],
            "limits": {"max_records_per_request": self.max_records, "max_body_bytes": self.max_body,
                       "job_max_bytes": JOB_MAX_BYTES, "modes": list(self.modes),
                       "latency_objective_ms": limits.get("latency_objective_ms"), **self.limits.as_dict(),
                       "job_max_attempts": int(limits.get("job_max_attempts", 3)),
                       "keep_job_inputs": bool(limits.get("keep_job_inputs", False)),
                       "job_threads_per_worker": self.job_threads if self.jobs is not None else 0},
            "security": {
                "auth": "open" if self.access.open else "api_key", "keys": self.access.source,
                "risk_tier": self.risk_tier, "keys_required": self.access.required,
                "insecure_dev": self.access.insecure_dev,
                "warning": (("INSECURE DEV MODE (--insecure-dev): " if self.access.insecure_dev else "") +
                            "no API keys are configured: anyone who can reach this server may use every route"
                            if self.access.open else None),
                "roles": {r: sorted(v) for r, v in sorted(self.access.roles.items())},
                "masking": dict(sorted(self.masker.methods.items())),
                "masking_key_id": self.masker.key_id or None,  # equal on hosts whose hashes can be joined
                "encryption_at_rest": self.cipher is not None,
                "audit_log": security.get("audit_log"),
            },
            "prediction_log": {"file": self.log.path.name, "format": "docs/serving.md#prediction-log",
                               "chain": "hmac-sha256" if self.audit.log_key else "unkeyed",
                               "checkpoint_public_key": self.audit.public_key,
                               "retention_days": self.audit.retention_days,
                               "when_unwritable": "refuse" if self.audit.fail_closed else "buffer",
                               "encrypted": self.cipher is not None},
            "explain": {"method": "occlusion", "exact": self.explainer.exact},
            "prediction_score_bins": score_edges,
        }

    def start(self) -> None:
        self.log.start()
        if self.jobs is not None:
            self.jobs.start()

    def stop(self) -> None:
        if self.jobs is not None:
            self.jobs.stop()
        self.log.close()


class _Reject(Exception):
    """Answer with this status and error body."""

    def __init__(self, status: int, code: str, message: str, extra: dict[str, Any] | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.extra, self.headers = status, code, message, extra, headers


class _Disconnected(Exception):
    pass


_LOGGED = frozenset(("predict", "explain", "job_submit"))  # refused while a required audit log cannot be written
_METHODS = frozenset(("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"))
_JSON = b"application/json"
_STATIC_HEADERS = [(b"content-type", _JSON)]

# path -> (route label, {method: (permission or None, handler name)})
ROUTES: dict[str, dict[str, tuple[str | None, str]]] = {
    "/v1/predict": {"POST": ("predict", "predict")},
    "/v1/explain": {"POST": ("explain", "explain")},
    "/v1/jobs": {"POST": ("jobs", "job_submit")},
    "/v1/metadata": {"GET": ("metadata", "metadata")},
    "/v1/audit/verify": {"GET": ("audit", "audit")},
    "/healthz": {"GET": (None, "healthz")},
    "/readyz": {"GET": (None, "readyz")},
    "/metrics": {"GET": ("metrics", "metrics")},
    "/openapi.json": {"GET": (None, "openapi")},
}


class App:
    """The ASGI application. One instance per worker process."""

    def __init__(self, service: Service):
        self.s = service
        self.batcher = Batcher(service.predictor, service.rows)
        self.started = False
        self._publisher: asyncio.TimerHandle | None = None
        self.timeout = service.limits.timeout_s
        self._deadlines: dict[asyncio.Task, float] = {}  # request task -> perf_counter() deadline
        self._expired: set[asyncio.Task] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        # ROUTES resolved once: path -> {method: (permission, handler name, bound handler)}
        self._routes = {path: {m: (perm, name, getattr(self, "_" + name)) for m, (perm, name) in methods.items()}
                        for path, methods in ROUTES.items()}

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    self.startup()
                except (OSError, PolicyError) as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self._publish()
                self._sweep_deadlines()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if self._publisher is not None:
                    self._publisher.cancel()
                if self._sweeper is not None:
                    self._sweeper.cancel()
                self.s.metrics.publish()
                self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def startup(self) -> None:
        if not self.started:
            self.s.start()
            self.started = True
            import gc

            gc.collect()
            gc.freeze()  # the loaded model and tables never need scanning again
            # the log writer and job threads share the GIL with the event loop: hand it back
            # within 0.5 ms (default 5 ms) so that they cannot stall a response for long
            self._switch_interval = sys.getswitchinterval()  # restored at shutdown (an in-process host)
            sys.setswitchinterval(0.0005)

    def _publish(self) -> None:
        """Hand the event loop's metric counts to prometheus_client, now and every
        PUBLISH_EVERY seconds (runtime/serve/metrics.py)."""
        self.s.metrics.publish()
        self._publisher = asyncio.get_running_loop().call_later(PUBLISH_EVERY, self._publish)

    def _sweep_deadlines(self) -> None:
        """Cancel every request task past serving.timeout_s (it then answers 504), now and
        every DEADLINE_SWEEP_S seconds: no timer per request."""
        self._sweeper = asyncio.get_running_loop().call_later(DEADLINE_SWEEP_S, self._sweep_deadlines)
        if self._deadlines:
            now = time.perf_counter()
            for task, deadline in list(self._deadlines.items()):
                if now > deadline and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()

    def _extend_deadline(self) -> None:
        """Start the request's serving.timeout_s again (a job's body is bounded by body_timeout_s)."""
        self._deadlines[asyncio.current_task()] = time.perf_counter() + self.timeout  # type: ignore[index]

    def _no_deadline(self) -> None:
        """From here the request is finished whatever the time (a job being written to the queue)."""
        self._deadlines.pop(asyncio.current_task(), None)  # type: ignore[arg-type]

    def shutdown(self) -> None:
        if self.started:
            self.s.stop()
            self.started = False
            import gc

            gc.unfreeze()  # a process hosting the app in-process (tests) gets its state back
            sys.setswitchinterval(self._switch_interval)

    # ------------------------------------------------------------------ dispatch
    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        task = _current_task()
        self._deadlines[task] = t0 + self.timeout
        path = scope["path"]
        method = scope["method"]
        status = 500
        methods = self._routes.get(path)
        label = path if methods is not None else "(unknown)"  # bounded label values, whatever is sent
        try:
            args: tuple = ()
            if methods is None:
                dyn, args, label = self._dynamic(path)
                methods = {m: (perm, name, getattr(self, "_" + name)) for m, (perm, name) in dyn.items()}
            spec = methods.get(method)
            if spec is None:
                allow = ", ".join(sorted(methods)).encode()
                raise _Reject(405, "method_not_allowed", f"this route accepts {allow.decode()}",
                              headers=[(b"allow", allow)])
            permission, handler, call = spec
            headers = scope["headers"]
            if permission is not None and self.s.access.keys:
                self._authorize(headers, permission)
            if handler in _LOGGED and self.s.log.refusing:
                raise _Reject(503, "audit_log_unavailable", "the audit log cannot be written, so predictions are "
                              "refused until it can (security.audit_log is enabled); see /readyz")
            status = await call(scope, receive, send, headers, *args)
        except _Reject as r:
            self._deadlines.pop(task, None)  # no cancellation while the error is sent (it would escape)
            status = r.status
            err = {"code": r.code, "message": r.message}
            if r.extra:
                err.update(r.extra)
            await _respond(send, r.status, _encode({"error": err}).encode(), r.headers)
        except _Disconnected:
            status = 499
        except asyncio.CancelledError:
            self._deadlines.pop(task, None)
            if task not in self._expired:
                raise  # not ours (shutdown): let it through
            self._expired.discard(task)
            task.uncancel()
            status = 504
            try:
                await _respond(send, 504, _encode({"error": {"code": "timeout", "message": (
                    f"the request was not answered within {self.timeout:g} s (serving.timeout_s) and was "
                    "abandoned")}}).encode())
            except (RuntimeError, OSError):
                pass
        except Exception:  # a bug: keep the cause in the server log, tell the client nothing internal
            self._deadlines.pop(task, None)
            ref = self.s.ids.take(1)[0]
            print(f"aiops serve: internal error (reference {ref}) on {method} {label}:\n{traceback.format_exc()}",
                  file=sys.stderr, flush=True)
            status = 500
            try:
                await _respond(send, 500, _encode({"error": {"code": "internal", "message":
                               f"internal error; reference {ref}"}}).encode())
            except (RuntimeError, OSError):
                pass
        self._deadlines.pop(task, None)
        self.s.metrics.request(label, method if method in _METHODS else "OTHER", status, time.perf_counter() - t0)

    def _dynamic(self, path: str) -> tuple[dict[str, tuple[str | None, str]], tuple, str]:
        parts = path.split("/")
        if len(parts) in (4, 5) and parts[1] == "v1" and parts[2] == "jobs" and parts[3]:
            if len(parts) == 4:
                return {"GET": ("jobs", "job_status")}, (parts[3],), "/v1/jobs/{id}"
            if parts[4] == "result":
                return {"GET": ("jobs", "job_result")}, (parts[3],), "/v1/jobs/{id}/result"
        raise _Reject(404, "not_found", "no such route; the routes are listed in /openapi.json")

    def _authorize(self, headers: list[tuple[bytes, bytes]], permission: str) -> None:
        key = _key(headers)
        verdict = self.s.access.check(key, permission)
        if verdict == 401:
            raise _Reject(401, "unauthorized", "an API key is required: send 'Authorization: Bearer KEY' or "
                          "'X-API-Key: KEY'" if not key else "unknown API key",
                          headers=[(b"www-authenticate", b'Bearer realm="aiops"')])
        if verdict == 403:
            raise _Reject(403, "forbidden", f"the key's role does not grant '{permission}'")

    # ------------------------------------------------------------------ body handling
    async def _read_json(self, receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> tuple[Any, bytes]:
        ctype, length = _content_info(headers)
        if ctype != "application/json":
            raise _Reject(415, "unsupported_media_type", "send the body as JSON with 'Content-Type: application/json'")
        body = await _read_body(receive, limit, length)
        return _parse(body), body

    # ------------------------------------------------------------------ handlers
    async def _predict(self, scope, receive, send, headers) -> int:
        s = self.s
        _log_room(s)
        obj, raw = await self._read_json(receive, headers, s.max_body)
        if type(obj) is not dict or "records" not in obj or len(obj) != 1:
            raise _Reject(422, "bad_request", 'expected a JSON object {"records": [{...}, ...]}' + _extra_keys(obj))
        records = obj["records"]
        if type(records) is not list or not records:
            raise _Reject(422, "bad_request", '"records" must be a non-empty list of objects')
        n = len(records)
        if n > s.max_records:
            raise _Reject(413, "too_many_records", f"at most {s.max_records} records per request; send more "
                          "through POST /v1/jobs")
        item = s.rows.rows(records) if n <= SMALL_REQUEST else None
        if item is None:
            item = self._validate(records, "http", fast=n > SMALL_REQUEST)
        res = self.batcher.score(item, n)
        labels, vals = res if type(res) is tuple else await res
        body = s.answers.body(s.ids.take(n), labels, vals)
        await _respond(send, 200, body)
        s.log.submit_http("predict", time.time(), raw, body)  # the writer process reads both
        s.metrics.answered("http", labels, vals)
        return 200

    def _validate(self, records: list[Any], source: str, fast: bool = True) -> dict[str, np.ndarray]:
        """Clean columns, or 422 with every error of every record. fast: try the row
        acceptor first (it gives up on anything unusual; the contract then decides)."""
        s = self.s
        cols = s.acceptor.accept(records) if fast else None
        if cols is not None:
            return cols
        cols, errors = s.predictor.contract.validate_records(records)
        if errors.items:
            by_row = errors.by_row()
            s.metrics.rejected_records(source, len(by_row))
            raise _Reject(422, "contract_violation", f"{len(by_row)} of {len(records)} records break the data contract",
                          {"records": [{"index": i, "errors": [{"field": f or None, "code": c, "message": m}
                                                               for f, c, m in errs[:MAX_ERRORS_PER_RECORD]]}
                                       for i, errs in sorted(by_row.items())]})
        return cols

    async def _explain(self, scope, receive, send, headers) -> int:
        s = self.s
        _log_room(s)
        obj, raw = await self._read_json(receive, headers, s.max_body)
        if type(obj) is dict and len(obj) == 1 and "record" in obj:
            record = obj["record"]
        elif type(obj) is dict and len(obj) == 1 and type(obj.get("records")) is list and len(obj["records"]) == 1:
            record = obj["records"][0]
        else:
            raise _Reject(422, "bad_request", 'expected a JSON object {"record": {...}} (one record)' +
                          _extra_keys(obj, "record"))
        feed = derive(s.predictor.steps, self._validate([record], "explain"))
        out = s.predictor.run_feed(feed)
        explanation = s.explainer.explain(feed, out)
        labels, vals = s.answers.lists(out)
        prediction = s.answers.predictions(s.ids.take(1), labels, vals)[0]
        body = ('{"model":' + _encode(s.model) + ',"prediction":' + prediction + ',"explanation":' +
                _encode(explanation) + "}").encode()
        await _respond(send, 200, body)
        s.log.submit_http("explain", time.time(), raw, body)
        s.metrics.predictions("explain", out)
        return 200

    async def _job_submit(self, scope, receive, send, headers) -> int:
        s = self.s
        if s.jobs is None:
            raise _Reject(404, "not_found", "asynchronous jobs are off for this model (serving.modes lacks 'async')")
        ctype, length = _content_info(headers)
        if ctype not in ("application/json", "text/csv"):
            raise _Reject(415, "unsupported_media_type", "send JSON ({\"records\": [...]}) or text/csv")
        body = await _read_body(receive, JOB_MAX_BYTES, length)
        self._extend_deadline()  # timeout_s counts from the end of the body here
        fmt = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("format") or [None])[0]
        try:
            data, n, fmt = await asyncio.to_thread(parse_job_body, body, ctype, fmt)
        except JobInputError as exc:
            raise _Reject(400 if "not valid JSON" in str(exc) else 422, "bad_job", str(exc)) from None
        self._no_deadline()  # queued or not at all: never a 504 for a job that was queued
        job = await asyncio.to_thread(s.jobs.submit, data, n, fmt, owner_id(_key(headers)))
        loc = f"/v1/jobs/{job['job_id']}".encode()
        await _respond(send, 202, _encode(job).encode(), [(b"location", loc)])
        return 202

    async def _job_status(self, scope, receive, send, headers, job_id: str) -> int:
        job = await self._job(job_id, headers)
        await _respond(send, 200, _encode(describe(job)).encode())
        return 200

    async def _job_result(self, scope, receive, send, headers, job_id: str) -> int:
        job = await self._job(job_id, headers)
        if job["status"] != "succeeded":
            raise _Reject(409, "not_ready", f"the job is {job['status']}; poll /v1/jobs/{job_id}")
        data = await asyncio.to_thread(self.s.jobs.read_result, job)
        ctype = b"text/csv" if job["format"] == "csv" else b"application/vnd.apache.parquet"
        await _respond(send, 200, data, [(b"content-type", ctype)])
        return 200

    async def _job(self, job_id: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        """The job, if the caller may see it: the key that created it, a role with `jobs_admin`,
        or anyone when the server runs open. Otherwise 404, as for a job that does not exist."""
        s = self.s
        if s.jobs is None:
            raise _Reject(404, "not_found", "asynchronous jobs are off for this model")
        if not JOB_ID.match(job_id):  # not an id this server gives out: never a query
            raise _Reject(404, "not_found", "no such job")
        job = await asyncio.to_thread(s.jobs.store.get, job_id)
        if job is not None and not s.access.open:
            key = _key(headers)
            if job["owner"] != owner_id(key) and not s.access.allows(s.access.role_of(key) or "", "jobs_admin"):
                job = None
        if job is None:
            raise _Reject(404, "not_found", "no such job")
        return job

    async def _metadata(self, scope, receive, send, headers) -> int:
        await _respond(send, 200, self.s.metadata)
        return 200

    async def _openapi(self, scope, receive, send, headers) -> int:
        await _respond(send, 200, self.s.openapi)
        return 200

    async def _healthz(self, scope, receive, send, headers) -> int:
        await _respond(send, 200, b'{"status":"ok"}')
        return 200

    async def _readyz(self, scope, receive, send, headers) -> int:
        s = self.s
        problems = []
        if not self.started:
            problems.append("not started")
        elif not s.log.writable:
            problems.append(f"the prediction log cannot be written: {s.log.error or 'the writer stopped'}")
        elif s.jobs is not None and not s.jobs.alive:
            problems.append("a job worker stopped")
        status = 503 if problems else 200
        await _respond(send, status, _encode({"status": "not ready" if problems else "ready",
                                              "problems": problems}).encode())
        return status

    async def _metrics(self, scope, receive, send, headers) -> int:
        body, ctype = self.s.metrics.render()
        await _respond(send, 200, body, [(b"content-type", ctype.encode())])
        return 200

    async def _audit(self, scope, receive, send, headers) -> int:
        from aiops.runtime.audit.verify import verify_log

        a = self.s.audit  # this server's own keys: for an independent check, run 'aiops audit verify'
        rep = await asyncio.to_thread(verify_log, self.s.log_dir, a.log_key, [a.public_key] if a.public_key else None)
        await _respond(send, 200, _encode(rep.as_dict()).encode())
        return 200


# ---------------------------------------------------------------------- helpers
_current_task = asyncio.current_task


LOG_RETRY_AFTER = b"1"  # seconds: the writer drains megabytes per second once it catches up


def _log_room(s: Service) -> None:
    """503 with Retry-After while the prediction log's queue is full: the request is refused
    before any work, never held on the event loop, and every answered prediction is logged."""
    if not s.log.has_room:
        raise _Reject(503, "log_backlog", "the prediction log is behind; retry after the time in Retry-After",
                      headers=[(b"retry-after", LOG_RETRY_AFTER)])


def _key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The API key sent as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'."""
    key = None
    for k, v in headers:
        if k == b"x-api-key":
            key = v.decode("latin-1").strip()
        elif k == b"authorization":
            scheme, _, token = v.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                key = token.strip()
    return key


def _extra_keys(obj: Any, key: str = "records") -> str:
    """What else a request object holds, for the 422 message (names only, at most 5)."""
    if type(obj) is not dict:
        return f"; got a JSON {_KINDS.get(type(obj), 'value')}"
    extra = [k for k in obj if k != key and k != "records"]
    if not extra:
        return ""
    names = ", ".join(json.dumps(k[:40]) for k in extra[:5]) + (", ..." if len(extra) > 5 else "")
    return f"; unexpected top-level key(s): {names}"


_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _content_info(headers: list[tuple[bytes, bytes]]) -> tuple[str, int | None]:
    ctype, length = "", None
    for k, v in headers:
        if k == b"content-type":
            ctype = v.decode("latin-1").split(";", 1)[0].strip().lower()
        elif k == b"content-length":
            try:
                length = int(v)
            except ValueError:
                raise _Reject(400, "bad_request", "Content-Length is not a number") from None
    return ctype, length


async def _read_body(receive: Receive, limit: int, length: int | None) -> bytes:
    if length is not None and length > limit:
        raise _Reject(413, "body_too_large", f"the body is larger than {limit} bytes")
    msg = await receive()
    if msg["type"] != "http.request":
        raise _Disconnected()
    body = msg.get("body", b"")
    if not msg.get("more_body"):
        if len(body) > limit:
            raise _Reject(413, "body_too_large", f"the body is larger than {limit} bytes")
        return body
    chunks = [body]
    size = len(body)
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            raise _Disconnected()
        b = msg.get("body", b"")
        size += len(b)
        if size > limit:
            raise _Reject(413, "body_too_large", f"the body is larger than {limit} bytes")
        chunks.append(b)
        if not msg.get("more_body"):
            return b"".join(chunks)


def _parse(body: bytes) -> Any:
    if not body:
        raise _Reject(400, "malformed_json", "the body is empty; expected JSON")
    try:
        return _decode(body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        detail = ""
        if isinstance(exc, json.JSONDecodeError):
            detail = f": {exc.msg} at line {exc.lineno} column {exc.colno}"
        elif isinstance(exc, RecursionError):
            detail = ": nested too deeply"
        elif isinstance(exc, UnicodeDecodeError):
            detail = ": not UTF-8"
        elif "not valid JSON" in str(exc):
            detail = ": NaN and Infinity are not JSON numbers"
        raise _Reject(400, "malformed_json", f"the body is not valid JSON{detail}") from None


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    hs = [(b"content-length", str(len(body)).encode())]
    if headers and any(k == b"content-type" for k, _ in headers):
        hs += headers
    else:
        hs += _STATIC_HEADERS + (headers or [])
    await send({"type": "http.response.start", "status": status, "headers": hs})
    await send({"type": "http.response.body", "body": body})


def create_app() -> App:
    """uvicorn factory (`runtime.server:create_app`, factory=True): the artefact folder and
    log folder come from AIOPS_SERVE_ARTEFACTS and AIOPS_SERVE_LOG_DIR."""
    art = os.environ.get(ENV_ARTEFACTS)
    if not art:
        raise SystemExit(f"{ENV_ARTEFACTS} is not set: start the server with 'aiops serve ARTEFACT_DIR'")
    return App(Service(art, os.environ.get(ENV_LOG_DIR) or None, insecure_dev=os.environ.get(ENV_INSECURE_DEV) == "1"))
