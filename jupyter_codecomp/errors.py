"""Errors a user can act on: a one-line cause and, where there is one, the command that fixes it."""

from __future__ import annotations


class CodecompError(Exception):
    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


class ModelNotReady(CodecompError):
    """The model is missing, corrupt or still loading."""


class Cancelled(Exception):
    """A generation was cancelled between two tokens (superseded, or the client asked)."""


class EngineUnavailable(CodecompError):
    """The shared completion engine (`engine_url`) is down, slow, refused us, or sent garbage."""

    def __init__(self, message: str, fix: str | None = None, unreachable: bool = False):
        super().__init__(message, fix)
        self.unreachable = unreachable  # down or gone, as opposed to answering with an error
