"""aiops compiler: spec -> checked plan -> generated artefacts."""

from aiops.runtime import __version__

__all__ = ["__version__"]
