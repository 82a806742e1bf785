"""trust: see ARCHITECTURE.md."""
