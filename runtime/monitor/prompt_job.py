"""`aiops monitor` of a prompt spec (serving.json kind "prompt"): the prompt calls of the audit
log, window by window, against the reference recorded at compile.

    verify artefacts -> monitoring/monitoring.json (kind prompt) + monitoring/reference.jsonl
    -> read the log's prompt calls (runtime/monitor/promptlog.py), join feedback labels by
       prediction_id, put each call in its window (runtime/monitor/window.py's keys and spans)
    -> per window and prompt (runtime/monitor/promptstats.py): lengths and their drift, text
       drift (domain classifier), guardrail hit rates, refusal, JSON validity, error rates,
       the feedback pass rate -> alerts -> report.json, alerts.json, report.html, the webhook
       (runtime/monitor/delivery.py), as for tabular models

The reference is the evaluation set's masked calls when it has at least MIN_REFERENCE_ROWS of
a prompt, else the prompt's first window with enough calls (reported, not tested). The report
depends only on the inputs.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from aiops.runtime.artefacts import ArtefactError, verify
from aiops.runtime.evaluation import INSUFFICIENT
from aiops.runtime.monitor.alerts import payload, summary
from aiops.runtime.monitor.delivery import deliver
from aiops.runtime.monitor.job import REPORT_SCHEMA, MonitorError, Outcome, Source, load_job
from aiops.runtime.monitor.promptlog import load_feedback, read_prompt_log
from aiops.runtime.monitor.promptstats import Calls
from aiops.runtime.monitor.reader import LogStats, MonitorInputError, _day
from aiops.runtime.monitor.window import window_keys, window_span
from aiops.runtime.stable import clean as _clean
from aiops.runtime.stable import dumps

MIN_REFERENCE_ROWS = 10
KIND_ACTION = {"text_drift": "drift", "length_drift": "drift", "guardrail": "quality", "refusal": "quality",
               "json_validity": "quality", "errors": "quality", "feedback": "feedback"}


class _Win:
    """One window's calls, per prompt."""

    def __init__(self, key: int):
        self.key, self.rows = key, 0
        self.prompts: dict[str, Calls] = {}


