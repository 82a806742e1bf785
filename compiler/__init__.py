"""aiops compiler: spec -> checked plan -> generated artefacts."""

__version__ = "0.1.0"
