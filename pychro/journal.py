"""Journal: find a journal's cycle folders, index files and data files, and count its messages.

Used by the row reader and writer, the frames scanner and the CLI. Discovery follows vanilla-format.md §1:
folders are enumerated by parsing their names with the configured cycle format (junk is ignored), but the
folder of a cycle is always computed by formatting. Thread-id bits are detected by matching index entries to
``data-<tid>-<n>`` names (§2, §13).
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from . import _layout as L
from ._mapping import MappedFile
from .config import VanillaConfig, resolve_config
from .errors import CorruptDataError, FormatError, JournalNotFoundError, PychroError

__all__ = ["Cycle", "CycleInfo", "Journal", "open_journal"]

T = TypeVar("T")
_DETECT_SAMPLE = 64  # entries per index file sampled to detect thread-id bits
_DETECTED: dict[tuple[Any, ...], list[int]] = {}  # thread-id bits that fit, by cycle folder and its files (see below)
_DETECTED_MAX = 256
_SHOWN = 5  # names quoted in a "not a journal" error
# Folder layouts tried when no folder matches the configuration: (how to name it, VanillaConfig arguments)
_OTHER_LAYOUTS: list[tuple[str, dict[str, Any], str]] = [
    *((f"cycle={c!r}", {"cycle": c}, f"--cycle {c}") for c in ("DAYS", "HOURS", "MINUTES", "SECONDS")),
    ("cycle=None, cycle_format='yyyy/MM/dd', cycle_length_ms=86400000",
     {"cycle": None, "cycle_format": "yyyy/MM/dd", "cycle_length_ms": 86_400_000},
     "--cycle-format yyyy/MM/dd --cycle-length-ms 86400000"),
]


@dataclass(frozen=True)
class CycleInfo:
    """What one cycle folder holds."""

    cycle: int
    folder: str
    start: _dt.datetime
    messages: int
    index_files: int
    data_files: int
    bytes_on_disk: int
    first_index: int | None
    last_index: int | None


class Journal:
    """A Vanilla journal on disk: ``<path>/<cycle folder>/{index-N, data-<tid>-<n>}``.

    Parameters
    ----------
    path : str or os.PathLike
        The folder given to Java's ``ChronicleQueueBuilder.vanilla(path)``.
    config : VanillaConfig, optional
        Format settings; defaults equal Java's.
    thread_id_bits : int, optional
        Shortcut for ``config.thread_id_bits``. When neither gives it, it is detected from the journal's
        own entries, else Java's rule for this host is used.
    must_exist : bool
        Raise :class:`JournalNotFoundError` when ``path`` is not a folder.

    Examples
    --------
    >>> j = Journal(sample_journal)          # doctest: +SKIP
    >>> [c.messages for c in j.cycle_infos()]  # doctest: +SKIP
    [10, 10]
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: VanillaConfig | None = None,
        thread_id_bits: int | None = None,
        *,
        must_exist: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        if must_exist and not os.path.isdir(self.path):
            found = ("the journal path is a file, not a folder" if os.path.exists(self.path)
                     else "journal folder not found")
            raise JournalNotFoundError(found, path=self.path)
        config = resolve_config(config, thread_id_bits)
        self.thread_id_bits_detected = False
        if config.thread_id_bits is None:
            detected = self.detect_thread_id_bits(config)
            self.thread_id_bits_detected = detected is not None
            config = config.with_thread_id_bits(detected if detected is not None else L.host_thread_id_bits())
        self.config = config
        assert config.thread_id_bits is not None
        self.codec = L.EntryCodec(config.thread_id_bits, config.data_block_size)

    def __repr__(self) -> str:
        cycles = self.cycles()
        cfg = self.config
        span = f" ({cfg.folder_name(cycles[0])}..{cfg.folder_name(cycles[-1])})" if cycles else ""
        messages = sum(self.count(c, strict=False) for c in cycles)
        return (
            f"<pychro.Journal {self.path!r} cycles={len(cycles)}{span} messages={messages} "
            f"thread_id_bits={cfg.thread_id_bits}>"
        )

    # -- folders and files ---------------------------------------------------------------------------
    def cycles(self, config: VanillaConfig | None = None) -> list[int]:
        """Sorted cycles whose folder exists (folders whose name does not parse are ignored)."""
        return _cycles_at(self.path, config or self.config)

    def cycle_path(self, cycle: int) -> str:
        return os.path.join(self.path, *self.config.folder_name(cycle).split("/"))

    def index_files(self, cycle: int) -> list[int]:
        """Sorted numbers of the ``index-N`` files of a cycle ([] when the folder is missing)."""
        return sorted(n for n in map(L.parse_index_file_name, _listdir(self.cycle_path(cycle))) if n is not None)

    def data_files(self, cycle: int) -> list[tuple[int, int]]:
        """Sorted (tid, file_no) of the ``data-<tid>-<n>`` files of a cycle."""
        return sorted(t for t in map(L.parse_data_file_name, _listdir(self.cycle_path(cycle))) if t is not None)

    def index_path(self, cycle: int, n: int) -> str:
        return os.path.join(self.cycle_path(cycle), L.index_file_name(n))

    def data_path(self, cycle: int, tid: int, file_no: int) -> str:
        return os.path.join(self.cycle_path(cycle), L.data_file_name(tid, file_no))

    # -- counts --------------------------------------------------------------------------------------
    def count(self, cycle: int, *, strict: bool = True) -> int:
        """Committed messages in a cycle: full index files, plus the first zero slot of the last one.

        Raises when an index file that is not full (or missing) is followed by another: index files are
        created in order once the previous one is full, so that is damage hiding later messages. Also raises
        (unless ``strict=False``, which counts the readable prefix) when the last index file was cut (shorter
        than ``index_block_size`` and filled up to its end), is longer than the block, or when ``index-0`` is
        missing while the data files hold committed messages (see :meth:`index_damage`).
        """
        cfg = self.config
        files = self.index_files(cycle)
        if files != list(range(len(files))):
            files = self.index_files(cycle)  # a listing can miss a file created while it ran: list again
        total = 0
        if not files and strict:
            damage = self.index_damage(cycle, 0, 0, 0)
            if damage is not None:
                raise damage
        for expect, n in enumerate(files):
            path = self.index_path(cycle, expect)
            if n != expect:
                raise JournalNotFoundError(
                    f"{L.index_file_name(expect)} is missing but {L.index_file_name(n)} exists", path=path,
                    cycle=cycle, seq=total,
                )
            mf = MappedFile.open_read(path, cfg.index_block_size)
            if mf.size == cfg.index_block_size and os.path.getsize(path) > cfg.index_block_size:
                mf.close()
                raise self.oversized_index(path, os.path.getsize(path), cycle, total)
            try:
                filled = mf.count_filled()  # no load from a page never written: it can fault on tmpfs
            finally:
                mf.close()
            total += filled
            if filled < cfg.slots_per_index_file:
                if expect + 1 < len(files):
                    raise CorruptDataError(
                        f"{L.index_file_name(n)} ends at entry {filled} but {L.index_file_name(n + 1)} exists: "
                        f"the index is cut{self.block_size_hint()}", path=path, cycle=cycle, seq=total,
                    )
                if strict:
                    damage = self.index_damage(cycle, n, filled, total)
                    if damage is not None:
                        raise damage
                break
        return total

    # -- damage and wrong configurations ------------------------------------------------------------------
    def index_damage(self, cycle: int, n: int, filled: int, seq: int) -> PychroError | None:
        """What is wrong with ``index-<n>``, the last index file of a cycle, where the count ends at ``filled``
        (``seq`` in the cycle); None when nothing is.

        * longer than ``index_block_size``: entries past the block would be ignored (a wrong configuration);
        * cut: shorter than the block and filled up to its end, so later entries may be lost (a short copy).
          A file of 0 bytes is one a writer has created but not yet extended (or was killed doing so): it
          counts as empty, as a missing ``index-0`` does, unless the data files prove messages were committed;
        * ``index-0`` missing or empty while a data file holds two committed messages, or a data file other
          than the first of its thread exists: a writer creates ``index-0`` at its first commit, so the index
          was lost.
        """
        cfg = self.config
        path = self.index_path(cycle, n)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            size = -1
        ctx = dict(path=path, cycle=cycle, seq=seq)
        if size > cfg.index_block_size:
            return self.oversized_index(path, size, cycle, seq)
        if size > 0 and size < cfg.index_block_size and filled == size // L.ENTRY_SIZE:
            return CorruptDataError(
                f"{L.index_file_name(n)} is cut: {size} of {cfg.index_block_size} bytes, filled up to its end, so "
                f"entries after the first {filled} may be lost{self.block_size_hint()}", **ctx,
            )
        if n == 0 and filled == 0 and size <= 0:
            proof = self._unindexed_messages(cycle)
            # the data files are read after the index was: a writer that created index-0 and committed since
            # then (the live case) is not a lost index, so look at the index once more
            if proof is not None and _size(path) <= 0:
                what = "missing" if size < 0 else "empty"
                return JournalNotFoundError(
                    f"index-0 is {what} but {proof}: the index was lost (deleted, or not copied)", **ctx
                )
        return None

    def oversized_index(self, path: str, size: int, cycle: int, seq: int | None = None) -> FormatError:
        """The error for an index file longer than ``index_block_size`` (its slots would be misnumbered)."""
        return FormatError(
            f"{os.path.basename(path)} is {size} bytes, more than index_block_size={self.config.index_block_size}"
            f"{self.block_size_hint() or ': the journal was written with other settings'}",
            path=path, cycle=cycle, seq=seq,
        )

    def _unindexed_messages(self, cycle: int) -> str | None:
        """Why the data files of a cycle prove that a message was committed (None when they do not)."""
        folder = self.cycle_path(cycle)
        for tid, file_no in self.data_files(cycle):
            name = L.data_file_name(tid, file_no)
            if file_no > 0:
                return f"{name} exists (a writer moves to a second data file only after committing into the first)"
            try:
                with open(os.path.join(folder, name), "rb") as fh:
                    first = fh.read(4)
                    length = L.length_from_header(struct.unpack("<i", first)[0]) if len(first) == 4 else -1
                    if length < 0:
                        continue
                    fh.seek((L.HEADER_SIZE + length + 3) & ~3)
                    second = fh.read(4)
            except OSError:
                continue
            if len(second) == 4 and struct.unpack("<i", second)[0] != 0:
                return f"{name} holds committed messages"
        return None

    def _file_sizes(self, kind: str) -> list[int]:
        """Sizes of a sample of the index (or data) files: up to 4 in each of the first 8 cycles, empty ones left
        out (a file being created)."""
        sizes = []
        for cycle in self.cycles()[:8]:
            if kind == "index":
                paths = [self.index_path(cycle, n) for n in self.index_files(cycle)[:4]]
            else:
                paths = [self.data_path(cycle, *t) for t in self.data_files(cycle)[:4]]
            for path in paths:
                try:
                    size = os.stat(path).st_size
                except OSError:
                    continue
                if size:
                    sizes.append(size)
        return sizes

    def block_size_hint(self, kind: str = "index") -> str:
        """'; <kind>_block_size=N would match ...' when every index (or data) file has one other power-of-two size.

        Java makes every file of a kind exactly its block size, so one other common size most likely is a
        configuration that does not match the journal."""
        configured = self.config.index_block_size if kind == "index" else self.config.data_block_size
        hint = _block_size_hint(kind, set(self._file_sizes(kind)), configured, 64 if kind == "index" else 1024)
        return f"; {hint}" if hint else ""

    def check_layout(self) -> bool:
        """Raise :class:`JournalNotFoundError` when the folder is not a journal under this configuration.

        Returns True for an empty journal (a folder with nothing in it yet but dotfiles), False for a journal
        with cycle folders. The error names what was found: a cycle folder's files (the journal is its
        parent), journals inside it (the folder is a parent), or folders that another configuration (cycle,
        folder format) would read, naming that configuration.
        """
        names = sorted(n for n in _listdir(self.path) if not n.startswith("."))
        # cycles are looked for after the listing: a writer may create the first cycle folder in between
        if self.cycles():
            self._check_cycle_starts()
            self._check_data_block_size()
            self._check_entries_per_cycle()
            return False
        if not names:
            return True
        raise JournalNotFoundError(self._not_a_journal(names)[0], path=self.path)

    def check_target(self) -> None:
        """For writers: raise :class:`JournalNotFoundError` when the folder is positively something else - a
        file, a cycle folder, a folder of journals, or folders another configuration names (an hourly journal
        written as daily would mix both layouts). A missing folder, or one holding only unrelated files, is a
        new journal."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise JournalNotFoundError("the journal path is a file, not a folder", path=self.path)
        names = sorted(n for n in _listdir(self.path) if not n.startswith("."))
        if self.cycles():  # after the listing, as in check_layout
            self._check_cycle_starts()
            return
        if names:
            message, definite = self._not_a_journal(names)
            if definite:
                raise JournalNotFoundError(message, path=self.path)

    def _check_cycle_starts(self) -> None:
        """Raise when a folder has the cycle format's name but names no cycle start (hourly folders read with
        a daily ``cycle_length_ms``, say): only the folders that happen to start a cycle would be read, the
        others silently left out."""
        cfg = self.config
        odd = sorted(rel for rel in _walk_folders(self.path, cfg.folder_depth)
                     if cfg.cycle_of_folder(rel) is None and cfg.has_folder_format(rel))
        if not odd:
            return
        fits = [(label, option) for label, kwargs, option in _OTHER_LAYOUTS
                if (other := VanillaConfig(**kwargs)).cycle_format == cfg.cycle_format
                and other.cycle_length_ms != cfg.cycle_length_ms
                and len(_cycles_at(self.path, other)) == len(odd) + len(self.cycles())]
        hint = f": pass config=VanillaConfig({fits[0][0]}) (pychro {fits[0][1]})" if fits else ""
        raise JournalNotFoundError(
            f"{len(odd)} folder(s) named by cycle_format {cfg.cycle_format!r} start no cycle of "
            f"cycle_length_ms={cfg.cycle_length_ms} (e.g. {odd[0]}): the journal was written with another cycle "
            f"length{hint}", path=self.path)

    def _check_data_block_size(self) -> None:
        """Raise when the data files certainly have another block size: index entries would be split into file
        and offset at the wrong place, and with a smaller block size land on a header inside another file
        (plausible garbage). Certain means one common power-of-two size, and either larger than the configured
        one (files only get shorter by damage) or shared by several files (one short file may be a cut copy,
        which readers report where a message is missing)."""
        sizes = self._file_sizes("data")
        configured = self.config.data_block_size
        hint = _block_size_hint("data", set(sizes), configured, 1024)
        if hint and (sizes[0] > configured or len(sizes) > 1):
            raise JournalNotFoundError(f"the data files do not match data_block_size={configured}: {hint}",
                                       path=self.path)

    def _check_entries_per_cycle(self) -> None:
        """Raise when a cycle holds more messages than ``entries_per_cycle``: its full indices would run into the
        next cycle's (two messages, one index) and reads by index would return the wrong messages. Looks at one
        slot, number ``entries_per_cycle``, of the first and last two cycles (a pread each, nothing mapped)."""
        cfg = self.config
        slots = cfg.slots_per_index_file
        assert cfg.entries_per_cycle is not None  # set by VanillaConfig.__post_init__
        n, slot = divmod(cfg.entries_per_cycle, slots)
        cycles = self.cycles()
        for cycle in sorted(set(cycles[:2] + cycles[-2:])):
            try:
                with open(self.index_path(cycle, n), "rb") as fh:
                    word = os.pread(fh.fileno(), L.ENTRY_SIZE, slot * L.ENTRY_SIZE)
            except OSError:
                continue  # no such index file: the cycle holds fewer messages
            if len(word) == L.ENTRY_SIZE and any(word):
                raise FormatError(
                    f"cycle {cfg.folder_name(cycle)} holds more than entries_per_cycle={cfg.entries_per_cycle} "
                    "messages, so its full indices would run into the next cycle's: the journal was written with "
                    "a larger entries_per_cycle (leave it unset for the cycle's default, or pass the writer's; "
                    "pychro --entries-per-cycle N)", path=self.cycle_path(cycle))

    def _not_a_journal(self, names: list[str]) -> tuple[str, bool]:
        """What the folder is instead of a journal, and whether that is known (False: just no cycle folder)."""
        cfg = self.config
        mine = f"cycle_format {cfg.cycle_format!r}" + (f" (cycle={cfg.cycle!r})" if cfg.cycle else "")
        files = [n for n in names if L.parse_index_file_name(n) is not None or L.parse_data_file_name(n) is not None]
        if files:
            parent = os.path.dirname(os.path.abspath(self.path))
            return (f"not a journal but a cycle folder: it holds {', '.join(files[:_SHOWN])}; the journal is "
                    f"its parent folder {parent}"), True
        layouts = [cfg] + [VanillaConfig(**kwargs) for _, kwargs, _ in _OTHER_LAYOUTS]
        for label, kwargs, option in _OTHER_LAYOUTS:
            other = VanillaConfig(**kwargs)
            if other.cycle_format == cfg.cycle_format:
                continue
            found = [other.folder_name(c) for c in _cycles_at(self.path, other)]
            if found:
                return (f"no cycle folder matches {mine}, but {len(found)} match {label} (e.g. {found[0]}): "
                        f"pass config=VanillaConfig({label}) (pychro {option})"), True
        inner = [name for name in names if os.path.isdir(os.path.join(self.path, name))
                 and any(_cycles_at(os.path.join(self.path, name), c) for c in layouts)]
        if inner:
            return (f"not a journal but a folder of journals: {', '.join(inner[:_SHOWN])} "
                    f"{'is a journal' if len(inner) == 1 else 'are journals'}; give one of them"), True
        shown = ", ".join(names[:_SHOWN]) + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
        return f"not a journal: no cycle folder matches {mine} (found {shown})", False

    def end_index(self) -> int | None:
        """Index one past the last committed message of the newest non-empty cycle (None when empty)."""
        for cycle in reversed(self.cycles()):
            n = self.count(cycle)
            if n:
                return self.config.index_of(cycle, n)
        return None

    def first_index(self) -> int | None:
        for cycle in self.cycles():
            if self.count(cycle):
                return self.config.index_of(cycle, 0)
        return None

    def scan(self, schema: Any, **options: Any) -> Any:
        """This journal as a lazy Arrow stream (:func:`pychro.scan`): for DuckDB, polars or pyarrow.

        Examples
        --------
        >>> j = pychro.open(path).scan("ts:timestamp_ms,px:float64")   # doctest: +SKIP
        >>> duckdb.sql("SELECT avg(px) FROM j")                        # doctest: +SKIP
        """
        from .frames.interchange import scan

        return scan(self.path, schema, config=options.pop("config", self.config), **options)

    def cycle_infos(self) -> list[CycleInfo]:
        """One :class:`CycleInfo` per cycle folder, oldest first."""
        out = []
        for cycle in self.cycles():
            folder = self.cycle_path(cycle)
            n = self.count(cycle)
            out.append(
                CycleInfo(
                    cycle=cycle,
                    folder=os.path.relpath(folder, self.path),
                    start=self.config.cycle_datetime(cycle),
                    messages=n,
                    index_files=len(self.index_files(cycle)),
                    data_files=len(self.data_files(cycle)),
                    bytes_on_disk=_disk_usage(folder),
                    first_index=self.config.index_of(cycle, 0) if n else None,
                    last_index=self.config.index_of(cycle, n - 1) if n else None,
                )
            )
        return out

    # -- thread-id bits ------------------------------------------------------------------------------
    def detect_thread_id_bits(self, config: VanillaConfig | None = None) -> int | None:
        """Thread-id bits under which sampled index entries all name existing data files, else None.

        Checks the newest cycles first; ambiguous results prefer this host's default.
        """
        cfg = config or self.config
        for cycle in reversed(self.cycles(cfg)):
            folder = os.path.join(self.path, *cfg.folder_name(cycle).split("/"))
            listing = _listdir_inodes(folder)
            # The answer depends only on which data files the entries name (entries into one file share all the
            # bits above the offset), so it holds while the folder holds the same files and index files: kept for
            # the next read (a read of a few rows spent a third of its time here)
            key = (os.path.abspath(folder), cfg.data_block_size, cfg.index_block_size, frozenset(listing))
            matches = _DETECTED.get(key)
            if matches is None:
                names = [entry[0] for entry in listing]
                present = {t for t in map(L.parse_data_file_name, names) if t is not None}
                entries = _sample_entries(folder, names, cfg.index_block_size)
                if not entries or not present:
                    continue
                matches = []
                for bits in range(1, 33):
                    try:
                        codec = L.EntryCodec(bits, cfg.data_block_size)
                    except ValueError:
                        continue
                    if all(codec.unpack(e)[:2] in present for e in entries):
                        matches.append(bits)
                if not matches:
                    return None
                if len(_DETECTED) >= _DETECTED_MAX:
                    _DETECTED.clear()
                _DETECTED[key] = matches
            host = L.host_thread_id_bits()  # (may differ between calls: chosen each time, kept matches or not)
            return host if host in matches else matches[0]
        return None

    def missing_data_hint(self) -> str:
        """A sentence for errors about a missing data file: what thread-id bits the entries suggest."""
        hint = self.block_size_hint("data")
        if hint:
            return hint[2:]
        detected = self.detect_thread_id_bits(self.config.with_thread_id_bits(self.config.thread_id_bits or 16))
        if detected is not None and detected != self.config.thread_id_bits:
            return (
                f"thread_id_bits={self.config.thread_id_bits} looks wrong for this journal: its index entries "
                f"match its data files with thread_id_bits={detected}"
            )
        return "the data file was deleted, not copied, or the journal is damaged"

    def cycle(self, when: int | _dt.date | _dt.datetime) -> Cycle:
        """One cycle, by cycle number, date or datetime."""
        cycle = when if isinstance(when, int) else self.config.cycle_of(when)
        return Cycle(self, cycle)

    def _repr_html_(self) -> str:
        info = self.info()
        rows = "".join(
            f"<tr><td>{c.folder}</td><td>{c.cycle}</td><td>{c.start:%Y-%m-%d %H:%M:%S}</td>"
            f"<td style='text-align:right'>{c.messages:,}</td><td style='text-align:right'>{c.index_files}</td>"
            f"<td style='text-align:right'>{c.data_files}</td>"
            f"<td style='text-align:right'>{_human(c.bytes_on_disk)}</td>"
            f"<td>{_hex(c.first_index)}</td><td>{_hex(c.last_index)}</td></tr>"
            for c in info["cycles"]
        )
        bits = f"{info['thread_id_bits']} ({'detected' if info['thread_id_bits_detected'] else 'host default'})"
        return (
            f"<div><b>pychro.Journal</b> <code>{_esc(self.path)}</code><br>"
            f"{len(info['cycles'])} cycles, {info['messages']:,} messages, {_human(info['bytes_on_disk'])} on disk, "
            f"thread-id bits {bits}, index range {_hex(info['first_index'])} .. {_hex(info['end_index'])} (end)"
            "<table><thead><tr><th>folder</th><th>cycle</th><th>start (UTC)</th><th>messages</th>"
            "<th>index files</th><th>data files</th><th>on disk</th><th>first index</th><th>last index</th>"
            f"</tr></thead><tbody>{rows}</tbody></table></div>"
        )

    def info(self) -> dict[str, Any]:
        """Summary used by ``pychro info`` and the notebook display."""
        infos = self.cycle_infos()
        return {
            "path": self.path,
            "thread_id_bits": self.config.thread_id_bits,
            "thread_id_bits_detected": self.thread_id_bits_detected,
            "cycles": infos,
            "messages": sum(c.messages for c in infos),
            "bytes_on_disk": sum(c.bytes_on_disk for c in infos),
            "first_index": self.first_index(),
            "end_index": self.end_index(),
        }


class Cycle:
    """One cycle folder of a journal (``Journal.cycle(date)``)."""

    def __init__(self, journal: Journal, cycle: int) -> None:
        self.journal = journal
        self.cycle = cycle
        self.path = journal.cycle_path(cycle)

    def __repr__(self) -> str:
        return (
            f"<pychro.Cycle {self.journal.config.folder_name(self.cycle)} cycle={self.cycle} "
            f"messages={self.journal.count(self.cycle)}>"
        )

    def info(self) -> CycleInfo:
        for info in self.journal.cycle_infos():
            if info.cycle == self.cycle:
                return info
        cfg = self.journal.config
        return CycleInfo(
            self.cycle, cfg.folder_name(self.cycle), cfg.cycle_datetime(self.cycle), 0, 0, 0, 0, None, None
        )

    def _repr_html_(self) -> str:
        c = self.info()
        return (
            f"<div><b>pychro.Cycle</b> <code>{_esc(c.folder)}</code> "
            f"(cycle {c.cycle}, starts {c.start:%Y-%m-%d %H:%M:%S} UTC)<br>"
            f"{c.messages:,} messages in {c.index_files} index files and {c.data_files} data files, "
            f"{_human(c.bytes_on_disk)} on disk, index range {_hex(c.first_index)} .. {_hex(c.last_index)}</div>"
        )

    def index_array(self) -> Any:
        """Escape hatch: the committed entries of this cycle as one ``numpy.uint64`` array (a copy)."""
        import numpy as np

        cfg = self.journal.config
        parts = []
        remaining = self.journal.count(self.cycle)
        for n in self.journal.index_files(self.cycle):
            if remaining <= 0:
                break
            with open(self.journal.index_path(self.cycle, n), "rb") as fh:
                take = min(remaining, cfg.slots_per_index_file)
                parts.append(np.frombuffer(fh.read(take * L.ENTRY_SIZE), dtype="<u8"))
                remaining -= take
        return np.concatenate(parts) if parts else np.zeros(0, dtype="<u8")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _hex(value: int | None) -> str:
    return "-" if value is None else f"{value:#x}"


def _esc(text: str) -> str:
    import html

    return html.escape(text)


def _block_size_hint(kind: str, sizes: set[int], configured: int, minimum: int) -> str:
    """'every <kind> file is N bytes: ... <kind>_block_size=N' when all the files share one other power-of-two
    size (at least ``minimum``), else ''."""
    if len(sizes) != 1:
        return ""
    (size,) = sizes
    if size == configured or size < minimum or size & (size - 1):
        return ""
    return (f"every {kind} file is {size} bytes: the journal was probably written with "
            f"{kind}_block_size={size} (pass config=VanillaConfig({kind}_block_size={size}), "
            f"pychro --{kind}-block-size {size})")


def _size(path: str) -> int:
    """A file's size, -1 when it does not exist."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


