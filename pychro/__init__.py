"""pychro: read and write OpenHFT Chronicle-Queue 3.x (Vanilla) journals from Python.

Row API (pychro 0.8 names): :class:`VanillaChronicleReader`, :class:`VanillaChronicleWriter`.
Importing pychro opens no file and imports neither pandas nor pyarrow.
"""

from typing import TYPE_CHECKING

from ._optional import lazy_getattr
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
from .journal import Cycle, CycleInfo, Journal
from .journal import open_journal as open  # pychro.open(dir), like h5py.File / zarr.open
from .reader import VanillaChronicleReader
from .remote import RemoteChronicleReader, RemoteChronicleWriter
from .writer import Appender, VanillaChronicleWriter

__version__ = "1.0.0.dev0"

# The frames API needs pyarrow/pandas; it is imported on first use so `import pychro` stays cheap.
_LAZY = {
    "Schema": "pychro.frames.schema",
    "MessageTypes": "pychro.frames.types",
    "RowError": "pychro.frames.encode",
    "read_tables": "pychro.frames.typed",
    "read_frames": "pychro.frames.typed",
    "read_table": "pychro.frames",
    "read_frame": "pychro.frames",
    "scan": "pychro.frames.interchange",
    "iter_batches": "pychro.frames",
    "write_frame": "pychro.frames.backfill",
    "write_frames": "pychro.frames.backfill",
    "to_journal": "pychro.frames.backfill",
    "to_parquet": "pychro.frames.export",
    "to_ipc": "pychro.frames.export",
    "to_csv": "pychro.frames.export",
    "read_dask": "pychro.frames.dask",
    "serve": "pychro.remote.server",
    "replicate": "pychro.remote.replicate",
    "verify_journal": "pychro.verify",
}


__getattr__ = lazy_getattr(__name__, _LAZY)

if TYPE_CHECKING:  # the lazy names with their real types, for type checkers only (nothing imported at run time)
    from .frames import iter_batches, read_frame, read_table
    from .frames.backfill import to_journal, write_frame, write_frames
    from .frames.dask import read_dask
    from .frames.encode import RowError
    from .frames.export import to_csv, to_ipc, to_parquet
    from .frames.interchange import scan
    from .frames.schema import Schema
    from .frames.typed import read_frames, read_tables
    from .frames.types import MessageTypes
    from .remote.replicate import replicate
    from .remote.server import serve
    from .verify import verify_journal

__all__ = [
    "Appender",
    "CorruptData",
    "CorruptDataError",
    "Cycle",
    "CycleInfo",
    "Excerpt",
    "FormatError",
    "IncompleteTailWarning",
    "Journal",
    "JournalNotFoundError",
    "MessageTooLargeError",
    "MessageTypes",
    "NoData",
    "PychroError",
    "PychroWarning",
    "RawByteReader",
    "ReadOnlyJournalError",
    "RemoteChronicleReader",
    "RemoteChronicleWriter",
    "RemoteError",
    "RowError",
    "Schema",
    "SchemaMismatchError",
    "VanillaChronicleReader",
    "VanillaChronicleWriter",
    "VanillaConfig",
    "__version__",
    "iter_batches",
    "open",
    "read_dask",
    "read_frame",
    "read_frames",
    "read_table",
    "read_tables",
    "replicate",
    "scan",
    "serve",
    "to_csv",
    "to_ipc",
    "to_journal",
    "to_parquet",
    "verify_journal",
    "write_frame",
    "write_frames",
]
