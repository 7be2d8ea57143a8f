"""Vectorised columnar reading of Vanilla journals: Arrow tables, pandas frames, record-batch streams.

``read_table`` returns a ``pyarrow.Table``, ``read_frame`` a pandas DataFrame and ``iter_batches`` an iterator
of ``pyarrow.RecordBatch`` (optionally following writers); :class:`Schema` describes the fields of a message.
The work is done with numpy gathers over memory-mapped files and Arrow kernels; no per-row Python runs on
any path except the counted CESU-8 text fallback. This package never calls the row reader or writer.
"""

from .api import ReadStats, iter_batches, read_frame, read_table
from .schema import Field, FieldType, Schema
from .typed import read_frames, read_tables
from .types import MessageTypes

__all__ = [
    "Field",
    "FieldType",
    "MessageTypes",
    "ReadStats",
    "Schema",
    "iter_batches",
    "read_frame",
    "read_frames",
    "read_table",
    "read_tables",
]
