"""Governance at run time: who acts (identity), the registry of runs and its event log (store),
approval records (approvals) and the production check serve and score call (production)."""