class PromptMonitor:
    def __init__(self, artefact_dir: str | Path):
        try:
            self.art = verify(artefact_dir, action="monitor")
        except ArtefactError as exc:
            raise MonitorError(str(exc)) from None
        self.job = load_job(self.art.root)
        if self.job.get("kind") != "prompt":
            raise MonitorError(f"{self.art.root}/monitoring/monitoring.json is not a prompt monitoring job "
                               "(kind is not \"prompt\"): recompile the spec with 'aiops compile SPEC_DIR'")
        self.prompts: list[str] = list(self.job["prompts"])
        self.reference: dict[str, list[dict]] = {p: [] for p in self.prompts}
        ref = self.art.root / self.job["reference"]  # verified with the artefacts (manifest hashes)
        for line in ref.read_text().splitlines() if ref.is_file() else ():
            case = json.loads(line) if line.strip() else None
            if isinstance(case, dict) and case.get("prompt") in self.reference:
                self.reference[case["prompt"]].append(case)

    def _cipher(self):
        from aiops.runtime.policy import PolicyError, load_cipher

        try:
            return load_cipher(self.art.json("serving.json").get("security", {}))
        except PolicyError as exc:
            raise MonitorError(str(exc)) from None

    # -------------------------------------------------------------- the pass
    def run(self, src: Source) -> Outcome:
        job = self.job
        feedback = load_feedback(src.labels) if src.labels is not None else None
        stats = LogStats()
        by, size = job["window"]["by"], job["window"]["size"]
        windows: dict[int, _Win] = {}
        rows = unassigned = joined = 0
        for e in read_prompt_log(src.log, self.prompts, self.art.manifest_sha256, stats, self._cipher):
            if by == "time":
                day = _day(e.get("ts"))
                if math.isnan(day):
                    unassigned += 1
                    rows += 1
                    continue
                key = int(window_keys(np.array([day]), size)[0])
            else:
                key = rows // int(size)
            rows += 1
            w = windows.get(key) or windows.setdefault(key, _Win(key))
            w.rows += 1
            verdict = feedback.get(str(e.get("prediction_id"))) if feedback is not None else None
            joined += verdict is not None
            w.prompts.setdefault(e["prompt"], Calls()).add(e, verdict)
        if rows == 0:
            where = src.log
            raise MonitorError(f"no prompt calls to monitor in the log at '{where}' ({stats.lines} lines read"
                               + (", skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.skipped.items()))
                                  if stats.skipped else "") + "): serve the prompts first ('aiops serve'), or pass "
                               "--from-log PATH")
        results, refs = self._results(windows, feedback is not None)
        alerts = collect(job, results)
        report = {
            "report_schema": REPORT_SCHEMA, "kind": "prompt",
            "model": {"name": self.art.name, "version": self.art.version, "manifest_sha256": self.art.manifest_sha256,
                      "prompts": self.prompts},
            "job": {"window": {"by": by, "column": "ts" if by == "time" else None, "size": size},
                    "min_window_rows": job["min_rows"], "thresholds": job["thresholds"], "reference": refs,
                    "text_drift": job["text_drift"]},
            "source": {"kind": "prompt_log", "path": str(src.log), "rows": rows, "rows_without_window": unassigned,
                       "log": {"lines": stats.lines, "used": stats.used, "skipped": dict(sorted(stats.skipped.items()))},
                       "labels": {"source": "file" if feedback is not None else None,
                                  "path": str(src.labels) if src.labels is not None else None,
                                  "labels_in_file": len(feedback) if feedback is not None else 0,
                                  "rows_with_label": joined}},
            "windows": results,
            "summary": summary(results, alerts),
            "alerts": alerts,
            "exit_code": 1 if alerts else 0,
        }
        webhook = src.webhook or job.get("webhook")
        delivery = deliver(webhook, _clean(payload(report))) if webhook and alerts else None
        report["webhook"] = {k: delivery[k] for k in ("url", "status", "error")} if delivery else None
        return Outcome(report, alerts, report["exit_code"], delivery=delivery)

    def _results(self, windows: dict[int, _Win], has_feedback: bool) -> tuple[list[dict], dict[str, Any]]:
        job, t = self.job, self.job["thresholds"]
        min_rows = job["min_rows"]
        refs: dict[str, Calls] = {}
        ref_info: dict[str, Any] = {}
        ref_key: dict[str, int] = {}
        for p in self.prompts:
            cases = self.reference[p]
            if len(cases) >= MIN_REFERENCE_ROWS:
                refs[p] = Calls.of_reference(cases)
                ref_info[p] = {"source": "evaluation set", "rows": len(cases)}
                continue
            first = next((k for k in sorted(windows) if p in windows[k].prompts
                          and windows[k].prompts[p].rows >= min_rows), None)
            if first is not None:
                refs[p], ref_key[p] = windows[first].prompts[p], first
            ref_info[p] = {"source": "first window", "rows": refs[p].rows if p in refs else 0,
                           "why": f"the evaluation set has {len(cases)} calls of '{p}', fewer than "
                                  f"{MIN_REFERENCE_ROWS}"}
        results = []
        for k in sorted(windows):
            w = windows[k]
            wid, start, end, _ = window_span(k, job["window"]["by"], job["window"]["size"])
            if job["window"]["by"] == "rows":
                end = str(int(start) + w.rows - 1)
                wid = f"rows {start}-{end}"
            enough = w.rows >= min_rows
            r: dict[str, Any] = {"id": wid, "start": start, "end": end, "rows": w.rows, "tested": enough}
            if not enough:
                r.update(status=INSUFFICIENT, reason=f"{w.rows} calls, fewer than monitoring.min_rows ({min_rows}): "
                                                     "reported, not tested")
            r["prompts"] = {}
            for p in sorted(w.prompts):
                calls = w.prompts[p]
                tested = enough and calls.rows >= min_rows
                why = f"{INSUFFICIENT}: {calls.rows} calls, fewer than monitoring.min_rows ({min_rows})"
                is_ref = ref_key.get(p) == k
                guards = job["guards"].get(p, [])
                res = calls.result(t, guards, None if is_ref else refs.get(p), tested, why, has_feedback)
                if p not in refs:
                    for d in list(res["lengths"].values()) + list(res["text_drift"].values()):
                        d["note"] = "no reference yet: no window has enough calls"
                res["reference"] = is_ref
                r["prompts"][p] = res
            r["drift"] = {"drifted": sorted(
                [f"{p}: {s} text" for p, x in r["prompts"].items() for s, d in x["text_drift"].items() if d["drifted"]]
                + [f"{p}: {m}" for p, x in r["prompts"].items() for m, d in x["lengths"].items() if d["drifted"]])}
            results.append(r)
        return results, ref_info


