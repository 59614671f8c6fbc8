"""Errors that carry a one-line, user-facing reason naming the bad place (file, line, field)."""

from __future__ import annotations


class ShadowingError(Exception):
    """Base of every error the CLI and DAGs report as a one-line reason."""


class InputError(ShadowingError):
    """Bad user input: names the file/line/field it came from."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = ":".join(str(p) for p in (source, line) if p is not None)
        if field:
            where = f"{where} field {field!r}" if where else f"field {field!r}"
        super().__init__(f"{where}: {message}" if where else message)
        self.source, self.line, self.field = source, line, field


class ValidationFailed(ShadowingError):
    """A data-quality validation failed; the previous valid artefact stays current."""

    def __init__(self, message: str, failures: list[str] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


class EmulatorUnavailable(ShadowingError):
    """The AWS endpoint did not answer."""