def _listdir_inodes(path: str) -> list[tuple[str, int, int]]:
    """(name, inode, mtime in ns or 0) of each entry of a folder: inodes come with the listing (a journal made
    again in the same place has other inodes), and the index files' mtimes tell a file copied over one in place
    (same inode); [] when the folder is gone."""
    return _scan(path, lambda e: (e.name, e.inode(), _mtime_ns(e) if e.name.startswith("index-") else 0))


def _mtime_ns(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat().st_mtime_ns
    except OSError:  # gone since listed
        return -1


def _subfolders(path: str) -> list[tuple[str, bool]]:
    """(name, is a folder) of each entry (the listing tells, without a stat per entry but for symlinks)."""
    return _scan(path, lambda e: (e.name, _is_dir(e)))


def _scan(path: str, describe: Callable[[os.DirEntry[str]], T]) -> list[T]:
    """``describe`` of each entry of a folder; [] when it is gone (see :func:`_unlisted`)."""
    try:
        with os.scandir(path) as it:
            return [describe(e) for e in it]
    except OSError as exc:
        return _unlisted(exc, path)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError as exc:
        return _unlisted(exc, path)


def _unlisted(exc: OSError, path: str) -> list[Any]:
    """A folder that could not be listed: none when it is gone; a loop of symlinks as JournalNotFoundError."""
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return []
    if exc.errno == errno.ELOOP:
        raise JournalNotFoundError("the journal path is a symlink that loops", path=path) from None
    raise exc


def _cycles_at(path: str, cfg: VanillaConfig) -> list[int]:
    """Sorted cycles of the folders under ``path`` whose names ``cfg`` writes (others are ignored)."""
    found: set[int] = set()
    for rel in _walk_folders(path, cfg.folder_depth):
        cycle = cfg.cycle_of_folder(rel)
        if cycle is not None:
            found.add(cycle)
    return sorted(found)


def _walk_folders(base: str, depth: int, prefix: str = "") -> list[str]:
    """Relative paths of the folders exactly ``depth`` levels below ``base``."""
    out = []
    for name, is_dir in _subfolders(os.path.join(base, prefix) if prefix else base):
        rel = f"{prefix}/{name}" if prefix else name
        if not is_dir:
            continue
        if depth == 1:
            out.append(rel)
        else:
            out.extend(_walk_folders(base, depth - 1, rel))
    return out


def _sample_entries(folder: str, names: list[str], index_block_size: int) -> list[int]:
    entries: list[int] = []
    for n in sorted(i for i in map(L.parse_index_file_name, names) if i is not None)[:2]:
        try:
            mf = MappedFile.open_read(os.path.join(folder, L.index_file_name(n)), index_block_size)
        except (JournalNotFoundError, FormatError):  # gone, or not a regular file: sample elsewhere
            continue
        try:
            count = mf.count_filled()
            step = max(1, count // _DETECT_SAMPLE)
            # read with pread, not through the map: 64 slots on 64 pages faulted in cost 0.2 ms
            fd = os.open(mf.path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                for i in range(0, count, step):
                    slot = os.pread(fd, L.ENTRY_SIZE, i * L.ENTRY_SIZE)
                    if len(slot) == L.ENTRY_SIZE:
                        entries.append(int.from_bytes(slot, "little"))
            finally:
                os.close(fd)
        except OSError:  # gone since mapped: sample elsewhere
            continue
        finally:
            mf.close()
    return entries


def _disk_usage(folder: str) -> int:
    total = 0
    for name in _listdir(folder):
        try:
            total += os.stat(os.path.join(folder, name)).st_blocks * 512
        except OSError:
            pass
    return total


def open_journal(
    path: str | os.PathLike[str], config: VanillaConfig | None = None, thread_id_bits: int | None = None
) -> Journal:
    """Open a journal for inspection (``pychro.open``); in a notebook it displays as a summary table.

    Examples
    --------
    >>> j = pychro.open(path)      # doctest: +SKIP
    >>> j.cycle_infos()[0].messages  # doctest: +SKIP
    10
    """
    journal = Journal(path, config, thread_id_bits)
    journal.check_layout()
    return journal
