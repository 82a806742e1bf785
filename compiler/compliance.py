"""Placeholder replaced by the compliance document writer."""
from __future__ import annotations

from pathlib import Path

from .plan import Plan


def write_compliance(plan: Plan, stage: Path) -> None:
    (stage / "compliance.md").write_text(f"# {plan.name}\n")
