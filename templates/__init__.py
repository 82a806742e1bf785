"""Jinja2 templates of the generated code, monitoring files and compliance document (package data,
loaded with importlib.resources so that a wheel compiles too)."""
