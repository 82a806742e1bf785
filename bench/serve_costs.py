"""What one `POST /v1/predict` of one record costs, stage by stage, against the raw endpoint's
stages: the "which part of the request costs what" table of issue 14.

    python bench/serve_costs.py                 # both examples, 5 repeats
    python bench/serve_costs.py --only flight_delays --repeats 9
    python bench/serve_costs.py --lone-row-ab --repeats 9 --requests 3000   # one copy vs two, flight_delays

End-to-end runs (bench/serve.py) share two cores with the load generator and move by up to
2x from run to run on this machine; this script measures CPU time in one process, without
the network, so that a stage's cost is a stable figure. For each example it builds the
server's `Service` and `App` exactly as `aiops serve` does (contract, features, onnxruntime,
answer, metrics, the MAC-chained and, for credit_risk, encrypted prediction log), then:

1. times the whole request through the ASGI app (`await app(scope, receive, send)`, the
   event loop's share), on the same 200 real records the HTTP benchmark sends (one record
   per request);
2. runs the same requests again with each stage of the request path wrapped in a timer, so
   that a stage is timed where it runs (timed on its own in a tight loop, onnxruntime costs
   a third less: its caches stay warm); what a clock read adds is measured and taken off,
   and "the rest" is that timed pass less its stages and what the timers added: routing, the
   key and log checks, deadline bookkeeping, the batcher, the coroutines;
3. measures the prediction log's writer process (CPU per entry, from /proc) and its
   forwarding thread while the app runs, and times the writer's own stages (reading the
   frame, building the entry with masking, and sealing + MAC chain + append) in process;
4. times the raw endpoint's stages (bench/_raw_asgi.py: json.loads, featurized inputs to
   numpy, onnxruntime on one row, json.dumps) and its whole request;
5. with --http, measures what uvicorn + httptools + uvloop + the kernel cost per request
   with an app that answers a constant (wrk, concurrency 1), with uvicorn's protocol and
   with aiops's limited protocol: the part of a request neither endpoint can remove.

Medians of the repeats (after a warm-up); CPU time of this thread (time.thread_time_ns), so
other processes on the machine count only through caches and frequency. Results go to
bench/results/serve_costs.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from _common import WORK, bench_env, fmt_table, machine, median, proc_cpu_seconds, trust, write_results  # noqa: E402

N_BODIES = 200


def cpu_per_call(fn: Callable[[Any], Any], items: list[Any], repeats: int) -> tuple[float, list[float]]:
    """Median over repeats of this thread's CPU µs per call of fn(item), every item once."""
    for it in items[:50]:
        fn(it)
    runs = []
    for _ in range(repeats):
        t = time.thread_time_ns()
        for it in items:
            fn(it)
        runs.append((time.thread_time_ns() - t) / 1e3 / len(items))
    return median(runs), runs


def _thread_seconds(thread) -> float:
    """CPU seconds of one thread of this process, to the nanosecond (/proc counts 10 ms ticks,
    more than the log's forwarding thread spends in a repeat)."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident)) if thread is not None else 0.0


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop, as `aiops serve` runs (asyncio's own when uvloop is missing)."""
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


class Request:
    """An in-process ASGI request of one body (no network)."""

    def __init__(self, body: bytes, path: str = "/v1/predict"):
        self.scope = {"type": "http", "path": path, "method": "POST", "query_string": b"",
                      "headers": [(b"content-type", b"application/json"),
                                  (b"content-length", str(len(body)).encode())]}
        self.msg = {"type": "http.request", "body": body, "more_body": False}
        self.status = 0

    async def receive(self) -> dict:
        return self.msg

    async def send(self, m: dict) -> None:
        if m["type"] == "http.response.start":
            self.status = m["status"]


