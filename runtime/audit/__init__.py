"""audit: see ARCHITECTURE.md."""
