"""`aiops monitor ARTEFACT_DIR (--current FILE | --from-log [PATH]) [--labels FILE] [--report DIR]`.

Exit codes: 0 all within bounds, 1 an alert fired, 2 error (bad artefacts or input).
Nothing heavy is imported until the command runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub) -> None:
    m = sub.add_parser("monitor", help="run the monitoring job: data quality, drift, performance, fairness, alerts",
                       description="Run the generated monitoring job of ARTEFACT_DIR over current data, in windows, "
                                   "against the reference profile. Exit 0 within bounds, 1 alert, 2 error. "
                                   "For a prompt spec (serving.json kind 'prompt'): the prompt calls of the log "
                                   "(--from-log) against the evaluation set, with --labels holding prediction_id "
                                   "and passed (docs/genai.md#monitoring-prompts).")
    m.add_argument("artefact_dir", help="the compiled artefacts, e.g. generated/flight_delays")
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--current", metavar="FILE", help="the data to monitor: parquet, CSV or JSON lines")
    src.add_argument("--from-log", nargs="?", const="", metavar="PATH",
                     help="monitor the server's prediction log (default .aiops/serving/<name>/predictions.jsonl)")
    m.add_argument("--labels", metavar="FILE",
                   help="labels that arrived later: the label key (monitoring.label_key, data.key) or prediction_id, "
                        "and the target column (or 'label')")
    m.add_argument("--report", metavar="DIR", help="where to write report.json, report.html, alerts.json "
                                                   "(default .aiops/monitoring/<name>)")
    m.add_argument("--as-of", metavar="YYYY-MM-DD",
                   help="the day the run stands on, for label_delay_days (default: the day after the last day in "
                        "the data)")
    m.add_argument("--webhook", metavar="URL", help="POST alerts here instead of monitoring.json's webhook")
    m.add_argument("--chunk-rows", type=int, default=100_000, metavar="N", help="rows read at a time (memory bound)")
    m.add_argument("--no-html", action="store_true", help="write report.json and alerts.json only")
    m.add_argument("--quiet", action="store_true", help="print only the alerts")
    from aiops.runtime.scale.cli import add_engine_options

    add_engine_options(m)
    m.set_defaults(func=_monitor)


def _monitor(args: argparse.Namespace) -> int:
    from aiops.runtime.monitor.job import MonitorError, Source

    art = Path(args.artefact_dir)
    from aiops.runtime.monitor.prompt_cli import is_prompt, monitor_prompts

    if is_prompt(art):  # a prompt spec: the prompt calls of the log (runtime/monitor/prompt_job.py)
        return monitor_prompts(args)
    log = None
    if args.from_log is not None:
        log = Path(args.from_log) if args.from_log else None
        if log is None:
            from aiops.runtime.monitor.job import Monitor

            try:
                log = Path(Monitor(art).job["prediction_log"])
            except MonitorError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
    if args.chunk_rows < 1:
        print(f"error: --chunk-rows must be a positive int. Got {args.chunk_rows} instead.", file=sys.stderr)
        return 2
    if args.engine == "dask" and args.current is not None:
        src = Source(current=args.current, labels=Path(args.labels) if args.labels else None, as_of=args.as_of,
                     webhook=args.webhook, chunk_rows=args.chunk_rows)
        return _finish_run(args, src)
    src = Source(current=Path(args.current) if args.current else None, log=log,
                 labels=Path(args.labels) if args.labels else None, as_of=args.as_of, webhook=args.webhook,
                 chunk_rows=args.chunk_rows)
    return _finish_run(args, src)


def _finish_run(args: argparse.Namespace, src) -> int:
    from aiops.runtime.monitor.job import MonitorError, run

    art = Path(args.artefact_dir)
    try:
        if args.engine == "dask":
            from aiops.runtime.scale.engine import monitor_dask

            outcome = monitor_dask(art, src, args.report, html=not args.no_html, scheduler=args.scheduler,
                                   partition_rows=args.partition_rows)
        else:
            outcome = run(art, src, args.report, html=not args.no_html)
    except MonitorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(outcome.report, outcome.files, quiet=args.quiet))
    hook = outcome.delivery
    if hook and hook.get("error"):
        n = len(hook["attempts"])
        print(f"warning: the webhook POST to {hook['url']} failed after {n} attempt{'s' if n != 1 else ''}: "
              f"{hook['error']}; the alerts are in alerts.json", file=sys.stderr)
    return outcome.exit_code


def summary_text(report: dict, files: list[Path], quiet: bool = False) -> str:
    m, job, src, s = report["model"], report["job"], report["source"], report["summary"]
    w = job["window"]
    lines = []
    if not quiet:
        lines.append(f"monitor {m['name']} {m['version']}: {s['windows']} window{'s' if s['windows'] != 1 else ''} "
                     f"({w['by']}: {w['size']}{' on ' + w['column'] if w['column'] else ''}), "
                     f"{src['rows']} rows from {src['path']}"
                     + (f"; labels as of {job['as_of']}" if job["as_of"] else ""))
        if "rows_accepted" in src:
            from aiops.runtime.datafile import counts_line

            lines.append("  " + counts_line(src["rows"], src["rows_accepted"], src["rows_breaking_contract"],
                                            src.get("blank_lines_skipped", 0)))
        by_window: dict[str, list[dict]] = {}
        for a in report["alerts"]:
            by_window.setdefault(a["window"], []).append(a)
        for r in report["windows"]:
            al = by_window.get(r["id"], [])
            perf = ", ".join(f"{k} {v['value']:.3f}" for k, v in r["performance"]["metrics"].items()
                             if v["value"] is not None)
            what = "ALERT " + "; ".join(sorted({_short(a) for a in al})) if al else \
                r.get("status", "ok")  # "insufficient data" below monitoring.min_rows
            lines.append(f"  {r['id']:<12} {r['rows']:>8} rows  {what}" + (f"  [{perf}]" if perf else ""))
    for a in report["alerts"]:
        if not quiet:
            continue
        lines.append(f"{a['window']}: {a['kind']}: {a['message']}")
    by = ", ".join(f"{k} {v}" for k, v in s["alerts_by_kind"].items())
    tail = f" ({by}); actions: {', '.join(s['actions'])}" if s["alerts"] else ": all within bounds"
    few = s.get("insufficient_windows") or []
    if few:
        tail += (f"; {len(few)} of {s['windows']} window{'s' if s['windows'] != 1 else ''} had insufficient data "
                 "(fewer rows than monitoring.min_rows) and were not tested")
    lines.append(f"{s['alerts']} alert{'s' if s['alerts'] != 1 else ''}{tail}")
    if not quiet:
        from aiops.runtime.monitor.kpi import summary_lines

        lines += summary_lines(report.get("kpis") or [])
    if files and not quiet:
        lines.append("report: " + ", ".join(str(f) for f in files))
    return "\n".join(lines)


def _short(a: dict) -> str:
    if a["kind"] in ("drift", "prediction_drift"):
        return f"{a['kind']}: {a['subject']} ({a['test']})"
    return f"{a['kind']}: {a['subject']}"
