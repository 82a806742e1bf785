"""serve: see ARCHITECTURE.md."""
