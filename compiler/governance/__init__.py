"""Governance as a workflow: approvals and stage moves (workflow), accountable overrides
(overrides), version diffs (diff) and the experiment history (history)."""
