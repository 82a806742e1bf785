"""aiops runtime: verify, serve, score, monitor and audit compiled artefacts (a plain install)."""

__version__ = "0.1.0"
