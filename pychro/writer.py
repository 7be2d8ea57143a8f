"""VanillaChronicleWriter and Appender: append messages byte-identically to Java Chronicle >= 3.2.2.

Layout and commit follow vanilla-format.md §4-§6: each appender owns a fresh ``data-<tid>-<max+1>`` file per
cycle; a message is body, then the ``~length`` header, then a CAS of the first free index slot (the commit,
:func:`pychro._mapping.commit`); headers are 4-byte aligned; a data file rolls at the start of a message when
fewer than ``capacity + 4`` bytes remain; a message commits into the cycle chosen when it was started.
"""

from __future__ import annotations

import datetime as _dt
import numbers
import os
import struct
import threading
from collections.abc import Callable
from typing import Any, NoReturn

from . import _fields as F
from . import _layout as L
from ._commit import Committer, IndexFile
from ._mapping import MappedFile, commit, make_folder
from .config import VanillaConfig
from .errors import JournalNotFoundError, MessageTooLargeError, PychroError
from .journal import Journal
from .reader import clock_from_utcnow, wall_clock_ms

__all__ = ["Appender", "VanillaChronicleWriter"]

_p = {name: s.pack_into for name, s in F.STRUCTS.items()}
_pack_b, _pack_B, _pack_h, _pack_H = _p["int8"], _p["uint8"], _p["int16"], _p["uint16"]
_pack_i, _pack_I, _pack_q, _pack_f, _pack_d = _p["int32"], _p["uint32"], _p["int64"], _p["float32"], _p["float64"]
_pack_header = L.HEADER.pack_into


class VanillaChronicleWriter:
    """Appends messages to a journal; thread-safe, and safe beside other writer processes (Java or Python).

    Parameters
    ----------
    base_dir : str or os.PathLike
        Journal folder; created if missing.
    thread_id_bits : int, optional
        Shortcut for ``config.thread_id_bits``. When neither is given: detected from the journal's existing
        entries, else Java's host rule (every writer of one journal must use the same value).
    config : VanillaConfig, optional
        Format settings (cycle, block sizes, message capacity).
    clock, utcnow : callable, optional
        Injectable clock: epoch milliseconds, or pychro 0.8's naive-UTC ``utcnow``.
    synchronous : bool
        msync data and index after every commit (Java ``synchronous(true)``): a committed message then
        survives a power loss, at a large cost per message.

    Examples
    --------
    >>> with VanillaChronicleWriter(path) as chron:     # doctest: +SKIP
    ...     appender = chron.get_appender()
    ...     appender.write_int(1)
    ...     appender.write_string("hello")
    ...     index = appender.finish()
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        polling_interval: float | None = None,
        max_mapped_memory: int | None = None,
        thread_id_bits: int | None = None,
        utcnow: Callable[[], _dt.datetime] | None = None,
        *,
        config: VanillaConfig | None = None,
        clock: Callable[[], int] | None = None,
        synchronous: bool = False,
    ) -> None:
        del polling_interval, max_mapped_memory  # accepted for pychro 0.8 signatures; unused by a writer
        path = os.fspath(base_dir)
        if os.path.islink(path) and not os.path.exists(path):  # a loop or a dangling link: say so, not ELOOP
            raise JournalNotFoundError("journal folder is a symlink that loops or points nowhere", path=path)
        try:
            Journal(path, config, thread_id_bits, must_exist=False).check_target()  # before creating anything
        except OSError as exc:
            if isinstance(exc, PychroError) or exc.errno is None:
                raise
            # a path the system refuses (too long, ...): a journal problem with its path, not a raw OSError
            raise JournalNotFoundError(f"cannot use journal folder: {exc.strerror}", path=path) from None
        make_folder(path)
        self._journal = Journal(path, config, thread_id_bits)
        self.config = self._journal.config
        self.codec = self._journal.codec
        self.synchronous = synchronous
        self._clock = clock or (clock_from_utcnow(utcnow) if utcnow else wall_clock_ms)
        self._lock = threading.Lock()
        self._appenders: dict[int, Appender] = {}
        self._committer = Committer(self._journal)
        self._closed = False
        self._window = (0, 0, -1)  # [start, stop) epoch ms of the cycle _cycle_at last gave, and that cycle

    def __enter__(self) -> VanillaChronicleWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<VanillaChronicleWriter {self._journal.path!r} thread_id_bits={self.config.thread_id_bits}>"

    @property
    def journal(self) -> Journal:
        """The :class:`~pychro.Journal` being written."""
        return self._journal

    def get_appender(self) -> Appender:
        """The calling thread's appender (one per thread per writer object, as Java caches it)."""
        tid = threading.get_native_id()
        appender = self._appenders.get(tid)
        if appender is None:
            if self._closed:
                raise ValueError("writer is closed")
            if tid > self.codec.max_tid:
                raise ValueError(
                    f"this thread's id {tid} does not fit in thread_id_bits={self.config.thread_id_bits}; "
                    "Java would corrupt the journal here: use a larger thread_id_bits for a new journal"
                )
            appender = Appender(self, tid)
            with self._lock:
                self._appenders[tid] = appender
        return appender

    def close(self) -> None:
        """Unmap all files. Unfinished messages are dropped (never committed)."""
        self._closed = True
        with self._lock:
            for appender in self._appenders.values():
                appender._release()
            self._appenders.clear()
        self._committer.close()

    # -- used by appenders ---------------------------------------------------------------------------------
    def _cycle_at(self, now: object) -> int:
        """The cycle of the clock's reading ``now`` (checked), which becomes :attr:`_window`. Appenders look in
        that window first, inline: on most messages the clock is an int in the last message's cycle."""
        if type(now) is not int:  # the ABC check costs a message's worth of time: only for other types
            if not isinstance(now, numbers.Integral) or isinstance(now, bool):
                raise TypeError(
                    f"the writer's clock must return epoch milliseconds as an int, got {type(now).__name__}"
                )
            now = int(now)
        cfg = self.config
        cycle = cfg.cycle_of_ms(now)
        if not 0 <= cycle <= cfg.max_cycle:  # pre-1970 would give negative indices no reader takes
            cfg.check_cycle(cycle, f"the writer's clock ({now} ms since 1970)")
        self._window = (cfg.cycle_start_ms(cycle), cfg.cycle_start_ms(cycle + 1), cycle)  # one assignment: threads
        return cycle


