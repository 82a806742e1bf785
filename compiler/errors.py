"""UserError: an error in the user's input, printed by the CLI without a traceback.

A module of its own so that any part of the compiler can raise it without importing the CLI.
The class is the runtime's (runtime/errors.py): the `aiops` entry point is the runtime's CLI,
which catches it.
"""
from __future__ import annotations

from aiops.runtime.errors import UserError

__all__ = ["UserError"]
