"""pychro: read and write OpenHFT Chronicle-Queue 3.x (Vanilla) journals from Python.

Row API (pychro 0.8 names): :class:`VanillaChronicleReader`, :class:`VanillaChronicleWriter`.
Importing pychro opens no file and imports neither pandas nor pyarrow.
"""

from .config import VanillaConfig
from .errors import (
    CorruptData,
    CorruptDataError,
    FormatError,
    IncompleteTailWarning,
    JournalNotFoundError,
    MessageTooLargeError,
    NoData,
    PychroError,
    PychroWarning,
    ReadOnlyJournalError,
    RemoteError,
    SchemaMismatchError,
)
from .excerpt import Excerpt, RawByteReader
from .journal import CycleInfo, Journal
from .reader import VanillaChronicleReader
from .writer import Appender, VanillaChronicleWriter

__version__ = "1.0.0.dev0"

__all__ = [
    "Appender",
    "CorruptData",
    "CorruptDataError",
    "CycleInfo",
    "Excerpt",
    "FormatError",
    "IncompleteTailWarning",
    "Journal",
    "JournalNotFoundError",
    "MessageTooLargeError",
    "NoData",
    "PychroError",
    "PychroWarning",
    "RawByteReader",
    "ReadOnlyJournalError",
    "RemoteError",
    "SchemaMismatchError",
    "VanillaChronicleReader",
    "VanillaChronicleWriter",
    "VanillaConfig",
    "__version__",
]