def _check_capacity(capacity: object, block: int) -> None:
    """A capacity given to start_excerpt: an int from 0 up to what a data block of ``block`` bytes holds."""
    if isinstance(capacity, bool) or not isinstance(capacity, int):
        raise TypeError(f"capacity must be an int (bytes), got {type(capacity).__name__}")
    if capacity < 0:
        raise ValueError(f"capacity must be >= 0 bytes, got {capacity}")
    if capacity > block - L.HEADER_SIZE:
        raise MessageTooLargeError(f"capacity {capacity} does not fit in a data block of {block} bytes")


class Appender:
    """Writes one message at a time into the calling thread's data file; ``finish()`` commits it.

    A message starts with the first ``write_*`` (or :meth:`start_excerpt` to reserve more than the default
    capacity). Field methods use Java-Lang names in snake case.
    """

    __slots__ = (
        "_writer", "_tid", "_cycle", "_ci", "_file_no", "_mf", "_mm", "_pos", "_p", "_start", "_lim", "_cap",
        "_base", "last_index",
    )

    def __init__(self, writer: VanillaChronicleWriter, tid: int) -> None:
        self._writer = writer
        self._tid = tid
        self._cycle: int | None = None
        self._ci: IndexFile | None = None  # index file this appender commits into
        self._file_no = -1
        self._mf: MappedFile | None = None
        self._mm: Any = None
        self._pos = 0  # next header position in the data file
        self._p = 0  # write cursor
        self._start = -1  # body start of the message in progress, -1 when none
        self._lim = -1  # end of the room for the body: -1 forces the first write through _reserve()
        self._cap = -1  # body start + capacity (room beyond _lim is reserved on disk as writes reach it)
        self._base = 0  # tid and file_no part of the index entry
        self.last_index: int | None = None

    def __repr__(self) -> str:
        return f"<Appender tid={self._tid} cycle={self._cycle} file={self._file_no} pos={self._pos}>"

    # -- message boundaries --------------------------------------------------------------------------------
    def start_excerpt(self, capacity: int | None = None) -> None:
        """Begin a message with room for ``capacity`` bytes (default ``config.message_capacity``)."""
        if self._start >= 0:
            raise ValueError("a message is already in progress: finish() it first")
        writer = self._writer
        cfg = writer.config
        if capacity is None:  # every message's first write comes here: the config checked its capacity
            capacity = cfg.message_capacity
        else:
            _check_capacity(capacity, cfg.data_block_size)
        now = writer._clock()
        lo, hi, cycle = writer._window
        if type(now) is not int or not lo <= now < hi:
            cycle = writer._cycle_at(now)
        if cycle != self._cycle or self._mf is None:
            if writer._closed:  # checked only here: a closed writer's appenders have no data file
                raise ValueError("writer is closed")
            self._open_cycle(cycle)
            try:
                self._ci = writer._committer.index_file(cycle)
            except BaseException:  # e.g. no disk space for the index: start over at the next message
                self._release()
                raise
        elif cfg.data_block_size - self._pos < capacity + L.HEADER_SIZE:
            self._roll()
        start = self._pos + L.HEADER_SIZE
        reserved = self._mf.reserved  # type: ignore[union-attr]
        if start > reserved:  # the header's bytes and a chunk ahead (OSError: no message is started)
            self._mf.reserve(start, owned=True)  # type: ignore[union-attr]
            reserved = self._mf.reserved  # type: ignore[union-attr]
        self._start = self._p = start
        cap = self._cap = start + capacity
        self._lim = cap if cap <= reserved else reserved  # the body's room grows in _reserve()

    def _reserve(self, n: int) -> int:
        """Slow path of every write: start a message, reserve disk space for it, or refuse it when it outgrew
        its capacity or the disk is full (the message is then dropped)."""
        if self._start < 0:
            self.start_excerpt()
        end = self._p + n
        if end <= self._lim:
            return self._p
        if end <= self._cap:
            try:
                self._mf.reserve(end, owned=True)  # type: ignore[union-attr]
            except OSError:
                self.discard()
                raise
            self._lim = min(self._cap, self._mf.reserved)  # type: ignore[union-attr]
            return self._p
        capacity = self._cap - self._start
        self.discard()
        raise MessageTooLargeError(
            f"message exceeds its capacity of {capacity} bytes; nothing was committed "
            "(use start_excerpt(capacity) or a larger config message_capacity)"
        )

    def finish(self) -> int:
        """Commit the message: ``~length`` header, then CAS into the index. Returns its full index.

        Raises ``OSError`` when no disk space is left for the index: the message is then dropped, not
        committed (its header is overwritten by the next message).
        """
        start = self._start
        if start < 0:
            raise ValueError("no message in progress: write a field (or start_excerpt()) before finish()")
        p = self._p
        _pack_header(self._mm, start - L.HEADER_SIZE, ~(p - start))
        entry = self._base + start
        ci = self._ci
        assert ci is not None  # set by start_excerpt(), which began this message
        win = ci.win
        off = commit(win, ci.hint, entry)
        writer = self._writer
        if off >= 0:
            ci.hint = off + 8
            index = ci.base + (off >> 3)
        else:
            try:
                self._ci, index = writer._committer.commit_full(ci, entry, len(win))
            except OSError:
                self.discard()
                raise
        if writer.synchronous:
            self._mm.flush()
            self._ci.mf.flush()  # type: ignore[union-attr]
        self._pos = (p + 3) & ~3  # align4: the next header
        self._start = self._lim = -1  # _cap is read only while a message is in progress
        self.last_index = index
        return index

    def discard(self) -> None:
        """Drop the message in progress; its bytes stay uncommitted (no header, no index entry)."""
        self._p = self._pos
        self._start = self._lim = self._cap = -1

    def bytes_written(self) -> int:
        """Bytes written to the message in progress."""
        return 0 if self._start < 0 else self._p - self._start

    def get_offset(self) -> int:
        """Absolute write position in ``get_bytes()``."""
        return self._p

    def get_bytes(self) -> Any:
        """The mapped data file being written."""
        return self._mm

    # -- files -----------------------------------------------------------------------------------------
    def _open_cycle(self, cycle: int) -> None:
        self._release()
        self._cycle = cycle
        file_no, mf = self._writer._committer.claim_data_file(cycle, self._tid, None)
        self._use(file_no, mf)

    def _roll(self) -> None:
        assert self._mf is not None and self._cycle is not None
        self._release()
        file_no, mf = self._writer._committer.claim_data_file(self._cycle, self._tid, self._file_no)
        self._use(file_no, mf)

    def _use(self, file_no: int, mf: MappedFile) -> None:
        self._file_no = file_no
        self._mf = mf
        self._mm = mf.mm
        self._pos = self._p = 0
        self._base = self._writer.codec.pack(self._tid, file_no, 0)

    def _release(self) -> None:
        if self._mf is not None:
            self._mf.close()
        self._mf = self._mm = None
        self._start = self._lim = self._cap = -1

    # -- fixed-size fields -----------------------------------------------------------------------------
    def write_byte(self, value: int) -> None:
        """Java ``writeByte``: the low 8 bits of ``value`` (-128..255 accepted)."""
        if not isinstance(value, int) or not -128 <= value <= 255:
            _range("byte", value)
        p = self._p
        if p + 1 > self._lim:
            p = self._reserve(1)
        _pack_B(self._mm, p, value & 0xFF)
        self._p = p + 1

    write_unsigned_byte = write_byte

    def write_boolean(self, value: bool) -> None:
        """Java ``writeBoolean``: 'Y' (0x59) for true, 0 for false.

        Takes a bool (or numpy bool), or a number (nonzero is true) as the frames writer's bool fields do;
        anything else (``"no"``, None) is a TypeError rather than its truthiness."""
        if value is not True and value is not False and not _boolean_like(value):
            raise TypeError(f"write_boolean takes a bool (or a number, nonzero being true), got "
                            f"{type(value).__name__}")
        p = self._p  # the byte written here, not through write_byte: its checks would be repeated
        if p + 1 > self._lim:
            p = self._reserve(1)
        self._mm[p] = F.JAVA_TRUE if value else 0
        self._p = p + 1

    def write_short(self, value: int) -> None:
        """Java ``writeShort``: 16-bit little-endian."""
        p = self._p
        if p + 2 > self._lim:
            p = self._reserve(2)
        try:
            _pack_h(self._mm, p, value)
        except struct.error:
            _range('short', value)
        self._p = p + 2

    def write_unsigned_short(self, value: int) -> None:
        """Java ``writeUnsignedShort``: 0..65535."""
        p = self._p
        if p + 2 > self._lim:
            p = self._reserve(2)
        try:
            _pack_H(self._mm, p, value)
        except struct.error:
            _range('unsigned short', value)
        self._p = p + 2

    def write_char(self, value: str | int) -> None:
        """Java ``writeChar``: one UTF-16 code unit, from a one-character str or an int code unit."""
        if isinstance(value, str):
            if len(value) != 1 or ord(value) > 0xFFFF:
                raise ValueError(f"write_char takes one BMP character (one UTF-16 unit), got {value!r}")
            value = ord(value)
        self.write_unsigned_short(value)

    def write_int(self, value: int) -> None:
        """Java ``writeInt``: 32-bit little-endian."""
        p = self._p
        if p + 4 > self._lim:
            p = self._reserve(4)
        try:
            _pack_i(self._mm, p, value)
        except struct.error:
            _range('int', value)
        self._p = p + 4

    def write_unsigned_int(self, value: int) -> None:
        """Java ``writeUnsignedInt``: 0..2**32-1."""
        p = self._p
        if p + 4 > self._lim:
            p = self._reserve(4)
        try:
            _pack_I(self._mm, p, value)
        except struct.error:
            _range('unsigned int', value)
        self._p = p + 4

    def write_long(self, value: int) -> None:
        """Java ``writeLong``: 64-bit little-endian."""
        p = self._p
        if p + 8 > self._lim:
            p = self._reserve(8)
        try:
            _pack_q(self._mm, p, value)
        except struct.error:
            _range('long', value)
        self._p = p + 8

    def write_float(self, value: float) -> None:
        """Java ``writeFloat``: IEEE-754 single."""
        p = self._p
        if p + 4 > self._lim:
            p = self._reserve(4)
        try:
            _pack_f(self._mm, p, value)
        except (struct.error, OverflowError):
            _range('float', value)
        self._p = p + 4

    def write_double(self, value: float) -> None:
        """Java ``writeDouble``: IEEE-754 double."""
        p = self._p
        if p + 8 > self._lim:
            p = self._reserve(8)
        try:
            _pack_d(self._mm, p, value)
        except struct.error:
            _range('double', value)
        self._p = p + 8

    def write_int24(self, value: int) -> None:
        """Java-Lang ``writeInt24``: 3 bytes."""
        if not isinstance(value, int) or not -(1 << 23) <= value < (1 << 23):
            _range("int24", value)
        self.write_bytes(struct.pack("<i", value)[:3])

    def write_int48(self, value: int) -> None:
        """Java-Lang ``writeInt48``: 6 bytes."""
        if not isinstance(value, int) or not -(1 << 47) <= value < (1 << 47):
            _range("int48", value)
        self.write_bytes(struct.pack("<q", value)[:6])

    # -- variable-size fields --------------------------------------------------------------------------
    def write_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Raw bytes, as they are."""
        try:
            n = len(data)
        except TypeError:
            raise TypeError(f"write_bytes takes bytes, bytearray or memoryview (data), got {type(data).__name__}") \
                from None
        if isinstance(data, str):
            raise TypeError("write_bytes takes bytes, bytearray or memoryview (data), got str: use write_string "
                            "or encode it")
        p = self._p
        if p + n > self._lim:
            p = self._reserve(n)
        self._mm[p : p + n] = data
        self._p = p + n

    def write_stop_bit(self, value: int) -> None:
        """Java ``writeStopBit``, incl. negatives (``-1`` = ``80 00``)."""
        if 0 <= value < 0x80:
            p = self._p
            if p + 1 > self._lim:
                p = self._reserve(1)
            self._mm[p] = value
            self._p = p + 1
        else:
            self.write_bytes(F.encode_stop_bit(value))

    write_stopbit = write_stop_bit  # pychro 0.8 name

    def write_string(self, value: str | None) -> None:
        """Java ``writeUTFΔ``: stop-bit byte length, then CESU-8 text; ``None`` writes Java null (``80 00``)."""
        if type(value) is not str:  # one test on the common path
            if value is None:
                self.write_bytes(F.NULL_STRING)
                return
            if not isinstance(value, str):
                raise TypeError(f"write_string takes a str or None, got {type(value).__name__}")
        raw = value.encode("ascii") if value.isascii() else F.encode_text(value)
        n = len(raw)
        if n >= 0x80:
            self.write_stop_bit(n)
            self.write_bytes(raw)
            return
        p = self._p  # short text: one-byte length, one bounds check
        if p + n + 1 > self._lim:
            p = self._reserve(n + 1)
        mm = self._mm
        mm[p] = n
        mm[p + 1 : p + 1 + n] = raw
        self._p = p + 1 + n

    write_utf_delta = write_string

    def write_utf(self, value: str) -> None:
        """Java-Lang ``writeUTF``: uint16 little-endian byte length, then the same text encoding."""
        if not isinstance(value, str):
            raise TypeError(f"write_utf takes a str, got {type(value).__name__}")
        raw = F.encode_text(value)
        if len(raw) > F.UTF_MAX_LENGTH:
            raise ValueError(f"writeUTF takes at most {F.UTF_MAX_LENGTH} encoded bytes, got {len(raw)}")
        self.write_unsigned_short(len(raw))
        self.write_bytes(raw)

    def write_fixed_string(self, value: str | None, size: int) -> None:
        """pychro 0.8: a ``write_string`` padded with zeros to exactly ``size`` bytes."""
        if value is None:
            raw = F.NULL_STRING
        elif not isinstance(value, str):
            raise TypeError(f"write_fixed_string takes a str or None, got {type(value).__name__}")
        else:
            text = F.encode_text(value)
            raw = F.encode_stop_bit(len(text)) + text
        if len(raw) > size:
            raise ValueError(f"string needs {len(raw)} bytes, more than the fixed size {size}")
        self.write_bytes(raw + bytes(size - len(raw)))

    def write_enum(self, value: Any) -> None:
        """Java ``writeEnum`` for enums and strings: the UTFΔ of its text (``name`` for Python enums)."""
        self.write_string(None if value is None else getattr(value, "name", str(value)))

    # -- compact forms ---------------------------------------------------------------------------------
    def write_compact_short(self, value: int) -> None:
        """Java-Lang ``writeCompactShort``."""
        try:
            raw = F.encode_compact_short(value)
        except (struct.error, OverflowError, TypeError):
            _range('compact short', value)
        self.write_bytes(raw)

    def write_compact_int(self, value: int) -> None:
        """Java-Lang ``writeCompactInt``."""
        try:
            raw = F.encode_compact_int(value)
        except (struct.error, OverflowError, TypeError):
            _range('compact int', value)
        self.write_bytes(raw)

    def write_compact_long(self, value: int) -> None:
        """Java-Lang ``writeCompactLong``."""
        try:
            raw = F.encode_compact_long(value)
        except (struct.error, OverflowError, TypeError):
            _range('compact long', value)
        self.write_bytes(raw)

    def write_compact_unsigned_int(self, value: int) -> None:
        """Java-Lang ``writeCompactUnsignedInt``."""
        try:
            raw = F.encode_compact_unsigned_int(value)
        except (struct.error, OverflowError, TypeError):
            _range('compact unsigned int', value)
        self.write_bytes(raw)

    def write_compact_double(self, value: float) -> None:
        """Java-Lang ``writeCompactDouble``: a float when exact, else float NaN + double."""
        try:
            raw = F.encode_compact_double(value)
        except (struct.error, OverflowError, TypeError):
            _range('compact double', value)
        self.write_bytes(raw)

    # -- pychro 0.8 helpers ----------------------------------------------------------------------------
    def advance(self, num_bytes: int) -> None:
        """Skip ``num_bytes`` (they keep whatever the file held: zeros in a fresh file)."""
        self.write_bytes(bytes(num_bytes))

    def fill(self, size: int, ch: bytes) -> None:
        """pychro 0.8: ``size`` copies of the byte ``ch``."""
        self.write_bytes(ch * size)


_RANGES = {
    "byte": "-128..255", "short": "-32768..32767", "unsigned short": "0..65535", "int": "-2**31..2**31-1",
    "unsigned int": "0..2**32-1", "long": "-2**63..2**63-1", "int24": "-2**23..2**23-1",
    "int48": "-2**47..2**47-1", "compact short": "-32768..32767", "compact int": "-2**31..2**31-1",
    "compact long": "-2**63..2**63-1", "compact unsigned int": "0..2**32-1",
}


def _range(kind: str, value: Any) -> NoReturn:
    """Raise the error a bad field value deserves: TypeError for the wrong type, else FieldRangeError."""
    if kind in ("float", "double", "compact double"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise F.FieldRangeError(f"{value!r} does not fit in a Java {kind}")
        raise TypeError(f"write_{kind.replace(' ', '_')} takes a float, got {type(value).__name__}")
    if not isinstance(value, int):
        raise TypeError(f"a Java {kind} field takes an int, got {type(value).__name__} {value!r}")
    raise F.FieldRangeError(f"{value} does not fit in a Java {kind} ({_RANGES[kind]})")


def _boolean_like(value: object) -> bool:
    """A numpy bool, or a real number (int, float, numpy number), for :meth:`write_boolean`."""
    import numbers

    return _is_numpy_bool(value) or isinstance(value, numbers.Real)


def _is_numpy_bool(value: object) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")
