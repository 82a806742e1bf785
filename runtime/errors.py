"""UserError: an error in the user's input, printed by the CLI without a traceback.

Defined in the runtime, whose CLI (runtime/cli.py) catches it; the compiler raises the same
class (compiler/errors.py re-exports it), since the runtime never imports the compiler.
"""
from __future__ import annotations


class UserError(Exception):
    """An error in the user's input: printed without a traceback, exit code `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code
