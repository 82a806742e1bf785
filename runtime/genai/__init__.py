"""Governed prompts at run time (docs/genai.md): sandboxed rendering, the provider client,
guardrails, variable validation, the audit entry of a prompt call and the HTTP route."""
