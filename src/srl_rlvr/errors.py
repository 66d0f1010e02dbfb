"""User-facing errors: the CLI prints these as one clear line and exits non-zero, without a traceback."""

from __future__ import annotations


class UserInputError(Exception):
    """A mistake in what the user gave us (a file, a flag, a config key)."""


class InvalidRecord(UserInputError):
    """One bad row in an input file, located by ``path:line`` and the offending field."""

    def __init__(self, path: str, line: int, field: str, reason: str):
        self.path, self.line, self.field, self.reason = str(path), line, field, reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: field '{self.field}': {self.reason}"