# ------------------------------------------------------------------ alerts
def collect(job: dict[str, Any], results: list[dict]) -> list[dict[str, Any]]:
    """One alert per failed check, in the shape of tabular alerts (runtime/monitor/alerts.py)."""
    act = job["actions"]
    alerts: list[dict[str, Any]] = []

    def add(kind: str, window: str, subject: str, value: Any, bound: str, message: str, test: str | None = None):
        alerts.append({"kind": kind, "window": window, "subject": subject, "test": test, "value": value,
                       "bound": bound, "action": act[KIND_ACTION[kind]], "message": message})

    for r in results:
        wid = r["id"]
        for p, x in r["prompts"].items():
            for side, d in x["text_drift"].items():
                if d["drifted"]:
                    add("text_drift", wid, f"{p}: {side} text", d["auc"], f"<= {d['threshold']}",
                        f"{p}: {side} texts drifted: a classifier tells them from the reference with AUC "
                        f"{d['auc']:.3f} (alerts above {d['threshold']})", "domain_classifier_auc")
            for m, d in x["lengths"].items():
                if d["drifted"]:
                    add("length_drift", wid, f"{p}: {m}", d["value"], f"<= {d['threshold']}",
                        f"{p}: {m.replace('_', ' ')} drifted: {d['test']} {d['value']:.3f} (alerts above "
                        f"{d['threshold']}; mean {d['summary']['mean']:.1f}, reference "
                        f"{d['histogram']['reference_summary']['mean']:.1f})", d["test"])
            for g, d in x["guardrails"].items():
                if d["passed"] is False:
                    add("guardrail", wid, f"{p}: {g}", d["value"], f"<= {d['max']}",
                        f"{p}: guardrail {g} hit {d['hits']} of {x['rows']} calls ({d['value']:.1%}; max "
                        f"{d['max']:.1%})")
            if x["refusal"]["passed"] is False:
                d = x["refusal"]
                add("refusal", wid, p, d["value"], f"<= {d['max']}",
                    f"{p}: refusal rate {d['value']:.1%} (max {d['max']:.1%})")
            d = x["json_validity"]
            if d is not None and d["passed"] is False:
                add("json_validity", wid, p, d["value"], f">= {d['min']}",
                    f"{p}: JSON validity {d['value']:.1%} of {d['rows']} answers (min {d['min']:.1%})")
            d = x["errors"]
            if d["passed"] is False:
                codes = ", ".join(f"{c} {n}" for c, n in d["by_code"].items())
                add("errors", wid, p, d["value"], f"<= {d['max']}",
                    f"{p}: error rate {d['value']:.1%} ({codes}; max {d['max']:.1%})")
            d = x["feedback"]
            if d["passed"] is False:
                add("feedback", wid, p, d["value"], f">= {d['min']}",
                    f"{p}: feedback pass rate {d['value']:.1%} on {d['labelled']} labelled calls (min "
                    f"{d['min']:.1%})")
    return alerts


# ------------------------------------------------------------------ the command
def run(artefact_dir: str | Path, src: Source, report_dir: str | Path | None = None, html: bool = True) -> Outcome:
    mon = PromptMonitor(artefact_dir)
    if src.log is None:
        src.log = Path(mon.job["prediction_log"])
    try:
        outcome = mon.run(src)
    except MonitorInputError as exc:
        raise MonitorError(str(exc)) from None
    out = Path(report_dir) if report_dir else Path(mon.job["report_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(dumps(outcome.report))
    (out / "alerts.json").write_text(dumps({"report_schema": REPORT_SCHEMA, "model": outcome.report["model"],
                                            "alerts": outcome.alerts,
                                            "webhook": outcome.delivery or outcome.report["webhook"]}))
    outcome.files = [out / "report.json", out / "alerts.json"]
    if html:
        from aiops.runtime.monitor.prompt_report import write_html

        outcome.files.append(write_html(outcome.report, out / "report.html"))
    return outcome
