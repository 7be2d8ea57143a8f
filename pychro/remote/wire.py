"""The Chronicle 3.3-3.6 ``SourceTcp`` wire format: constants, request and frame packing, socket helpers.

Implements vanilla-format.md §9/§9b. Everything is native byte order, which pychro requires to be little-endian:

* client -> source: 16-byte requests ``int64 action, int64 arg`` (:data:`REQUEST`); ``SUBMIT``/``SUBMIT_NOACK``
  are followed by ``arg`` raw body bytes;
* source -> client: 12-byte frame headers ``int32 size, int64 index`` (:data:`FRAME_HEADER`), followed by
  ``size`` body bytes when ``size >= 0``; negative sizes are control frames without a body.

There is no handshake and no version field. This module does no I/O beyond the small socket helpers at the end.

Examples
--------
>>> subscribe_request(IDX_TO_START).hex(" ")
'01 00 00 00 00 00 00 00 ff ff ff ff ff ff ff ff'
>>> HEARTBEAT.hex(" ")
'80 ff ff ff 00 00 00 00 00 00 00 00'
"""

from __future__ import annotations

import socket
import struct

from ..errors import RemoteError

__all__ = [
    "ACK_LEN", "ACTION_QUERY", "ACTION_SUBMIT", "ACTION_SUBMIT_NOACK", "ACTION_SUBSCRIBE", "ACTION_UNSUBSCRIBE",
    "ACTION_WITH_MAPPING", "FRAME_HEADER", "FRAME_HEADER_SIZE", "HEARTBEAT", "HEARTBEAT_INTERVAL_S", "IDX_ACK",
    "IDX_NONE", "IDX_NOT_SUPPORTED", "IDX_TO_END", "IDX_TO_START", "IN_SYNC_LEN", "MAX_FRAME_BODY", "NACK_LEN",
    "PADDED_LEN", "REQUEST", "REQUEST_SIZE", "SYNC_IDX_LEN", "control_frame", "describe_size", "frame_header",
    "recv_exact", "request", "subscribe_request",
]

# -- sizes (CQ-3.4.0 tcp/ChronicleTcp.java) ---------------------------------------------------------------
FRAME_HEADER = struct.Struct("<iq")  # int32 size + int64 index, no padding
FRAME_HEADER_SIZE = FRAME_HEADER.size  # 12
REQUEST = struct.Struct("<qq")  # int64 action + int64 argument
REQUEST_SIZE = REQUEST.size  # 16

# -- control-frame sizes (negative ``size`` values) ---------------------------------------------------------
IN_SYNC_LEN = -128  # heartbeat (also "absent" reply to QUERY)
PADDED_LEN = -127  # Indexed chronicles only; a Vanilla source never sends it
SYNC_IDX_LEN = -126  # reply to SUBSCRIBE (and to QUERY)
ACK_LEN = -129  # reply to SUBMIT: index written
NACK_LEN = -130  # SUBMIT refused

# -- actions -------------------------------------------------------------------------------------------------
ACTION_SUBSCRIBE = 1
ACTION_UNSUBSCRIBE = 2
ACTION_QUERY = 10  # 2 in 3.2.x-3.3.x, where UNSUBSCRIBE did not exist
ACTION_SUBMIT = 20
ACTION_SUBMIT_NOACK = 21
ACTION_WITH_MAPPING = 30  # followed by a Java-serialised MappingFunction: not usable from Python

# -- special index arguments ---------------------------------------------------------------------------------
IDX_NONE = 0
IDX_TO_START = -1
IDX_TO_END = -2
IDX_ACK = -3
IDX_NOT_SUPPORTED = -4

# Java's sink and remote tailer refuse bodies above this (ChronicleQueueSink.java L290-292); so do we, so a
# hostile size can never make us allocate more.
MAX_FRAME_BODY = 128 << 20
# The source's heartbeat interval (ChronicleQueueBuilder.java L585): an idle subscription gets IN_SYNC_LEN.
HEARTBEAT_INTERVAL_S = 2.5

_RECV_CHUNK = 1 << 20  # recv_exact: most bytes asked of the kernel (and allocated) at once

_pack_request = REQUEST.pack
_pack_header = FRAME_HEADER.pack

_CONTROL_NAMES = {
    IN_SYNC_LEN: "IN_SYNC_LEN (heartbeat)",
    PADDED_LEN: "PADDED_LEN",
    SYNC_IDX_LEN: "SYNC_IDX_LEN (subscribe/query reply)",
    ACK_LEN: "ACK_LEN",
    NACK_LEN: "NACK_LEN",
}


def request(action: int, arg: int = 0) -> bytes:
    """One 16-byte client request.

    >>> request(ACTION_UNSUBSCRIBE).hex()
    '02000000000000000000000000000000'
    """
    return _pack_request(action, arg)


def subscribe_request(index: int) -> bytes:
    """``SUBSCRIBE`` from :data:`IDX_TO_START`, :data:`IDX_TO_END` or an exact full index (inclusive)."""
    if index < IDX_TO_END:
        raise ValueError(f"subscribe index must be -1 (start), -2 (end) or a full index >= 0, got {index}")
    return _pack_request(ACTION_SUBSCRIBE, index)


def frame_header(size: int, index: int) -> bytes:
    """A 12-byte frame header: ``size >= 0`` for a data frame, a ``*_LEN`` constant for a control frame."""
    return _pack_header(size, index)


def control_frame(size: int, index: int = IDX_NONE) -> bytes:
    """A control frame (no body), e.g. ``control_frame(SYNC_IDX_LEN, -1)`` = the from-start subscribe reply."""
    if size >= 0:
        raise ValueError(f"control frames have a negative size, got {size}")
    return _pack_header(size, index)


HEARTBEAT = control_frame(IN_SYNC_LEN, IDX_NONE)


def describe_size(size: int) -> str:
    """Name of a frame ``size`` for error messages."""
    return _CONTROL_NAMES.get(size, f"unknown control size {size}" if size < 0 else f"data ({size} bytes)")


def recv_exact(sock: socket.socket, n: int, what: str = "data") -> bytes:
    """Read exactly ``n`` bytes, looping on short reads; :class:`RemoteError` if the peer closes first.

    For bounded reads (requests, SUBMIT bodies already checked against :data:`MAX_FRAME_BODY`). Memory grows
    with the bytes that arrive, not with ``n``: a peer announcing 128 MiB and sending little costs little.
    """
    if n <= 0:
        return b""
    chunks = []
    got = 0
    while got < n:
        chunk = sock.recv(min(n - got, _RECV_CHUNK))
        if not chunk:
            raise RemoteError(f"connection closed in the middle of {what}", expected=n, received=got)
        chunks.append(chunk)
        got += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
