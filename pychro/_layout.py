"""Every Vanilla constant and bit trick, with no I/O (vanilla-format.md §1-§4, §14).

Glossary: *cycle* = one cycle folder; *seq* = position in a cycle's index; *index* = full 64-bit
``cycle << seq_bits | seq``; *entry* = raw u64 in an index file; *tid*, *file_no*, *offset* (byte in a data
file, pointing at the body); *header* = the int32 ``~length`` 4 bytes before the body.
"""

from __future__ import annotations

import os
import struct
import sys

# Defaults equal Java's (ChronicleQueueBuilder.VanillaChronicleQueueBuilder, CQ-3.4.0 L353-360).
DEFAULT_CYCLE_FORMAT = "yyyyMMdd"
DEFAULT_CYCLE_LENGTH_MS = 86_400_000
DEFAULT_ENTRIES_PER_CYCLE = 1 << 40
DEFAULT_INDEX_BLOCK_SIZE = 16 << 20
DEFAULT_DATA_BLOCK_SIZE = 64 << 20
DEFAULT_MESSAGE_CAPACITY = 128 << 10

# The 3.5+ Cycle enum: name -> (folder format, length ms, entries per cycle).
CYCLES: dict[str, tuple[str, int, int]] = {
    "SECONDS": ("yyyyMMddHHmmss", 1_000, 1 << 28),
    "MINUTES": ("yyyyMMddHHmm", 60_000, 1 << 34),
    "HOURS": ("yyyyMMddHH", 3_600_000, 1 << 40),
    "DAYS": ("yyyyMMdd", 86_400_000, 1 << 40),
}

ENTRY_SIZE = 8  # one u64 slot
HEADER_SIZE = 4  # int32 ~length before every body
ALIGNMENT = 4  # headers start at 4-byte aligned positions
MAX_BODY_LENGTH = 1 << 30  # ~header must have its top two bits clear
MAX_INDEX_FILES = 10_000  # Java gives up after index-9999
# A follower (row reader, frames follow, replicate) that has moved on from cycle C still takes messages committed
# late into C (a writer commits into the cycle in which it began a message, vanilla-format.md §6) this long.
LATE_COMMIT_GRACE_S = 10.0
# An index slot seen empty while a later slot of its file is filled is re-read for this long before it is called
# damage (slots fill in order; a reader can load slot k, then see k and k+1 filled by writers in between).
HOLE_GRACE_S = 0.2
INDEX_FILE_PREFIX = "index-"
DATA_FILE_PREFIX = "data-"

HEADER = struct.Struct("<i")
ENTRY = struct.Struct("<Q")

# Java writes in native byte order; a journal is only portable between little-endian hosts.
if sys.byteorder != "little":  # pragma: no cover - no big-endian CI
    raise ImportError("pychro supports little-endian hosts only (Java writes journals in native order)")


def log2_exact(value: int, what: str) -> int:
    """Return log2 of a power of two, else raise ValueError naming ``what``."""
    if value <= 0 or value & (value - 1):
        raise ValueError(f"{what} must be a power of two, got {value}")
    return value.bit_length() - 1


def align4(pos: int) -> int:
    """Round a data-file position up to the next header position."""
    return (pos + ALIGNMENT - 1) & ~(ALIGNMENT - 1)


def header_for(length: int) -> int:
    """The int32 header value Java stores for a body of ``length`` bytes (``~length``)."""
    return ~length


def length_from_header(header: int) -> int:
    """Body length from a raw int32 header; -1 for 0 (not committed), -2 for a value that breaks the rules."""
    if header == 0:
        return -1
    length = ~header
    if length < 0 or length >= MAX_BODY_LENGTH:
        return -2
    return length


def index_file_name(n: int) -> str:
    return f"{INDEX_FILE_PREFIX}{n}"


def data_file_name(tid: int, file_no: int) -> str:
    return f"{DATA_FILE_PREFIX}{tid}-{file_no}"


def parse_data_file_name(name: str) -> tuple[int, int] | None:
    """``data-<tid>-<n>`` -> (tid, n), else None."""
    if not name.startswith(DATA_FILE_PREFIX):
        return None
    parts = name[len(DATA_FILE_PREFIX) :].split("-")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def parse_index_file_name(name: str) -> int | None:
    """``index-<n>`` -> n, else None."""
    if not name.startswith(INDEX_FILE_PREFIX):
        return None
    rest = name[len(INDEX_FILE_PREFIX) :]
    return int(rest) if rest.isdigit() else None


class EntryCodec:
    """Pack and unpack index entries for one (thread-id bits, data block size) pair (§2).

    ``entry = tid << (64 - T) + file_no * data_block_size + offset``.
    """

    __slots__ = ("thread_id_bits", "tid_shift", "data_bits", "offset_mask", "pos_mask", "max_tid", "max_file_no")

    def __init__(self, thread_id_bits: int, data_block_size: int) -> None:
        if not 1 <= thread_id_bits <= 32:
            raise ValueError(f"thread_id_bits must be in 1..32, got {thread_id_bits}")
        self.thread_id_bits = thread_id_bits
        self.tid_shift = 64 - thread_id_bits
        self.data_bits = log2_exact(data_block_size, "data_block_size")
        if self.data_bits >= self.tid_shift:
            raise ValueError("data_block_size leaves no bits for the data file number")
        self.offset_mask = data_block_size - 1
        self.pos_mask = (1 << self.tid_shift) - 1  # file_no and offset together
        self.max_tid = (1 << thread_id_bits) - 1
        self.max_file_no = (1 << (self.tid_shift - self.data_bits)) - 1

    def pack(self, tid: int, file_no: int, offset: int) -> int:
        if tid > self.max_tid:
            raise ValueError(
                f"thread id {tid} does not fit in {self.thread_id_bits} thread-id bits; "
                "set thread_id_bits to what the journal's other writers use"
            )
        if file_no > self.max_file_no:
            raise ValueError(f"data file number {file_no} does not fit in the index entry")
        return (tid << self.tid_shift) + (file_no << self.data_bits) + offset

    def unpack(self, entry: int) -> tuple[int, int, int]:
        """entry -> (tid, file_no, offset)."""
        pos = entry & self.pos_mask
        return entry >> self.tid_shift, pos >> self.data_bits, pos & self.offset_mask


def host_thread_id_bits() -> int:
    """Java's thread-id bits for a journal created on this host (vanilla-format.md §2).

    ``-Dos.max.pid.bits`` has an equivalent here in the ``PYCHRO_THREAD_ID_BITS`` environment variable.
    Otherwise Java-Lang >= 6.8.1 (Chronicle 3.6.x): Linux ``max(16, ceil(log2(pid_max)))``, macOS 24,
    anything else 16. Older Java-Lang on Linux used ``ceil(log2(pid_max))`` without the minimum.
    """
    env = os.environ.get("PYCHRO_THREAD_ID_BITS")
    if env:
        try:
            bits = int(env)
        except ValueError:
            bits = 0
        if not 1 <= bits <= 32:
            raise ValueError(f"the PYCHRO_THREAD_ID_BITS environment variable must be an int in 1..32, got {env!r}")
        return bits
    if sys.platform == "darwin":
        return 24
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/sys/kernel/pid_max") as fh:
                pid_max = int(fh.read().strip())
        except (OSError, ValueError):
            return 16
        return max(16, pid_max_bits(pid_max))
    return 16


def pid_max_bits(pid_max: int) -> int:
    """ceil(log2(pid_max)): the bits Linux thread ids below ``pid_max`` need (Java-Lang <= 6.8.0 rule)."""
    return (pid_max - 1).bit_length()
