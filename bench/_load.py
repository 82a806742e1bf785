"""The load generator: wrk (Debian package `wrk`, C, one thread), closed loop: each of C
connections sends its next request when the previous answer arrives, so C is the
concurrency. Request bodies are real records, one per request, cycled; a Lua script
formats them once and reports the result as one JSON line. Only 127.0.0.1 is targeted, and
every run is bounded in time (wrk -d) and by its own timeout.

The client's CPU time is measured (getrusage of the reaped child) so that the report can
show whether the client, not the server, was the bottleneck.
"""
from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

LUA = r"""
local bodies = {}
local reqs = {}
local i = 0
init = function(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    reqs[#reqs + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, line)
  end
  f:close()
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run(url: str, bodies: list[bytes], connections: int, seconds: float, timeout_s: float = 10.0) -> dict:
    """One wrk run against `url` (127.0.0.1 only). Returns req/s, latency percentiles (ms),
    error counts and the client's CPU cores used."""
    assert url.startswith("http://127.0.0.1:"), url
    with tempfile.TemporaryDirectory(prefix="aiops-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(LUA)
        data = Path(tmp) / "bodies.jsonl"
        data.write_bytes(b"\n".join(b.replace(b"\n", b" ") for b in bodies) + b"\n")
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", f"{timeout_s:g}s",
               "-s", str(script), url, "--", str(data)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 30)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("WRKJSON ")]
    if p.returncode != 0 or not line:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stderr or p.stdout}")
    r = json.loads(line[0][len("WRKJSON "):])
    secs = r["duration_us"] / 1e6
    errors = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    return {"connections": connections, "requests": r["requests"], "seconds": secs,
            "rps": r["requests"] / secs if secs else 0.0, "p50_ms": r["p50_us"] / 1000, "p90_ms": r["p90_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "max_ms": r["max_us"] / 1000, "mean_ms": r["mean_us"] / 1000,
            "errors": errors, "non_2xx": r["status"], "timeouts": r["timeout"],
            "client_cores": ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / wall}