def aiops_costs(name: str, repeats: int, requests: int) -> dict[str, Any]:
    from serve import Example

    from aiops.runtime.audit.chain import ChainWriter
    from aiops.runtime.audit.predlog import EntryBuilder, Masker, rows_of_frame
    from aiops.runtime.serve import server as srv

    ex = Example(name)
    logs = Path(tempfile.mkdtemp(prefix=f"costs-{name}-", dir=WORK))
    env = bench_env()
    trust(ex.art)  # the TEST-ONLY key of the signed examples, as a deployment trusts its own
    app = srv.App(srv.Service(ex.art, logs / "serving", env=env, job_threads=0, insecure_dev=True))
    s, p = app.s, app.s.predictor
    bodies = ex.bodies["aiops"]
    out: dict[str, Any] = {}

    # answers for the writer's stages below
    feeds = [s.rows.feed(s.rows.rows(srv._decode(b.decode("utf-8"))["records"])) for b in bodies]
    answers = [s.answers.body(["x" * 26], *p.lists(p.run(f), 1)) for f in feeds]

    # 1. + 2. the whole request through the app; each stage timed where it runs, inside the request
    # (timed on its own in a tight loop, onnxruntime costs a third less: its caches stay warm)
    spent: dict[str, int] = {}
    clock = time.thread_time_ns  # CPU time: a stage preempted by another process is not charged for it

    def timed(label: str, fn: Callable) -> Callable:
        def wrapper(*a, **k):
            t = clock()
            try:
                return fn(*a, **k)
            finally:
                spent[label] = spent.get(label, 0) + clock() - t
        return wrapper

    def timed_async(label: str, fn: Callable) -> Callable:
        async def wrapper(*a, **k):
            t = clock()
            try:
                return await fn(*a, **k)
            finally:
                spent[label] = spent.get(label, 0) + clock() - t
        return wrapper

    STAGES = [  # (label, object, attribute), in the order a request meets them
        ("JSON parse (stdlib json)", srv, "_decode"),
        ("contract checks + features, per record (FeatureRows.rows)", s.rows, "rows"),
        ("ONNX feed arrays (FeatureRows.feed)", s.rows, "feed"),
        ("onnxruntime run, the lone row " + ("twice" if p.lone_row_twice else "once") + " (row_kernels.py)", p, "run"),
        ("outputs to lists, threshold (Predictor.lists)", p, "lists"),
        ("ids + answer JSON (IdSource.take, Answers.body)", s.answers, "body"),
        ("response messages to the server (the app's two sends)", srv, "_respond"),
        ("log hand-off (PredictionLog.submit_http)", s.log, "submit_http"),
        ("metrics counts (Metrics.answered, Metrics.request)", s.metrics, "answered"),
    ]
    originals = [(obj, attr, getattr(obj, attr)) for _, obj, attr in STAGES]

    def instrument(on: bool) -> None:
        for (label, obj, attr), (_, _, fn) in zip(STAGES, originals):
            if not on:
                setattr(obj, attr, fn)
            elif attr == "_respond":
                setattr(obj, attr, timed_async(label, fn))
            else:
                setattr(obj, attr, timed(label, fn))
        if on:
            s.metrics.request = timed(STAGES[-1][0], type(s.metrics).request.__get__(s.metrics))
        elif "request" in vars(s.metrics):
            del s.metrics.request

    app.startup()
    try:
        reqs = [Request(b) for b in bodies]
        loop = _new_loop()

        async def run(n: int) -> None:
            for i in range(n):
                r = reqs[i % len(reqs)]
                await app(r.scope, r.receive, r.send)
                if r.status != 200:
                    raise SystemExit(f"{name}: the app answered {r.status}")

        loop.run_until_complete(run(500))
        s.log.flush(30)
        wpid = s.log._proc.pid
        whole, wproc, fwd, staged = [], [], [], []
        for _ in range(repeats):
            # the whole request, as served (no instrument), with the writer and forwarding thread meanwhile
            w0, f0, t0 = proc_cpu_seconds(wpid), _thread_seconds(s.log._thread), time.thread_time_ns()
            loop.run_until_complete(run(requests))
            t1 = time.thread_time_ns()
            s.log.flush(60)
            whole.append((t1 - t0) / 1e3 / requests)
            wproc.append((proc_cpu_seconds(wpid) - w0) * 1e6 / requests)
            fwd.append((_thread_seconds(s.log._thread) - f0) * 1e6 / requests)
            # then the same requests with every stage timed
            instrument(True)
            spent.clear()
            t0 = clock()
            loop.run_until_complete(run(requests))
            total = (clock() - t0) / 1e3 / requests
            instrument(False)
            s.log.flush(60)
            staged.append({"total": total, **{k: v / 1e3 / requests for k, v in spent.items()}})
        loop.close()
    finally:
        app.shutdown()
    # what timing a call adds: inside its own interval (`bias`, taken off each stage) and in all
    # (`wrap`, the clock reads and the wrapper's call), so that "the rest" comes from the same
    # timed pass as the stages: its total less the stages less what the wrappers added
    bare = lambda: None  # noqa: E731
    probe = timed("probe", bare)
    for _ in range(20000):
        probe()
    spent.pop("probe")
    t = time.thread_time_ns()
    for _ in range(100000):
        probe()
    wrapped = time.thread_time_ns() - t
    bias = spent.pop("probe") / 1e3 / 100000
    t = time.thread_time_ns()
    for _ in range(100000):
        bare()
    wrap = (wrapped - (time.thread_time_ns() - t)) / 1e3 / 100000
    calls = {label: 2 if attr == "answered" else 1 for label, _, attr in STAGES}  # answered + request
    n_calls = sum(calls.values())
    rows_out = [{"stage": label, "us": max(0.0, median([r.get(label, 0.0) for r in staged]) - calls[label] * bias)}
                for label, _, _ in STAGES]
    out["stages"] = rows_out
    out["timer_bias_us"], out["timer_wrap_us"] = bias, wrap
    out["instrumented_total_us"] = median([r["total"] for r in staged])
    out["dispatch_us"] = median([r["total"] - sum(v for k, v in r.items() if k != "total") - n_calls * (wrap - bias)
                                 for r in staged])
    out["app_us"], out["app_runs"] = median(whole), whole
    out["writer_process_us"], out["writer_runs"] = median(wproc), wproc
    out["forwarding_thread_us"] = median(fwd)

    # the writer's stages, in this process, with the server's own configuration
    cfg = s.log._config
    hexkey = (lambda k: bytes.fromhex(cfg[k]) if cfg.get(k) else None)
    builder = EntryBuilder(Masker.from_config(cfg["masker"]), tuple(cfg["columns"]), cfg["model"],
                           cfg["manifest_sha256"], bool(cfg.get("key")))
    frames = [({"t": "http", "endpoint": "predict", "ts": time.time(), "req": len(b)}, b + a)
              for b, a in zip(bodies, answers)]
    parts_in = [rows_of_frame(h, b) for h, b in frames]
    chain_dir = Path(tempfile.mkdtemp(prefix="chain-", dir=WORK))
    chain = ChainWriter(chain_dir, hexkey("log_key"), hexkey("key"), hexkey("seed"), cfg.get("retention_days"))
    built = [builder.parts(h["ts"], "predict", None, r) for (h, _), r in zip(frames, parts_in)]
    writer = [
        ("read the frame (rows_of_frame: two JSON parses)", lambda hb: rows_of_frame(*hb), frames),
        ("build the entry: mask, canonical JSON (EntryBuilder.parts)",
         lambda r: builder.parts(time.time(), "predict", None, r), parts_in),
        ("seal (AES-GCM) + MAC chain + append, 200 at a time (ChainWriter.append)", None, built),
    ]
    wrows = []
    for label, fn, items in writer:
        if fn is None:  # append takes a list: the writer appends what it has gathered
            runs = []
            for _ in range(repeats):
                t = time.thread_time_ns()
                chain.append([x for b in built for x in b])
                runs.append((time.thread_time_ns() - t) / 1e3 / len(built))
            med = median(runs)
        else:
            med, runs = cpu_per_call(fn, items, repeats)
        wrows.append({"stage": label, "us": med, "runs": runs})
    chain.close()
    out["writer_stages"] = wrows
    out["encrypted"] = bool(cfg.get("key"))
    shutil.rmtree(logs, ignore_errors=True)
    shutil.rmtree(chain_dir, ignore_errors=True)
    return out


