"""Exceptions and warnings raised by pychro.

``PychroError`` always means the journal or its environment (bytes, files, peers); a bad argument stays a
plain ``TypeError``/``ValueError``. Builtin mixins keep ``except FileNotFoundError`` and friends working.
Every error carries its context as attributes (``path``, ``cycle``, ``seq``, ``offset``...), so reports
built with ``errors="skip"`` can read them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CorruptData",
    "CorruptDataError",
    "FormatError",
    "IncompleteTailWarning",
    "JournalNotFoundError",
    "MessageTooLargeError",
    "NoData",
    "PychroError",
    "PychroWarning",
    "ReadOnlyJournalError",
    "RemoteError",
    "SchemaMismatchError",
]


class PychroError(Exception):
    """Root of pychro's errors; never raised itself."""

    def __init__(self, message: str, **context: Any) -> None:
        self.context = {k: v for k, v in context.items() if v is not None}
        for key, value in context.items():
            setattr(self, key, value)
        where = ", ".join(f"{k}={_fmt(k, v)}" for k, v in self.context.items())
        super().__init__(f"{message} ({where})" if where else message)


def _fmt(key: str, value: Any) -> str:
    if key in ("offset", "entry", "index", "last_index", "local_index") and isinstance(value, int):
        return hex(value) if key != "offset" else str(value)  # indices in hex everywhere, as info shows them
    return str(value)


class NoData(PychroError):  # name kept from pychro 0.8
    """Raised by ``next_reader()`` when no further message is committed and the reader does not wait."""


class JournalNotFoundError(PychroError, FileNotFoundError):
    """A journal folder, cycle folder, index file or data file that must exist does not."""


class FormatError(PychroError, ValueError):
    """Bytes on disk break the Vanilla format rules."""


class CorruptDataError(FormatError):
    """A header, index entry or body bound that cannot be right: bad ``~length``, body past the file's end."""


# Original pychro spelling, kept as an alias so ``except pychro.CorruptData`` still works.
CorruptData = CorruptDataError


class SchemaMismatchError(PychroError, ValueError):
    """A message decoded with a schema does not end exactly at its header's length."""


class MessageTooLargeError(PychroError, ValueError):
    """A message being written exceeds the capacity reserved for it; nothing was committed."""


class ReadOnlyJournalError(PychroError, PermissionError):
    """A write was attempted on a journal opened (or stored) read-only."""


class RemoteError(PychroError, ConnectionError):
    """A TCP peer sent something the 3.x protocol does not allow, or the connection broke mid-frame."""


class PychroWarning(UserWarning):
    """Base of pychro's warnings."""


class IncompleteTailWarning(PychroWarning):
    """An index slot is set but the message header it points at is still zero."""
