"""HTTP serving benchmark: `aiops serve` against a raw ASGI endpoint (the ceiling) and
`mlflow models serve` of the same scikit-learn pipeline, measured in one run.

    python bench/serve.py            # full run (about 15-20 minutes; MLflow's venv on first use)
    python bench/serve.py --quick    # one repeat, 2 s per point

For each bundled example, 1 and 2 workers, and concurrency 1, 8 and 64 (wrk, closed loop,
one record per POST, real records cycled), it measures req/s and p50/p99 latency of:

- aiops: `aiops serve ARTEFACTS --workers N` as shipped: contract validation, features,
  onnxruntime, Prometheus metrics and the MAC-chained prediction log (encrypted at rest for
  credit_risk) all on;
- starlette: bench/_starlette_app.py, the same work as aiops (same Service, contract
  validation, batcher, answer, log and metrics) behind Starlette instead of the hand-written
  ASGI app: the framework baseline;
- raw: bench/_raw_asgi.py under the same uvicorn options, which only parses the JSON, runs
  onnxruntime on the same model.onnx with already-featurized inputs and answers;
- mlflow: `mlflow models serve --env-manager local -w N` of the same fitted scikit-learn
  pipeline (installed by this script in .aiops/bench/mlflow-venv), given featurized rows.

Every server is checked to answer the same probabilities before it is loaded. Each point is
repeated (servers restarted per repeat); the tables show medians and the spread. The
client's and the servers' CPU use are reported: with 2 cores, client and server share
them, so throughput is also given per core the server used (req/s / server cores) and as
server CPU per request (µs; the server's process tree: workers and log writers).
Goals (issue 14), printed as MET/MISSED: aiops >= 1.0x raw req/s at concurrency 1, 8 and 64
with 1 and 2 workers; aiops p99 <= raw's; aiops CPU per request <= raw's; >= 30x MLflow.
The framework lines say whether Starlette comes within 10% of the hand-written app, and the
verdict (prefer the framework if it does at every point).
Results go to bench/results/serve.json (--quick: .aiops/bench/serve-quick.json, so that a
direction check never replaces the recorded run).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import _load  # noqa: E402
import _mlflow  # noqa: E402
from _common import (ROOT, WORK, artefacts, bench_env, fitted_pipeline, fmt_table, machine, median,  # noqa: E402
                     read_table, tree_cpu_seconds, write_results)

SERVERS = ("aiops", "starlette", "raw", "mlflow")
CONCURRENCY = (1, 8, 64)
WORKERS = (1, 2)
N_BODIES = 200


def log(msg: str) -> None:
    print(f"[serve] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process in its own process group, on 127.0.0.1 and a free port."""

    def __init__(self, kind: str, cmd: list[str], env: dict[str, str], port: int, ready: str, predict: str,
                 logfile: Path, cwd: Path = ROOT):
        self.kind, self.cmd, self.env, self.port, self.ready, self.predict = kind, cmd, env, port, ready, predict
        self.logfile, self.cwd = logfile, cwd
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> "Server":
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        out = self.logfile.open("wb")
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=out, stderr=out,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}; see {self.logfile}")
            try:
                if self.request("GET", self.ready, None)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{self.kind} not ready in {timeout:.0f} s; see {self.logfile}")

    def request(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.predict}"

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def stop(self) -> None:
        """SIGINT, then SIGTERM, then SIGKILL to this server's own process group."""
        if not self.proc:
            return
        pgid = self.proc.pid  # start_new_session: the group is the server's own
        for sig, wait in ((signal.SIGINT, 15), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                time.sleep(0.2)
                os.killpg(pgid, 0)  # children (workers) left behind?
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        self.proc = None


# ---------------------------------------------------------------------- per example
class Example:
    def __init__(self, name: str):
        from aiops.runtime.features import derive
        from aiops.runtime.predictor import Predictor

        self.name = name
        self.art = artefacts(name)
        target = json.loads((self.art / "features.json").read_text())["target"]
        table = read_table(name).drop_columns([target]).slice(0, N_BODIES)
        self.records = json.loads(json.dumps(table.to_pylist()))
        self.pred = Predictor(self.art)
        cols, errors = self.pred.contract.validate_records(self.records)
        assert not errors.items
        feed = derive(self.pred.steps, cols)
        self.expected = self.pred.run_feed(feed)["probabilities"]
        names = [i.name for i in self.pred.session.get_inputs()]
        rows = [{k: _py(feed[k][i, 0]) for k in names} for i in range(N_BODIES)]
        self.bodies = {
            "aiops": [json.dumps({"records": [r]}).encode() for r in self.records],
            "raw": [json.dumps({"inputs": {k: _py_nan(v) for k, v in r.items()}}, allow_nan=False).encode()
                    for r in rows],
            "mlflow": [_mlflow.request_body([{k: _py_nan(v) for k, v in r.items()}]) for r in rows],
        }
        self.bodies["starlette"] = self.bodies["aiops"]

    def server(self, kind: str, workers: int, tag: str) -> Server:
        port = free_port()
        logs = WORK / "serve-logs"
        env = bench_env()
        if kind == "aiops":
            log_dir = logs / f"{self.name}-{tag}"
            shutil.rmtree(log_dir, ignore_errors=True)
            cmd = [sys.executable, "-m", "aiops.compiler.cli", "serve", str(self.art), "--host", "127.0.0.1", "--port",
                   str(port), "--workers", str(workers), "--log-dir", str(log_dir),
                   "--insecure-dev"]  # open, as raw and mlflow are (the examples define roles: keys are required)
            return Server(kind, cmd, env, port, "/readyz", "/v1/predict", logs / f"{self.name}-{tag}.log")
        if kind == "starlette":
            log_dir = logs / f"{self.name}-{tag}"
            shutil.rmtree(log_dir, ignore_errors=True)
            # open, as aiops runs here (--insecure-dev): the same variable `aiops serve` gives its workers
            env.update(AIOPS_SERVE_ARTEFACTS=str(self.art), AIOPS_SERVE_LOG_DIR=str(log_dir), AIOPS_SERVE_INSECURE_DEV="1")
            env["PYTHONPATH"] = f"{BENCH}{os.pathsep}{env['PYTHONPATH']}"
            if workers > 1:
                env["PROMETHEUS_MULTIPROC_DIR"] = str(_prom_dir(logs / f"{self.name}-{tag}-prom"))
            cmd = [sys.executable, "-m", "uvicorn", "--factory", "_starlette_app:create_app", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", str(workers), "--http", "httptools", "--loop", "uvloop",
                   "--no-access-log", "--log-level", "warning", "--no-server-header", "--no-proxy-headers"]
            return Server(kind, cmd, env, port, "/readyz", "/v1/predict", logs / f"{self.name}-{tag}.log", cwd=BENCH)
        if kind == "raw":
            env["AIOPS_BENCH_MODEL"] = str(self.art / "model.onnx")
            env["PYTHONPATH"] = f"{BENCH}{os.pathsep}{env['PYTHONPATH']}"
            cmd = [sys.executable, "-m", "uvicorn", "--factory", "_raw_asgi:create_app", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", str(workers), "--http", "httptools", "--loop", "uvloop",
                   "--no-access-log", "--log-level", "warning", "--no-server-header", "--no-proxy-headers"]
            return Server(kind, cmd, env, port, "/", "/", logs / f"{self.name}-{tag}.log", cwd=BENCH)
        pipe = fitted_pipeline(self.art)
        frame = _frame(self)
        model = _mlflow.save_model(pipe, frame, self.name)
        env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        env["PATH"] = f"{_mlflow.VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # its own uvicorn
        return Server(kind, _mlflow.serve_command(model, port, workers), env, port, "/ping", "/invocations",
                      logs / f"{self.name}-{tag}.log")

    def check(self, s: Server) -> float:
        """Max |probability - Predictor's| over a few records; raises on a wrong answer."""
        worst = 0.0
        for i in range(0, N_BODIES, 40):
            status, data = s.request("POST", s.predict, self.bodies[s.kind][i])
            if status != 200:
                raise RuntimeError(f"{s.kind} answered {status}: {data[:300]!r}")
            obj = json.loads(data)
            if s.kind in ("aiops", "starlette"):
                got = list(obj["predictions"][0]["probabilities"].values())
            elif s.kind == "raw":
                got = obj["probabilities"][0]
            else:
                got = obj["predictions"][0]
            worst = max(worst, float(np.max(np.abs(np.array(got) - self.expected[i]))))
        if worst > 1e-4:
            raise RuntimeError(f"{s.kind} answers differ from the compiled model by {worst}")
        return worst


def _frame(ex: Example):
    import pandas as pd

    from aiops.runtime.features import derive

    cols, _ = ex.pred.contract.validate_records(ex.records)
    feed = derive(ex.pred.steps, cols)
    return pd.DataFrame({k: v[:, 0] for k, v in feed.items()})


def _prom_dir(d: Path) -> Path:
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def _py(v):
    return v if isinstance(v, str) else float(v)


def _py_nan(v):
    return None if isinstance(v, float) and v != v else v


# ---------------------------------------------------------------------- the run
def measure(ex: Example, servers: list[str], seconds: float, repeats: int) -> list[dict]:
    points = []
    for rep in range(repeats):
        for workers in WORKERS:
            for kind in servers:
                tag = f"{kind}-w{workers}-r{rep}"
                log(f"{ex.name}: {kind}, {workers} worker(s), repeat {rep + 1}/{repeats}: starting")
                s = ex.server(kind, workers, tag)
                s.start()
                try:
                    diff = ex.check(s)
                    _load.run(s.url, ex.bodies[kind], 8, 1)  # warm up every worker
                    for c in CONCURRENCY:
                        cpu0, t0 = s.cpu_seconds(), time.perf_counter()
                        r = _load.run(s.url, ex.bodies[kind], c, seconds)
                        r["server_cores"] = (s.cpu_seconds() - cpu0) / (time.perf_counter() - t0)
                        r.update(example=ex.name, server=kind, workers=workers, repeat=rep, max_abs_diff=diff,
                                 load_average=round(os.getloadavg()[0], 2))
                        points.append(r)
                        log(f"  c={c:>2}: {r['rps']:8.1f} req/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:8.2f} ms"
                            f"  errors {r['errors']}  client {r['client_cores']:.2f} cores, server "
                            f"{r['server_cores']:.2f} cores")
                finally:
                    s.stop()
                    if kind in ("aiops", "starlette"):
                        shutil.rmtree(WORK / "serve-logs" / f"{ex.name}-{tag}", ignore_errors=True)
                        shutil.rmtree(WORK / "serve-logs" / f"{ex.name}-{tag}-prom", ignore_errors=True)
    return points


def summarize(points: list[dict]) -> list[dict]:
    keys = sorted({(p["example"], p["workers"], p["server"], p["connections"]) for p in points},
                  key=lambda k: (k[0], k[1], SERVERS.index(k[2]), k[3]))
    out = []
    for ex, w, srv, c in keys:
        ps = [p for p in points if (p["example"], p["workers"], p["server"], p["connections"]) == (ex, w, srv, c)]
        rps = [p["rps"] for p in ps]
        out.append({"example": ex, "workers": w, "server": srv, "connections": c, "rps": median(rps),
                    "p50_ms": median([p["p50_ms"] for p in ps]), "p99_ms": median([p["p99_ms"] for p in ps]),
                    "rps_spread": (max(rps) - min(rps)) / median(rps) if median(rps) else float("nan"),
                    "errors": sum(p["errors"] for p in ps), "client_cores": median([p["client_cores"] for p in ps]),
                    "server_cores": median([p["server_cores"] for p in ps]),
                    # per repeat, then the median: throughput per server core, server CPU per request
                    "rps_per_core": median([p["rps"] / p["server_cores"] for p in ps if p["server_cores"]]),
                    "cpu_us_per_req": median([p["server_cores"] / p["rps"] * 1e6 for p in ps if p["rps"]]),
                    "runs": len(ps)})
    return out


def report(summary: list[dict], meta: dict) -> tuple[str, list[dict]]:
    lines = [f"machine: {meta['machine']['cpus']} CPUs; load average {meta['machine']['load_average_1m_at_start']} "
             f"at start, {meta['machine'].get('load_average_1m_at_end')} at end; {meta['seconds']:g} s per point, "
             f"medians of {meta['repeats']} repeat(s); wrk -t1, one record per request"]
    goals = []
    framework: list[tuple[str, float]] = []  # (point, starlette / aiops req/s)
    idx = {(s["example"], s["workers"], s["server"], s["connections"]): s for s in summary}
    for ex in sorted({s["example"] for s in summary}):
        rows = []
        for s in [s for s in summary if s["example"] == ex]:
            a = idx.get((ex, s["workers"], "aiops", s["connections"]))
            ratio = a["rps"] / s["rps"] if a and s["rps"] else float("nan")
            rows.append([f"{s['server']} w{s['workers']}", s["connections"], s["rps"], s["rps_per_core"],
                         s["cpu_us_per_req"], s["p50_ms"], s["p99_ms"], f"{s['rps_spread']:.0%}", s["errors"],
                         s["client_cores"], s["server_cores"], "" if s["server"] == "aiops" else f"{ratio:.2f}x"])
        lines.append(f"\n{ex}")
        lines.append(fmt_table(["server", "conc", "req/s", "req/s per server core", "server CPU us/req", "p50 ms",
                                "p99 ms", "spread", "errors", "client cores", "server cores", "aiops / this"], rows))
        for w in WORKERS:
            for c in CONCURRENCY:
                a = idx.get((ex, w, "aiops", c))
                if not a:
                    continue
                where = f"{ex} w{w} c{c}"
                r = idx.get((ex, w, "raw", c))
                if r and r["rps"]:
                    goals.append(_goal(f"{where}: aiops / raw req/s", a["rps"] / r["rps"], ">=", 1.0, "x"))
                    goals.append(_goal(f"{where}: aiops p99 / raw p99", a["p99_ms"] / r["p99_ms"], "<=", 1.0, "x",
                                       f"{a['p99_ms']:.2f} ms against {r['p99_ms']:.2f} ms"))
                    goals.append(_goal(f"{where}: aiops / raw server CPU per request",
                                       a["cpu_us_per_req"] / r["cpu_us_per_req"], "<=", 1.0, "x",
                                       f"{a['cpu_us_per_req']:.0f} us against {r['cpu_us_per_req']:.0f} us"))
                m = idx.get((ex, w, "mlflow", c))
                if m and m["rps"]:
                    goals.append(_goal(f"{where}: aiops / mlflow req/s", a["rps"] / m["rps"], ">=", 30.0, "x"))
                st = idx.get((ex, w, "starlette", c))
                if st and st["rps"]:  # the framework is preferred if it comes within 10%
                    framework.append((where, st["rps"] / a["rps"]))
    lines.append("\ngoals (issue 14):")
    for g in goals:
        lines.append(f"  {'MET   ' if g['met'] else 'MISSED'} {g['what']}: {g['value']:.2f}{g['unit']} "
                     f"({g['op']} {g['goal']:g}{g['unit']}){'; ' + g['note'] if g.get('note') else ''}")
    met = sum(g["met"] for g in goals)
    lines.append(f"  {met} of {len(goals)} met")
    if framework:
        lines.append("\nframework baseline (issue 14: if Starlette comes within 10% of aiops, prefer the framework):")
        for where, r in framework:
            lines.append(f"  {where}: starlette / aiops req/s {r:.2f}x: "
                         + ("within 10%" if r >= 0.9 else f"{1 - r:.0%} slower"))
        close = all(r >= 0.9 for _, r in framework)
        lines.append("  verdict: " + ("Starlette comes within 10% at every point: prefer the framework" if close else
                                      "Starlette is more than 10% slower at some point: keep the hand-written app"))
        goals.append({"what": "starlette within 10% of aiops req/s at every point", "value": min(r for _, r in framework),
                      "op": ">=", "goal": 0.9, "unit": "x", "met": close, "note": "framework baseline, not a goal"})
    return "\n".join(lines), goals


def _goal(what: str, value: float, op: str, goal: float, unit: str, note: str = "") -> dict:
    met = value >= goal if op == ">=" else value <= goal
    return {"what": what, "value": value, "op": op, "goal": goal, "unit": unit, "met": bool(met), "note": note}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one repeat, 2 s per point")
    ap.add_argument("--seconds", type=float, help="seconds per point (default 5; quick 2)")
    ap.add_argument("--repeats", type=int, help="repeats (default 3; quick 1)")
    ap.add_argument("--only", choices=("credit_risk", "flight_delays"), help="one example only")
    ap.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of " + ",".join(SERVERS))
    args = ap.parse_args(argv)
    if not _load.have_wrk():
        sys.exit("wrk is not installed: apt-get install -y wrk")
    servers = [s for s in args.servers.split(",") if s]
    unknown = sorted(set(servers) - set(SERVERS))
    if unknown:
        sys.exit(f"--servers: unknown {unknown}; choose from {', '.join(SERVERS)}")
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    repeats = args.repeats or (1 if args.quick else 3)
    meta = {"machine": machine(), "quick": args.quick, "seconds": seconds, "repeats": repeats,
            "client": "wrk -t1 (closed loop), one record per request, 200 real records cycled"}
    if "mlflow" in servers:
        _mlflow.ensure_venv(log)
    examples = [Example(n) for n in ("credit_risk", "flight_delays") if not args.only or n == args.only]
    points: list[dict] = []
    for ex in examples:
        points += measure(ex, servers, seconds, repeats)
        # kept if a later example fails
        write_results("serve", {**meta, "partial": True, "points": points}, quick=args.quick)
    meta["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    summary = summarize(points)
    text, floors = report(summary, meta)
    path = write_results("serve", {**meta, "summary": summary, "goals": floors, "points": points}, quick=args.quick)
    print(text)
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
