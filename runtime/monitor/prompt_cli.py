"""`aiops monitor ARTEFACT_DIR --from-log [PATH] [--labels FEEDBACK]` for a prompt spec: runs
runtime/monitor/prompt_job.py and prints its summary. Exit 0 within bounds, 1 alert, 2 error.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def is_prompt(artefact_dir: str | Path) -> bool:
    """serving.json says kind "prompt" (read before verifying, to pick the job; the job verifies)."""
    try:
        return json.loads((Path(artefact_dir) / "serving.json").read_text()).get("kind") == "prompt"
    except (OSError, ValueError, AttributeError):
        return False


def monitor_prompts(args: argparse.Namespace) -> int:
    from aiops.runtime.monitor.job import MonitorError, Source
    from aiops.runtime.monitor.prompt_job import run

    if args.current is not None:
        return _fail(f"'{args.artefact_dir}' is a prompt spec: it is monitored from the prompt calls the server "
                     f"logged. Pass --from-log [PATH] instead of --current {args.current}.")
    if getattr(args, "engine", "local") == "dask":
        return _fail("--engine dask scores tabular data; a prompt spec's log is read by one process: "
                     "leave --engine out")
    if args.as_of:
        return _fail("--as-of applies to label_delay_days of tabular models; feedback labels of prompt calls "
                     "count as soon as they are in the --labels file: leave --as-of out")
    src = Source(log=Path(args.from_log) if args.from_log else None,
                 labels=Path(args.labels) if args.labels else None, webhook=args.webhook)
    try:
        outcome = run(args.artefact_dir, src, args.report, html=not args.no_html)
    except (MonitorError, OSError) as exc:
        return _fail(str(exc))
    print(summary_text(outcome.report, outcome.files, quiet=args.quiet))
    hook = outcome.delivery
    if hook and hook.get("error"):
        n = len(hook["attempts"])
        print(f"warning: the webhook POST to {hook['url']} failed after {n} attempt{'s' if n != 1 else ''}: "
              f"{hook['error']}; the alerts are in alerts.json", file=sys.stderr)
    return outcome.exit_code


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def summary_text(report: dict, files: list[Path], quiet: bool = False) -> str:
    m, job, src, s = report["model"], report["job"], report["source"], report["summary"]
    w = job["window"]
    lines = []
    if not quiet:
        refs = "; ".join(f"{p}: {r['source']} ({r['rows']} calls)" for p, r in sorted(job["reference"].items()))
        lines.append(f"monitor {m['name']} {m['version']} (prompts): {s['windows']} window"
                     f"{'s' if s['windows'] != 1 else ''} ({w['by']}: {w['size']}), {src['rows']} calls from "
                     f"{src['path']}; reference: {refs}")
        if src["rows_without_window"]:
            lines.append(f"  {src['rows_without_window']} calls have no usable ts and fit no window")
        lab = src["labels"]
        if lab["source"]:
            lines.append(f"  feedback: {lab['rows_with_label']} of {src['rows']} calls labelled "
                         f"({lab['labels_in_file']} labels in {lab['path']})")
        by_window: dict[str, list[dict]] = {}
        for a in report["alerts"]:
            by_window.setdefault(a["window"], []).append(a)
        for r in report["windows"]:
            figs = []
            for p, x in r["prompts"].items():
                auc = [f"{side} AUC {d['auc']:.2f}" for side, d in x["text_drift"].items() if d.get("auc") is not None]
                fb = x["feedback"]["value"]
                figs.append(f"{p}: " + ", ".join(auc + [f"refusals {x['refusal']['value']:.0%}",
                                                         f"errors {x['errors']['value']:.0%}"]
                                                 + ([f"JSON valid {x['json_validity']['value']:.0%}"]
                                                    if x["json_validity"] else [])
                                                 + ([f"feedback pass {fb:.0%} of {x['feedback']['labelled']}"]
                                                    if fb is not None else [])))
            al = by_window.get(r["id"], [])
            what = "ALERT " + "; ".join(sorted({f"{a['kind']}: {a['subject']}" for a in al})) if al else \
                r.get("status", "ok")
            lines.append(f"  {r['id']:<12} {r['rows']:>7} calls  {what}  [{'; '.join(figs)}]")
    else:
        lines += [f"{a['window']}: {a['kind']}: {a['message']}" for a in report["alerts"]]
    by = ", ".join(f"{k} {v}" for k, v in s["alerts_by_kind"].items())
    tail = f" ({by}); actions: {', '.join(s['actions'])}" if s["alerts"] else ": all within bounds"
    few = s.get("insufficient_windows") or []
    if few:
        tail += (f"; {len(few)} of {s['windows']} window{'s' if s['windows'] != 1 else ''} had insufficient data "
                 "(fewer calls than monitoring.min_rows) and were not tested")
    lines.append(f"{s['alerts']} alert{'s' if s['alerts'] != 1 else ''}{tail}")
    if files and not quiet:
        lines.append("report: " + ", ".join(str(f) for f in files))
    return "\n".join(lines)
