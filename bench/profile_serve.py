"""Where one request's time goes in `aiops serve`: py-spy samples the server process (and,
with --native, the C/C++ frames of onnxruntime, uvloop and httptools) while wrk holds a
closed-loop load on it, then the top functions are printed by own time and by total time.

    python bench/profile_serve.py --only credit_risk              # 1 worker, concurrency 1, 10 s
    python bench/profile_serve.py --only flight_delays --concurrency 8 --native

Needs py-spy (`pip install 'aiops[bench]'`) and permission to read the server's memory
(ptrace: root, or kernel.yama.ptrace_scope=0). Also samples the prediction log's writer
process, which runs beside each worker. The folded stacks go to .aiops/bench/profile-*.txt
(load them into https://www.speedscope.app or flamegraph.pl); nothing is written to
bench/results/.
"""
from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import _load  # noqa: E402
from _common import WORK, _children, proc_cpu_seconds, thread_cpu  # noqa: E402
from serve import Example  # noqa: E402


def folded(path: Path) -> list[tuple[list[str], int]]:
    out = []
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            out.append((stack.split(";"), int(n)))
    return out


def _name(frame: str) -> str:
    # py-spy frames read "function (path/to/file.py:123)": keep the function and the file's last part
    fn, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit("/", 1)[-1].split(":")[0] if where else ""
    return f"{fn} ({file})" if file else fn


def top(stacks: list[tuple[list[str], int]], n: int) -> str:
    total = sum(c for _, c in stacks) or 1
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    for frames, c in stacks:
        names = [_name(f) for f in frames if not f.startswith("process ") and not f.startswith("thread ")]
        if names:
            own[names[-1]] += c
        for name in set(names):
            incl[name] += c
    lines = [f"{total} samples", "own time:"]
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in own.most_common(n)]
    lines.append("total time (the function and what it calls; the entry points above the event loop left out):")
    roots = max(incl.values(), default=0) * 0.9
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in
              [(k, v) for k, v in incl.most_common() if v < roots][:n]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=("credit_risk", "flight_delays"), default="credit_risk")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    ap.add_argument("--native", action="store_true", help="also sample C/C++ frames")
    ap.add_argument("--server", choices=("aiops", "raw", "starlette"), default="aiops")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    if not shutil.which("py-spy"):
        sys.exit("py-spy is not installed: pip install 'aiops[bench]'")
    if not _load.have_wrk():
        sys.exit("wrk is not installed: apt-get install -y wrk")
    ex = Example(args.only)
    s = ex.server(args.server, 1, f"profile-{args.server}").start()
    try:
        ex.check(s)
        _load.run(s.url, ex.bodies[args.server], 8, 1)
        pids = [s.proc.pid] + _children(s.proc.pid)
        procs = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80] for pid in pids}
        # first without the profiler: CPU per request of each process
        cpu0 = {pid: proc_cpu_seconds(pid) for pid in pids}
        th0 = {pid: thread_cpu(pid) for pid in pids}
        plain = _load.run(s.url, ex.bodies[args.server], args.concurrency, args.seconds)
        per = 1e6 / max(plain["requests"], 1)
        cpu = {pid: (proc_cpu_seconds(pid) - cpu0[pid]) * per for pid in pids}
        threads = {pid: {name: (t - th0[pid].get(name, 0.0)) * per for name, t in thread_cpu(pid).items()}
                   for pid in pids}
        result: dict = {}
        load = threading.Thread(target=lambda: result.update(_load.run(s.url, ex.bodies[args.server],
                                                                       args.concurrency, args.seconds + 2)))
        load.start()
        time.sleep(1.0)
        outs = {}
        spies = []
        for pid in pids:
            out = WORK / f"profile-{args.server}-{args.only}-c{args.concurrency}-{pid}.txt"
            cmd = ["py-spy", "record", "--pid", str(pid), "--rate", str(args.rate), "--duration",
                   str(int(args.seconds)), "--format", "raw", "--output", str(out), "--threads", "--nonblocking"]
            if args.native:
                cmd.append("--native")
            spies.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            outs[pid] = out
        for p in spies:
            p.wait(args.seconds + 60)
        load.join()
    finally:
        s.stop()
    print(f"{args.server} {args.only}, 1 worker, concurrency {args.concurrency}: {plain['rps']:.0f} req/s, p99 "
          f"{plain['p99_ms']:.2f} ms without the profiler ({sum(cpu.values()):.0f} us CPU per request: "
          + ", ".join(f"pid {pid} {c:.0f} us" for pid, c in cpu.items())
          + f", wrk {plain['client_cores'] / max(plain['rps'], 1) * 1e6:.0f} us); {result.get('rps', 0):.0f} req/s "
          f"under the profiler (py-spy {args.rate}/s{', native' if args.native else ''}); load average "
          f"{os.getloadavg()[0]:.2f}")
    for pid, out in outs.items():
        if out.is_file() and out.stat().st_size:
            print(f"\n== pid {pid}: {procs[pid]} ({cpu[pid]:.0f} us CPU per request; by thread: "
                  + ", ".join(f"{name} {c:.1f} us" for name, c in sorted(threads[pid].items(), key=lambda x: -x[1])
                              if c >= 0.05) + f")\n   {out}")
            print(top(folded(out), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
