"""UserError: an error in the user's input, printed by the CLI without a traceback.

A module of its own so that any part of the compiler can raise it without importing the CLI.
"""
from __future__ import annotations


class UserError(Exception):
    """An error in the user's input: printed without a traceback, exit code `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