def raw_costs(name: str, repeats: int, requests: int) -> dict[str, Any]:
    """bench/_raw_asgi.py's stages and its whole request, in process."""
    import numpy as np
    import onnxruntime as ort
    from serve import Example

    import _raw_asgi

    ex = Example(name)
    bodies = ex.bodies["raw"]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(ex.art / "model.onnx"), sess_options=so, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type == "tensor(string)") for i in sess.get_inputs()]

    def feed(row):
        return {n: np.array([[row[n]]], dtype=object) if st else
                np.array([[np.nan if row[n] is None else row[n]]], dtype=np.float32) for n, st in inputs}

    def answer(res):
        return json.dumps({"label": np.asarray(res[0]).tolist(),
                           "probabilities": np.asarray(res[1]).tolist() if len(res) > 1 else None}).encode()

    labels = ["JSON parse (json.loads)", "ONNX feed arrays (already featurized by the client)",
              "onnxruntime run, one row", "answer JSON (json.dumps)"]
    clock = time.thread_time_ns
    runs: list[list[float]] = []
    for rep in range(repeats + 1):  # the first is a warm-up
        acc = [0, 0, 0, 0]
        for i in range(requests):
            t0 = clock()
            row = json.loads(bodies[i % len(bodies)])["inputs"]
            t1 = clock()
            f = feed(row)
            t2 = clock()
            res = sess.run(None, f)
            t3 = clock()
            answer(res)
            t4 = clock()
            acc[0] += t1 - t0
            acc[1] += t2 - t1
            acc[2] += t3 - t2
            acc[3] += t4 - t3
        if rep:
            runs.append([a / 1e3 / requests for a in acc])
    rows_out = [{"stage": label, "us": median([r[k] for r in runs])} for k, label in enumerate(labels)]
    os.environ["AIOPS_BENCH_MODEL"] = str(ex.art / "model.onnx")
    app = _raw_asgi.create_app()
    reqs = [Request(b, "/") for b in bodies]
    loop = _new_loop()

    async def run(n: int) -> None:
        for i in range(n):
            r = reqs[i % len(reqs)]
            await app(r.scope, r.receive, r.send)

    loop.run_until_complete(run(500))
    whole = []
    for _ in range(repeats):
        t0 = time.thread_time_ns()
        loop.run_until_complete(run(requests))
        whole.append((time.thread_time_ns() - t0) / 1e3 / requests)
    loop.close()
    return {"stages": rows_out, "app_us": median(whole), "app_runs": whole}


