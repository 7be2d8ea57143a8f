r"""A CSV file's bytes as pyarrow's CSV reader is given them for an import (:class:`Source`), and what can be told
of a file's end: whether it ends inside a quoted value (cut short in a copy), its empty lines before the header.
"""

from __future__ import annotations

import io
import mmap
import os
import re
import stat
import warnings
import zlib
from typing import Any

from ..errors import PychroWarning

__all__ = ["Source", "blank_lines", "cut_short", "ends_inside_quotes"]

SEGMENT = 1 << 16  # bytes of a piece whose CRC a later pass compares

# a CSV file as tokens: a quoted value (a quote opens one at a field's start only, as in pyarrow's reader;
# group 1 is empty when the file ends before its closing quote), a run without quotes, or a literal quote
_TOKENS = re.compile(rb'(?<![^,\r\n])"(?:[^"]+|"")*("|\Z)|[^"]+|"')


class Source(io.RawIOBase):
    r"""A CSV file as pyarrow's reader reads it, up to ``limit`` bytes (its size when the import began: rows
    appended while it runs are not read by one pass and not the other). No read ends on a ``\r``: Arrow drops
    the ``\n`` of a quoted ``\r\n`` when a block ends between the two (apache/arrow#51368; silent). A file whose
    last line has no line break gets one (pyarrow took a lone header line for an empty file). The quotes are
    counted: an odd count at the end may be a file cut inside a quoted value (:meth:`check_end`)."""

    def __init__(self, path: str, limit: int | None = None, crcs: list[int] | None = None) -> None:
        super().__init__()
        self.path = path
        # CRCs of the file's SEGMENT-byte pieces as first read; a later read finds a piece that changed (a file
        # rewritten during the import) before pyarrow gets it: a pass never hands on rows the first did not see
        self._crcs = [] if crcs is None else crcs
        self._piece, self._crc = 0, 0  # the piece being read, and the CRC of its bytes so far
        self._file = _open_regular(path)  # (closed by close(): pyarrow closes us)
        size = os.fstat(self._file.fileno()).st_size
        self._left = self._end = size if limit is None else limit
        if size < self._left:
            self._file.close()
            raise ValueError(f"{path} shrank while it was being imported")
        self._cr = b""  # a "\r" held back for the next read
        self.quotes = 0
        self.unterminated = False  # the last line had no line break (one was added)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = self._left if size < 0 else min(self._left, max(1, size - len(self._cr)))
        got = self._file.read(want) if want > 0 else b""
        self._left -= len(got)
        if len(got) < want:
            raise ValueError(f"{self.path} shrank while it was being imported")
        self._check(got)
        data = self._cr + got
        self._cr = b""
        if self._left == 0:  # the end: the last line gets a line break (in this read: pyarrow wants the header
            if data and data[-1:] not in (b"\r", b"\n"):  # line within its first block)
                if os.fstat(self._file.fileno()).st_size > self._end:  # before pyarrow has the torn line
                    raise ValueError(f"{self.path}: its last line has no line break and the file has grown since "
                                     "the import began: that line was being written; import again when the file "
                                     "is complete")
                self.unterminated = True
                data += b"\n"
        elif data.endswith(b"\r"):
            data, self._cr = data[:-1], b"\r"
        self.quotes += data.count(b'"')
        return data

    def _check(self, got: bytes) -> None:
        at = 0
        while at < len(got):
            room = SEGMENT - (self._end - self._left - len(got) + at) % SEGMENT
            part = got[at : at + room]
            self._crc = zlib.crc32(part, self._crc)
            at += len(part)
            if len(part) == room or (self._left == 0 and at == len(got)):  # a piece is complete
                if self._piece == len(self._crcs):
                    self._crcs.append(self._crc)
                elif self._crcs[self._piece] != self._crc:
                    raise ValueError(f"{self.path} changed while it was being imported (its bytes from "
                                     f"{self._piece * SEGMENT} on differ from those read before)")
                self._piece, self._crc = self._piece + 1, 0

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()

    def check_end(self) -> None:
        """After the whole file was read: a ValueError if it ends inside a quoted value; a warning if its last
        line has no line break (a file cut short in a copy looks so: to_csv ends every line)."""
        if self.quotes % 2 and ends_inside_quotes(self.path, self._end):
            raise cut_short(self.path)
        if self.unterminated:
            warnings.warn(f"{self.path}: its last line has no line break; if the file was cut short, that line is "
                          "incomplete", PychroWarning, stacklevel=2)


def _open_regular(path: str) -> io.FileIO:
    """``path`` opened for reading, if it is a regular file (a FIFO would block the open, then the import)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # (no effect on a regular file's reads)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"{path} is not a regular file")
    return io.FileIO(fd, "rb", closefd=True)


def ends_inside_quotes(path: str, size: int | None = None) -> bool:
    """Whether the file's first ``size`` bytes (default all) end inside a quoted value (a scan of them all: done
    when their quotes are odd only; a literal quote inside an unquoted value elsewhere, 12" ruler, can hide one)."""
    with open(path, "rb") as fh:
        now = os.fstat(fh.fileno()).st_size
        end = now if size is None else min(size, now)
        if end == 0:
            return False
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            last = None
            for last in _TOKENS.finditer(data, 0, end):  # noqa: B007 (the last token is the one wanted)
                pass
            return last is not None and last.group(1) == b""


def cut_short(path: str) -> ValueError:
    return ValueError(f"{path} ends inside a quoted value (its last value has no closing quote): was the file cut "
                      "short?")


def blank_lines(path: str) -> int:
    r"""The number of empty lines at the start of the file (``\r\n``, ``\n`` or ``\r`` each)."""
    with open(path, "rb") as fh:
        head = b""
        while True:
            chunk = fh.read(1 << 16)
            head += chunk
            if not chunk or head.lstrip(b"\r\n"):
                break
    lead = head[: len(head) - len(head.lstrip(b"\r\n"))]
    return len(re.findall(rb"\r\n|\r|\n", lead))
