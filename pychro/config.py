"""VanillaConfig: every setting that changes a journal's bytes on disk (vanilla-format.md §1, §3, §8).

Cycle folders are named by formatting the cycle's start instant with a Java ``SimpleDateFormat`` pattern
(``yyyyMMdd`` by default) in ``cycle_time_zone``. Only the pattern letters Chronicle journals use are
supported: ``y M d H m s S`` plus quoted or punctuation literals (``/`` makes nested folders, as in 3.5+).
"""

from __future__ import annotations

import datetime as _dt
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import _layout as L

__all__ = ["VanillaConfig"]

_UTC = _dt.UTC
_FOLDER_CYCLES: dict[tuple[Any, ...], int | None] = {}  # (naming settings, folder name) -> cycle
_FOLDER_CYCLES_MAX = 1 << 17
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_UTC)
_TOKEN = re.compile(r"'([^']*)'|([a-zA-Z])\2*|([^a-zA-Z']+)")
_LAST_DAY = _dt.date(9999, 12, 31)
_MAX_INDEX = (1 << 63) - 1
_FIELDS = {"y": "year", "M": "month", "d": "day", "H": "hour", "m": "minute", "s": "second", "S": "ms"}


def _zone(name: str) -> _dt.tzinfo:
    if not isinstance(name, str):
        raise TypeError(f"cycle_time_zone must be a str such as 'Europe/London', got {type(name).__name__}")
    if name.upper() in ("UTC", "GMT", "Z"):
        return _UTC
    from zoneinfo import ZoneInfo  # only for non-UTC folder zones

    try:
        return ZoneInfo(name)
    except (LookupError, ValueError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError; bad keys ValueError
        raise ValueError(f"cycle_time_zone {name!r} is not a known IANA time zone (e.g. 'Europe/London')") from exc


class _DateFormat:
    """A compiled SimpleDateFormat subset: format an instant, parse a name back to a local datetime."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.parts: list[tuple[str, int] | str] = []  # (field letter, width) or a literal
        regex = []
        pos = 0
        for m in _TOKEN.finditer(pattern):
            if m.start() != pos:
                raise ValueError(f"cannot parse cycle_format {pattern!r} at {pos}")
            pos = m.end()
            quoted, letter, literal = m.group(1), m.group(2), m.group(3)
            if letter:
                if letter not in _FIELDS:
                    raise ValueError(f"cycle_format letter {letter!r} is not supported (use y M d H m s S)")
                width = len(m.group(0))
                self.parts.append((letter, width))
                digits = r"\d{%d}" % width if width > 1 else r"\d+"  # noqa: UP031 - as an f-string: rf"\d{{{width}}}"
                regex.append(f"(?P<{_FIELDS[letter]}>{digits})")
            else:
                text = quoted if quoted is not None else literal
                if quoted == "":
                    text = "'"
                self.parts.append(text)
                regex.append(re.escape(text))
        if pos != len(pattern) or not any(isinstance(p, tuple) for p in self.parts):
            raise ValueError(f"invalid cycle_format {pattern!r}")
        self.regex = re.compile("".join(regex) + r"\Z")
        self.depth = pattern.count("/") + 1
        # folder names are joined to the journal path: a literal that leaves it, or an empty part, is refused
        sample = self.format(_dt.datetime(2024, 1, 10, 12, tzinfo=_UTC)).split("/")
        if any(part in ("", ".", "..") or "\x00" in part for part in sample):
            raise ValueError(f"cycle_format {pattern!r} names folders outside the journal folder or empty ones "
                             f"(e.g. {'/'.join(sample)!r}): use letters y M d H m s S, '/' between parts")

    def format(self, moment: _dt.datetime) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            letter, width = part
            if letter == "y":
                value = moment.year % 100 if width == 2 else moment.year
            elif letter == "S":
                value = moment.microsecond // 1000
            else:
                value = getattr(moment, _FIELDS[letter])
            out.append(str(value).zfill(width))
        return "".join(out)

    def parse(self, name: str, tz: _dt.tzinfo) -> _dt.datetime | None:
        m = self.regex.match(name)
        if not m:
            return None
        g = {k: int(v) for k, v in m.groupdict().items()}
        year = g.get("year", 1970)
        if "year" in g and len(m.group("year")) == 2:
            year += 2000
        try:
            return _dt.datetime(
                year, g.get("month", 1), g.get("day", 1), g.get("hour", 0), g.get("minute", 0),
                g.get("second", 0), g.get("ms", 0) * 1000, tzinfo=tz,
            )
        except ValueError:
            return None


_MAX_BLOCK_BITS = 30
_MAX_SECONDS = 86_400.0 * 365  # time.sleep and socket timeouts overflow on inf and huge values


def check_seconds(value: object, name: str, *, zero: bool = True) -> float:
    """A duration argument in seconds as a float, or a TypeError/ValueError naming it and its range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    seconds = float(value)
    if not (seconds >= 0 if zero else seconds > 0) or seconds > _MAX_SECONDS:  # NaN fails both
        low = "0" if zero else "above 0"
        raise ValueError(f"{name} must be {low} .. {_MAX_SECONDS:.0f} seconds, got {value!r}")
    return seconds


def as_int(value: object, name: str) -> int:
    """``value`` as a plain int (numpy integers too, as ``df["_index"]`` gives them), or a TypeError naming
    ``name``: a bool, a float or a str is refused, not rounded or taken as 0/1."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_")) \
            or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return operator.index(value)


@dataclass(frozen=True)
class VanillaConfig:
    """Everything that changes the on-disk format of a Vanilla journal. Defaults equal Java's.

    Parameters
    ----------
    cycle : {"DAYS", "HOURS", "MINUTES", "SECONDS"} or None
        A Chronicle 3.5+ ``Cycle``; sets the folder format, length and entries per cycle unless those are given.
        ``None`` with ``cycle_format`` and ``cycle_length_ms`` describes a custom cycle (3.3/3.4 style).
    cycle_format : str
        Java ``SimpleDateFormat`` pattern of the cycle folder names, e.g. ``"yyyyMMddHH"``.
    cycle_length_ms : int
        Length of one cycle in milliseconds; ``cycle = epoch_ms // cycle_length_ms``.
    cycle_time_zone : str
        Zone used to *name* folders (Chronicle 3.6 ``cycleTimeZone``); cycle arithmetic is always UTC.
    entries_per_cycle : int
        Power of two; the full index is ``cycle * entries_per_cycle + seq``.
    index_block_size, data_block_size : int
        Sizes of index and data files in bytes (powers of two).
    thread_id_bits : int or None
        Bits of the writer thread id in each index entry. ``None``: detect from the journal, else Java's
        rule for this host (:func:`pychro._layout.host_thread_id_bits`).
    message_capacity : int
        Bytes reserved per message by a writer (Java ``defaultMessageSize``); data files roll when fewer than
        ``message_capacity + 4`` bytes remain. Default 128 KiB, or ``data_block_size - 4`` when that is less.

    Examples
    --------
    >>> VanillaConfig().folder_name(16487)
    '20150221'
    >>> hourly = VanillaConfig(cycle="HOURS")
    >>> hourly.folder_name(hourly.cycle_of_ms(1424523600000))
    '2015022113'
    >>> hex(VanillaConfig().index_of(16487, 10))
    '0x4067000000000a'
    """

    cycle: str | None = "DAYS"
    cycle_format: str | None = None
    cycle_length_ms: int | None = None
    cycle_time_zone: str = "UTC"
    entries_per_cycle: int | None = None
    index_block_size: int = L.DEFAULT_INDEX_BLOCK_SIZE
    data_block_size: int = L.DEFAULT_DATA_BLOCK_SIZE
    thread_id_bits: int | None = None
    message_capacity: int = L.DEFAULT_MESSAGE_CAPACITY
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        cycle = self.cycle.upper() if isinstance(self.cycle, str) else self.cycle
        if cycle is not None and cycle not in L.CYCLES:
            raise ValueError(f"cycle must be one of {sorted(L.CYCLES)} or None, got {self.cycle!r}")
        if cycle is None and (self.cycle_format is None or self.cycle_length_ms is None):
            raise ValueError("a custom cycle (cycle=None) needs cycle_format and cycle_length_ms")
        preset = L.CYCLES[cycle] if cycle else (None, None, L.DEFAULT_ENTRIES_PER_CYCLE)
        set_ = object.__setattr__
        set_(self, "cycle", cycle)
        if self.cycle_format is None:
            set_(self, "cycle_format", preset[0])
        if self.cycle_length_ms is None:
            set_(self, "cycle_length_ms", preset[1])
        if self.entries_per_cycle is None:
            set_(self, "entries_per_cycle", preset[2])
        assert self.cycle_length_ms is not None and self.entries_per_cycle is not None  # for mypy
        for name in ("cycle_length_ms", "entries_per_cycle", "index_block_size", "data_block_size",
                     "message_capacity", "thread_id_bits"):
            if getattr(self, name) is not None:  # numpy integers become ints; bools, floats, strs are refused
                set_(self, name, as_int(getattr(self, name), name))
        if self.cycle_length_ms <= 0:
            raise ValueError(f"cycle_length_ms must be a positive int, got {self.cycle_length_ms!r}")
        seq_bits = L.log2_exact(self.entries_per_cycle, "entries_per_cycle")
        if not 8 <= seq_bits <= 48:
            raise ValueError("entries_per_cycle must be between 2**8 and 2**48 (Java's builder limits)")
        index_bits = L.log2_exact(self.index_block_size, "index_block_size")
        if index_bits < 6:
            raise ValueError("index_block_size must be at least 64 bytes")
        # Java maps each file with one MappedByteBuffer (at most 2**31 - 1 bytes): 1 GiB is its largest block
        if index_bits > _MAX_BLOCK_BITS or L.log2_exact(self.data_block_size, "data_block_size") > _MAX_BLOCK_BITS:
            raise ValueError(f"index_block_size and data_block_size must be at most 2**{_MAX_BLOCK_BITS} bytes "
                             f"(Java maps a file in one buffer), got {self.index_block_size}, {self.data_block_size}")
        if self.message_capacity == L.DEFAULT_MESSAGE_CAPACITY:  # the default shrinks to fit a small data block
            set_(self, "message_capacity", min(self.message_capacity, self.data_block_size - L.HEADER_SIZE))
        if not 0 < self.message_capacity <= self.data_block_size - L.HEADER_SIZE:
            raise ValueError(f"message_capacity must be positive and at most data_block_size - 4 = "
                             f"{self.data_block_size - L.HEADER_SIZE}, got {self.message_capacity}")
        if self.thread_id_bits is not None:
            L.EntryCodec(self.thread_id_bits, self.data_block_size)  # validates the pair
        d = self._derived
        d["fmt"] = _DateFormat(self.cycle_format)  # type: ignore[arg-type]
        d["tz"] = _zone(self.cycle_time_zone)
        d["seq_bits"] = seq_bits
        d["slot_bits"] = index_bits - 3
        # The last cycle whose folder can be named (a day's margin for zones east of UTC) and whose
        # indices fit a signed 64-bit long; cycles before 1970 are never written (Java's are >= 0 too).
        last_ms = (_LAST_DAY - _EPOCH.date()).days * 86_400_000 - 1
        d["max_cycle"] = min(last_ms // self.cycle_length_ms - 1, (_MAX_INDEX >> seq_bits) - 1)
        if d["max_cycle"] < 0:
            raise ValueError(f"cycle_length_ms={self.cycle_length_ms} leaves no cycle that ends before "
                             f"{_LAST_DAY}: at most {last_ms // 2} ms")
        self._check_names_cycles()

    def _check_names_cycles(self) -> None:
        """A format coarser than the cycle (``yyyyMMdd`` for hourly cycles, say) would put several cycles in one
        folder, each overwriting the other's index files: refuse it (probed at a date with no DST change)."""
        probe = min(self.cycle_of(_dt.datetime(2024, 1, 10, 12, tzinfo=_UTC)), max(0, self.max_cycle - 2))
        cycles = [c for c in (probe, probe + 1, probe + 2) if 0 <= c <= self.max_cycle]
        names = [self.folder_name(c) for c in cycles]
        if len(set(names)) != len(names) or any(self.cycle_of_folder(n) != c for c, n in zip(cycles, names)):
            raise ValueError(
                f"cycle_format {self.cycle_format!r} does not name each cycle of {self.cycle_length_ms} ms: "
                f"cycles {', '.join(map(str, cycles))} get folders {', '.join(map(repr, names))}"
            )

    # -- derived sizes ---------------------------------------------------------------------------------
    @property
    def seq_bits(self) -> int:
        """log2(entries_per_cycle): bits of seq in a full index."""
        return int(self._derived["seq_bits"])

    @property
    def slot_bits(self) -> int:
        """log2(slots per index file)."""
        return int(self._derived["slot_bits"])

    @property
    def slots_per_index_file(self) -> int:
        return self.index_block_size // L.ENTRY_SIZE

    @property
    def folder_depth(self) -> int:
        """Number of path components of a cycle folder (``yyyy/MM/dd`` has 3)."""
        return int(self._derived["fmt"].depth)

    @property
    def max_cycle(self) -> int:
        """Last cycle this configuration can name and index (cycles run from 0, 1970-01-01 UTC)."""
        return int(self._derived["max_cycle"])

    @property
    def max_index(self) -> int:
        """Last full index of :attr:`max_cycle`."""
        return self.index_of(self.max_cycle, self.entries_per_cycle - 1)  # type: ignore[operator]

    def check_cycle(self, cycle: int, what: str | None = None) -> int:
        """``cycle`` itself, or a ValueError naming ``what`` and the range of cycles a journal can hold."""
        if not 0 <= cycle <= self.max_cycle:
            first, last = self.cycle_datetime(0), self.cycle_datetime(self.max_cycle)
            raise ValueError(
                f"{what + ' is cycle' if what else 'cycle'} {cycle}, outside the cycles a journal can hold: "
                f"0..{self.max_cycle} "
                f"({first:%Y-%m-%d %H:%M:%S} .. {last:%Y-%m-%d %H:%M:%S} UTC)"
            )
        return cycle

    def check_index(self, index: object, what: str = "full_index") -> int:
        """``index`` as an int, or a TypeError/ValueError naming ``what`` and the allowed range."""
        index = as_int(index, what)
        if not 0 <= index <= self.max_index:
            raise ValueError(f"{what} must be in 0..{self.max_index:#x}, got {index:#x}")
        return index

    def with_thread_id_bits(self, bits: int) -> VanillaConfig:
        return replace(self, thread_id_bits=bits)

    # -- cycle arithmetic ------------------------------------------------------------------------------
    def cycle_of_ms(self, epoch_ms: int) -> int:
        """Cycle holding a wall-clock instant (epoch milliseconds, UTC)."""
        return epoch_ms // self.cycle_length_ms  # type: ignore[operator]

    def cycle_start_ms(self, cycle: int) -> int:
        return cycle * self.cycle_length_ms  # type: ignore[operator]

    def cycle_of(self, when: _dt.date | _dt.datetime | int) -> int:
        """Cycle of a date (its midnight UTC), an aware or naive-UTC datetime, or epoch ms."""
        if isinstance(when, int):
            return self.cycle_of_ms(when)
        if not isinstance(when, _dt.datetime):
            when = _dt.datetime(when.year, when.month, when.day, tzinfo=_UTC)
        elif when.tzinfo is None:
            when = when.replace(tzinfo=_UTC)
        delta = when - _EPOCH
        ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
        return self.cycle_of_ms(ms)

    def cycle_datetime(self, cycle: int) -> _dt.datetime:
        """Start of a cycle as an aware UTC datetime."""
        if not 0 <= cycle <= self.max_cycle:
            self.check_cycle(cycle)
        return _EPOCH + _dt.timedelta(milliseconds=self.cycle_start_ms(cycle))

    def folder_name(self, cycle: int) -> str:
        """Relative folder of a cycle: format its start instant in ``cycle_time_zone``."""
        moment = self.cycle_datetime(cycle).astimezone(self._derived["tz"])
        return str(self._derived["fmt"].format(moment))

    def has_folder_format(self, name: str) -> bool:
        """Does a relative folder path have the shape of ``cycle_format`` (whether or not it starts a cycle)?"""
        return self._derived["fmt"].parse(name.replace("\\", "/"), self._derived["tz"]) is not None

    def cycle_of_folder(self, name: str) -> int | None:
        """Cycle named by a relative folder path, or None when the name is not one this config writes.

        Parsing is only used to enumerate folders; the result is checked by formatting it back, which also
        fixes the off-by-one Java 3.6 has with zones whose offset is not a multiple of the cycle length.
        """
        # every read lists the journal's folders a few times: kept, a 365-day journal cost 15 ms per read to parse
        key = (self.cycle_format, self.cycle_time_zone, self.cycle_length_ms, self.entries_per_cycle, name)
        try:
            return _FOLDER_CYCLES[key]
        except KeyError:
            pass
        cycle = self._parse_folder(name)
        if len(_FOLDER_CYCLES) >= _FOLDER_CYCLES_MAX:
            _FOLDER_CYCLES.clear()
        _FOLDER_CYCLES[key] = cycle
        return cycle

    def _parse_folder(self, name: str) -> int | None:
        moment = self._derived["fmt"].parse(name.replace("\\", "/"), self._derived["tz"])
        if moment is None:
            return None
        guess = self.cycle_of(moment)
        for cycle in (guess, guess + 1, guess - 1):
            if 0 <= cycle <= self.max_cycle and self.folder_name(cycle) == name:
                return cycle
        return None

    # -- full index ------------------------------------------------------------------------------------
    def index_of(self, cycle: int, seq: int) -> int:
        """Full index of message ``seq`` of ``cycle``."""
        return (cycle << self.seq_bits) + seq

    def split_index(self, index: int) -> tuple[int, int]:
        """Full index -> (cycle, seq)."""
        return index >> self.seq_bits, index & ((1 << self.seq_bits) - 1)

    def date_of_index(self, index: int) -> _dt.datetime:
        return self.cycle_datetime(self.split_index(index)[0])


DEFAULT_CONFIG = VanillaConfig()


def resolve_config(config: VanillaConfig | None, thread_id_bits: int | None) -> VanillaConfig:
    """Merge the ``config=`` and legacy ``thread_id_bits=`` arguments every entry point accepts."""
    if config is None:
        config = DEFAULT_CONFIG
    elif not isinstance(config, VanillaConfig):
        raise TypeError(f"config must be a VanillaConfig, got {type(config).__name__}")
    if thread_id_bits is not None:
        if config.thread_id_bits not in (None, thread_id_bits):
            raise ValueError("thread_id_bits disagrees with config.thread_id_bits")
        config = config.with_thread_id_bits(thread_id_bits)
    return config


Clock = Callable[[], int]