def lone_row_ab(name: str, repeats: int, requests: int) -> dict[str, Any]:
    """The event loop's CPU per request with a lone row scored once and as two copies, on the
    same app, interleaved (once, twice, once, ...): what runtime/row_kernels.py saves a model
    whose graph lets it score a lone row once. Both give the same bits (tests/test_row_kernels.py)."""
    from serve import Example

    from aiops.runtime.serve import server as srv
    from aiops.runtime.serve.rows import FeatureRows

    ex = Example(name)
    trust(ex.art)
    logs = Path(tempfile.mkdtemp(prefix=f"ab-{name}-", dir=WORK))
    app = srv.App(srv.Service(ex.art, logs / "serving", env=bench_env(), job_threads=0, insecure_dev=True))
    s, p = app.s, app.s.predictor
    reqs = [Request(b) for b in ex.bodies["aiops"]]
    loop = _new_loop()
    res: dict[bool, list[float]] = {False: [], True: []}

    async def run(n: int) -> None:
        for i in range(n):
            r = reqs[i % len(reqs)]
            await app(r.scope, r.receive, r.send)

    app.startup()
    try:
        for _ in range(repeats):
            for twice in (False, True):
                p.lone_row_twice = twice
                app.batcher.rows = s.rows = FeatureRows(s.acceptor, p.steps, p.input_names, twice)
                loop.run_until_complete(run(300))
                t = time.thread_time_ns()
                loop.run_until_complete(run(requests))
                res[twice].append((time.thread_time_ns() - t) / 1e3 / requests)
                s.log.flush(60)
    finally:
        loop.close()
        app.shutdown()
        shutil.rmtree(logs, ignore_errors=True)
    return {"once_us": median(res[False]), "twice_us": median(res[True]), "once_runs": res[False],
            "twice_runs": res[True]}


NULL_APP = r'''
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            await send({"type": m["type"] + ".complete"})
            if m["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})
'''

RUN_NULL = r'''
import sys, uvicorn
sys.path.insert(0, sys.argv[1])
from _null_app import app
opts = dict(host="127.0.0.1", port=int(sys.argv[2]), loop="uvloop", access_log=False, log_level="warning",
            lifespan="on", server_header=False, proxy_headers=False)
if sys.argv[3] == "aiops":
    from types import SimpleNamespace
    from aiops.runtime.serve.limits import Limits, uvicorn_options
    opts = uvicorn_options(SimpleNamespace(host="127.0.0.1", port=int(sys.argv[2])), Limits.from_serving({}))
    opts["log_level"] = "warning"
else:
    opts["http"] = "httptools"
uvicorn.run(app, **opts)
'''


