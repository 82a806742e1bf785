"""scale: see ARCHITECTURE.md."""
