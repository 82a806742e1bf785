"""monitor: see ARCHITECTURE.md."""
