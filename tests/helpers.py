"""Test helpers: independent reference encoders (written from vanilla-format.md §7, not from pychro's code),
a controllable clock, raw views of journal files, sparse journal copies and before/after snapshots.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import struct
import subprocess
from pathlib import Path

MASK64 = (1 << 64) - 1


# -- reference encodings (§7) ----------------------------------------------------------------------------
def _groups7(n: int) -> list[int]:
    """7-bit groups of a non-negative int, least significant first, at least one group."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(n & 0x7F)
        n >>= 7
    return out


def ref_stop_bit(value: int) -> bytes:
    """writeStopBit as §7 describes it: groups of n (or of ~n, flagged and 0x00-terminated, for n < 0)."""
    if value < 0:
        groups = _groups7(~value)
        return bytes(g | 0x80 for g in groups) + b"\x00"
    groups = _groups7(value)
    return bytes(g | 0x80 for g in groups[:-1]) + bytes(groups[-1:])


def ref_read_stop_bit(data: bytes, pos: int = 0) -> tuple[int, int]:
    """readStopBit as §7 describes it -> (signed 64-bit value, bytes used)."""
    acc = 0
    shift = 0
    i = pos
    while data[i] & 0x80:
        acc |= (data[i] & 0x7F) << shift
        shift += 7
        i += 1
    last = data[i]
    if last == 0 and i > pos:
        acc = ~acc & MASK64
    else:
        acc |= last << shift
    acc &= MASK64
    if acc >= 1 << 63:
        acc -= 1 << 64
    return acc, i + 1 - pos


def ref_stop_bit_in(body: bytes, pos: int) -> tuple[int, int] | None:
    """The stop-bit value at ``pos`` of a message body -> (value, bytes used), or None when no group ends within
    10 bytes and inside the body, or a 10th byte ends a positive value (Java's readStopBit throws on it: "Cannot
    read more than 9 stop bits of positive value"): what a reader must call a mismatch."""
    run = 0
    while pos + run < len(body) and body[pos + run] & 0x80 and run < 10:
        run += 1
    if run >= 10 or pos + run >= len(body) or (run == 9 and body[pos + run]):
        return None
    return ref_read_stop_bit(body, pos)


def write_bodies(path: Path | str, bodies: list[bytes], now_ms: int) -> Path:
    """A journal of these message bodies, in order, written by the row writer with its clock at ``now_ms``."""
    from pychro import VanillaChronicleWriter

    with VanillaChronicleWriter(str(path), clock=lambda: now_ms) as chron:
        a = chron.get_appender()
        for body in bodies:
            a.write_bytes(body)
            a.finish()
    return Path(path)


def _utf16_units(text: str) -> list[int]:
    raw = text.encode("utf-16-le", "surrogatepass")
    return [raw[i] | raw[i + 1] << 8 for i in range(0, len(raw), 2)]


def ref_java_text(text: str) -> bytes:
    """Java's writeUTFΔ text bytes: every UTF-16 code unit on its own, in 1, 2 or 3 bytes."""
    out = bytearray()
    for u in _utf16_units(text):
        if u < 0x80:
            out.append(u)
        elif u < 0x800:
            out += bytes((0xC0 | u >> 6, 0x80 | u & 0x3F))
        else:
            out += bytes((0xE0 | u >> 12, 0x80 | (u >> 6) & 0x3F, 0x80 | u & 0x3F))
    return bytes(out)


def ref_decode_java_text(data: bytes) -> str:
    """Inverse of :func:`ref_java_text` (also takes C0 80 as U+0000, as Java's reader does)."""
    units = []
    i = 0
    while i < len(data):
        b = data[i]
        if b < 0x80:
            units.append(b)
            i += 1
        elif b >> 5 == 0b110:
            units.append((b & 0x1F) << 6 | data[i + 1] & 0x3F)
            i += 2
        elif b >> 4 == 0b1110:
            units.append((b & 0x0F) << 12 | (data[i + 1] & 0x3F) << 6 | data[i + 2] & 0x3F)
            i += 3
        else:
            raise ValueError(f"bad lead byte {b:#x}")
    return b"".join(struct.pack("<H", u) for u in units).decode("utf-16-le", "surrogatepass")


def ref_utf_delta(text: str | None) -> bytes:
    """writeUTFΔ: stop-bit byte length + text; null is stop-bit(-1)."""
    if text is None:
        return ref_stop_bit(-1)
    raw = ref_java_text(text)
    return ref_stop_bit(len(raw)) + raw