def http_floor(body: bytes, seconds: float, repeats: int) -> dict[str, Any]:
    """Server CPU per request of an app that answers a constant, under wrk at concurrency 1."""
    import _load
    from serve import free_port

    if not _load.have_wrk():
        return {}
    tmp = Path(tempfile.mkdtemp(prefix="null-", dir=WORK))
    (tmp / "_null_app.py").write_text(NULL_APP)
    out = {}
    for proto in ("uvicorn httptools", "aiops"):
        runs, rps = [], []
        for _ in range(repeats):
            port = free_port()
            proc = subprocess.Popen([sys.executable, "-c", RUN_NULL, str(tmp), str(port), proto.split()[0]],
                                    env=bench_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                url = f"http://127.0.0.1:{port}/"
                for _ in range(200):
                    try:
                        _load.run(url, [body], 1, 1)
                        break
                    except RuntimeError:
                        time.sleep(0.1)
                c0 = proc_cpu_seconds(proc.pid)
                r = _load.run(url, [body], 1, seconds)
                runs.append((proc_cpu_seconds(proc.pid) - c0) * 1e6 / r["requests"])
                rps.append(r["rps"])
            finally:
                proc.terminate()
                proc.wait(10)
        out[proto] = {"us": median(runs), "runs": runs, "rps": median(rps)}
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("credit_risk", "flight_delays"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--requests", type=int, default=4000, help="requests per repeat through the whole app")
    ap.add_argument("--http", action="store_true", help="also measure uvicorn's share (wrk, 3 s per repeat)")
    ap.add_argument("--lone-row-ab", action="store_true",
                    help="only the A/B of a lone row scored once against two copies (flight_delays, a tree model)")
    a = ap.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    if a.lone_row_ab:
        ab = lone_row_ab(a.only or "flight_delays", a.repeats, a.requests)
        print(f"{a.only or 'flight_delays'}: the event loop's CPU per request, medians of {a.repeats} interleaved "
              f"repeats of {a.requests}: lone row once {ab['once_us']:.1f} µs, as two copies {ab['twice_us']:.1f} µs "
              f"(runs: {', '.join(f'{x:.0f}' for x in ab['once_runs'])} / "
              f"{', '.join(f'{x:.0f}' for x in ab['twice_runs'])})")
        print(f"written: {write_results('serve_lone_row_ab', ab)}")
        return 0
    names = [a.only] if a.only else ["credit_risk", "flight_delays"]
    load0 = os.getloadavg()[0]
    results: dict[str, Any] = {"machine": machine(), "repeats": a.repeats}
    for name in names:
        print(f"[costs] {name}: aiops", file=sys.stderr, flush=True)
        ai = aiops_costs(name, a.repeats, a.requests)
        print(f"[costs] {name}: raw", file=sys.stderr, flush=True)
        raw = raw_costs(name, a.repeats, a.requests)
        results[name] = {"aiops": ai, "raw": raw}
        rows = [["aiops", r["stage"], f"{r['us']:.1f}"] for r in ai["stages"]]
        rows.append(["aiops", "the rest: routing, key and log checks, deadlines, the batcher, the coroutines",
                     f"{ai['dispatch_us']:.1f}"])
        rows.append(["aiops", "= the whole request on the event loop (App, in process, untimed)", f"{ai['app_us']:.1f}"])
        rows.append(["aiops", "log forwarding thread (same process)", f"{ai['forwarding_thread_us']:.1f}"])
        rows.append(["aiops", "log writer process" + (" (encrypted at rest)" if ai["encrypted"] else ""),
                     f"{ai['writer_process_us']:.1f}"])
        for r in ai["writer_stages"]:
            rows.append(["  writer", r["stage"], f"{r['us']:.1f}"])
        total = ai["app_us"] + ai["forwarding_thread_us"] + ai["writer_process_us"]
        rows.append(["aiops", "= server CPU per request without HTTP", f"{total:.1f}"])
        for r in raw["stages"]:
            rows.append(["raw", r["stage"], f"{r['us']:.1f}"])
        rows.append(["raw", "= the whole request (app, in process)", f"{raw['app_us']:.1f}"])
        ai["server_us_without_http"] = total
        print(f"\n{name}: CPU µs per request of one record, medians of {a.repeats} (each stage timed inside the "
              f"request, less the {ai['timer_bias_us']:.2f} µs a clock read adds; 'the rest' is the timed pass "
              f"less its stages and the {ai['timer_wrap_us']:.2f} µs per timed call; the whole is an untimed pass)\n")
        print(fmt_table(["endpoint", "stage", "µs"], rows))
    if a.http:
        import serve

        body = serve.Example(names[0]).bodies["aiops"][0]
        results["http"] = http_floor(body, 3.0, a.repeats)
        print("\nuvicorn + uvloop + the kernel, per request, app answering a constant (wrk c1, 3 s, medians):")
        print(fmt_table(["protocol", "server CPU µs/req", "req/s"],
                        [[k, f"{v['us']:.1f}", f"{v['rps']:,.0f}"] for k, v in results["http"].items()]))
    results["load_average"] = [load0, os.getloadavg()[0]]
    print(f"\nload average {load0:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    print(f"written: {write_results('serve_costs', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
