"""Remote journals over TCP: the Chronicle 3.3-3.6 ``SourceTcp`` protocol (vanilla-format.md §9, §9b).

* :class:`RemoteChronicleReader` subscribes to a source (Java or ``pychro serve``) and returns the same
  :class:`~pychro.Excerpt` type as the local reader;
* :class:`RemoteChronicleWriter` appends through a source (``SUBMIT``), returning the acknowledged index;
* :class:`ChronicleSourceServer` / :func:`serve` serve a local journal to any 3.x client;
* :func:`replicate` keeps a local copy of a remote journal at the same indexes;
* :func:`iter_remote_batches` decodes a remote stream into Arrow record batches (needs pyarrow).

Importing this package loads neither numpy nor pandas nor pyarrow: the server (numpy) and the frames glue
(pyarrow) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._optional import lazy_getattr
from .appender import RemoteAppender, RemoteChronicleWriter
from .client import RemoteChronicleReader, start_index_of
from .replicate import replicate

_LAZY = {
    "ChronicleSourceServer": "pychro.remote.server",
    "serve": "pychro.remote.server",
    "iter_remote_batches": "pychro.remote.frames",
}


__getattr__ = lazy_getattr(__name__, _LAZY)

if TYPE_CHECKING:  # the lazy names with their real types, for type checkers only (nothing imported at run time)
    from .frames import iter_remote_batches
    from .server import ChronicleSourceServer, serve


__all__ = [
    "ChronicleSourceServer",
    "RemoteAppender",
    "RemoteChronicleReader",
    "RemoteChronicleWriter",
    "iter_remote_batches",
    "replicate",
    "serve",
    "start_index_of",
]