# Every field kind the row API has, with the reference bytes Java writes for it (§7 table).
REF_FIXED = {
    "byte": "<b",
    "unsigned_byte": "<B",
    "short": "<h",
    "unsigned_short": "<H",
    "int": "<i",
    "unsigned_int": "<I",
    "long": "<q",
    "float": "<f",
    "double": "<d",
}


def ref_field(kind: str, value: object) -> bytes:
    if kind in REF_FIXED:
        return struct.pack(REF_FIXED[kind], value)
    if kind == "boolean":
        return b"Y" if value else b"\x00"
    if kind == "char":
        return struct.pack("<H", ord(value) if isinstance(value, str) else value)  # type: ignore[arg-type]
    if kind == "stop_bit":
        return ref_stop_bit(value)  # type: ignore[arg-type]
    if kind == "string":
        return ref_utf_delta(value)  # type: ignore[arg-type]
    if kind == "utf":
        raw = ref_java_text(value)  # type: ignore[arg-type]
        return struct.pack("<H", len(raw)) + raw
    if kind == "int24":
        return struct.pack("<i", value)[:3]
    if kind == "int48":
        return struct.pack("<q", value)[:6]
    raise KeyError(kind)


def sample_text(cmd: int) -> str:
    """The string field of message ``cmd`` of the Java 3.4.0 journal (tests/data/java/README.md)."""
    n = cmd % 10240
    return (f"{n}=" + "0123456789" * (n // 10 + 1))[:n]


def sample_fields(cmd: int) -> list[tuple[str, object]]:
    """(kind, value) fields of message ``cmd`` of the Java 3.4.0 journal, per tests/data/java/README.md.

    Kinds are row-API names: ``write_<kind>`` / ``read_<kind>``.
    """
    fields: list[tuple[str, object]] = [("int", cmd)]
    for j in range(cmd % 10):
        kind = j % 5
        if kind == 0:
            fields.append(("double", 1.0 / cmd))
        elif kind == 1:
            fields.append(("string", sample_text(cmd)))
        elif kind == 2:
            fields.append(("unsigned_byte", cmd % 256))
        elif kind == 3:
            fields.append(("long", cmd << 32))
        else:
            fields.append(("char", "\ud1a9"))
    return fields


def sample_body(cmd: int) -> bytes:
    return b"".join(ref_field(kind, value) for kind, value in sample_fields(cmd))


def align4(n: int) -> int:
    return (n + 3) // 4 * 4


# -- clock -----------------------------------------------------------------------------------------------
class FakeClock:
    """An epoch-ms clock the test moves by hand (passed as ``clock=``)."""

    def __init__(self, when: dt.datetime | int) -> None:
        self.ms = when if isinstance(when, int) else to_ms(when)

    def __call__(self) -> int:
        return self.ms

    def set(self, when: dt.datetime | int) -> None:
        self.ms = when if isinstance(when, int) else to_ms(when)

    def advance(self, ms: int) -> None:
        self.ms += ms


def to_ms(when: dt.datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


# -- raw file access -------------------------------------------------------------------------------------
def read_slots(index_file: Path | str, n: int) -> list[int]:
    """The first ``n`` u64 slots of an index file."""
    with open(index_file, "rb") as fh:
        raw = fh.read(8 * n)
    return list(struct.unpack(f"<{len(raw) // 8}Q", raw))


def read_bytes(path: Path | str, offset: int, n: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(n)


def header_at(path: Path | str, pos: int) -> int:
    return struct.unpack("<i", read_bytes(path, pos, 4))[0]


def walk_records(path: Path | str, limit: int = 1 << 20) -> list[tuple[int, int]]:
    """(header position, body length) of the records at the start of a data file, following §4 to a 0 header."""
    data = read_bytes(path, 0, limit)
    out = []
    pos = 0
    while pos + 4 <= len(data):
        hdr = struct.unpack_from("<i", data, pos)[0]
        if hdr == 0:
            break
        length = ~hdr
        out.append((pos, length))
        pos = align4(pos + 4 + length)
    return out


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# -- copies and snapshots --------------------------------------------------------------------------------
def copy_journal(src: Path, dst: Path) -> Path:
    """Copy a journal keeping its (mostly zero) files sparse."""
    if shutil.which("cp"):
        subprocess.run(["cp", "-a", "--sparse=always", str(src), str(dst)], check=True)
    else:  # pragma: no cover
        shutil.copytree(src, dst)
    return dst


def _digest(path: Path, limit: int | None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        remaining = limit if limit is not None else 1 << 62
        while remaining > 0:
            chunk = fh.read(min(remaining, 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            remaining -= len(chunk)
    return h.hexdigest()


def snapshot(root: Path, data_prefix: int = 1 << 20) -> dict[str, tuple[object, ...]]:
    """Every path under ``root`` with kind, size, mode, mtime; sha256 of index files and of data-file prefixes."""
    out: dict[str, tuple[object, ...]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel] = ("dir", st.st_mode, st.st_mtime_ns)
        else:
            limit = None if p.name.startswith("index-") else data_prefix
            out[rel] = ("file", st.st_size, st.st_mode, st.st_mtime_ns, _digest(p, limit))
    st = root.stat()
    out["."] = ("dir", st.st_mode, st.st_mtime_ns)
    return out


def chmod_read_only(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        os.chmod(p, os.stat(p).st_mode & ~0o222)


def chmod_writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        os.chmod(p, os.stat(p).st_mode | 0o200)


# -- concurrency workers (module-level so 'spawn' children can import them) --------------------------------
def concurrency_payload(w: int, seq: int) -> str:
    """The string of message ``seq`` of writer ``w``: ids in the text, a varying length, one non-ASCII char."""
    return f"w{w}:s{seq}:" + "\u00e9" * (seq % 7) + "x" * (seq * 7919 % 61)


CONCURRENCY_ROUNDS = 20  # the writers meet at a barrier this many times, so that they interleave whatever the load


def concurrency_writer(
    path: str, config_kwargs: dict[str, object], writer_ids: list[int], n: int, start: object, clock_ms: int,
    rounds: object,
) -> None:
    """One process: a writer shared by one thread per writer id; each writes (id, seq, payload) n times.

    Every writer thread waits at the ``rounds`` barrier after each n / CONCURRENCY_ROUNDS messages: the index then
    holds every writer's messages of round r before any of round r + 1, so consecutive slots come from different
    writers at least (writers - 1) times a round, even when the scheduler runs one thread for long slices.
    """
    import threading

    from pychro import VanillaChronicleWriter, VanillaConfig

    config = VanillaConfig(**config_kwargs)  # type: ignore[arg-type]
    writer = VanillaChronicleWriter(path, config=config, clock=lambda: clock_ms)
    errors: list[str] = []

    def run(w: int) -> None:
        try:
            start.wait(60)  # type: ignore[attr-defined]  # a Barrier: every writer starts at once
            every = max(1, n // CONCURRENCY_ROUNDS)
            for seq in range(n):
                if seq and seq % every == 0:
                    rounds.wait(60)  # type: ignore[attr-defined]
                appender = writer.get_appender()
                appender.write_int(w)
                appender.write_int(seq)
                appender.write_string(concurrency_payload(w, seq))
                appender.finish()
        except BaseException as exc:  # noqa: BLE001 - reported through the exit code
            errors.append(f"writer {w}: {exc!r}")

    threads = [threading.Thread(target=run, args=(w,)) for w in writer_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    if errors:
        raise SystemExit("; ".join(errors))


def concurrency_tail(
    path: str, config_kwargs: dict[str, object], writers: int, n: int, start: object, clock_ms: int, out: object
) -> None:
    """Tail the journal with a polling reader until writers * n messages arrived; report what was wrong."""
    from pychro import VanillaChronicleReader, VanillaConfig

    next_seq = [0] * writers
    problems: list[str] = []
    total = 0
    indices_ok = True
    last_index = -1
    with VanillaChronicleReader(
        path, config=VanillaConfig(**config_kwargs), polling_interval=0.0005, clock=lambda: clock_ms
    ) as reader:
        start.wait(60)  # type: ignore[attr-defined]
        while total < writers * n:
            excerpt = reader.next_reader()
            total += 1
            if excerpt.index != last_index + 1 and last_index >= 0:
                indices_ok = False
            last_index = excerpt.index  # type: ignore[assignment]
            try:
                w, seq, text = excerpt.read_int(), excerpt.read_int(), excerpt.read_string()
                ok = 0 <= w < writers and seq == next_seq[w] and text == concurrency_payload(w, seq)
                ok = ok and excerpt.remaining() == 0
            except Exception as exc:  # noqa: BLE001 - a damaged message is a finding, not a crash
                ok, w, seq, text = False, -1, -1, repr(exc)
            if ok:
                next_seq[w] += 1
            elif len(problems) < 10:
                problems.append(f"index {excerpt.index:#x}: w={w} seq={seq} text={text!r}")
    report = {"total": total, "next_seq": next_seq, "problems": problems, "indices_ok": indices_ok}
    out.put(report)  # type: ignore[attr-defined]
