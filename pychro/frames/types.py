"""Message types: journals whose messages start with a common header and a tag field that picks the rest.

A feed handler writes trades, quotes and heartbeats into one journal, told apart by a type field near the start
of each message. :class:`MessageTypes` describes such a journal: the header fields every message starts with,
the tag (one of them), and per tag value a type name and the fields that follow the header. Each type's full
wire schema is the header then its own fields; its table has the header fields except the tag, then its own.
"""

from __future__ import annotations

import json
import keyword
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .schema import STRING, UTF, Field, Schema, SchemaLike

__all__ = ["MAX_TYPES", "TYPES_VERSION", "MessageTypes"]

TYPES_VERSION = 1
MAX_TYPES = 32767
_INT_RANGE = {
    "int8": (-(1 << 7), (1 << 7) - 1), "int16": (-(1 << 15), (1 << 15) - 1), "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1), "uint8": (0, (1 << 8) - 1), "uint16": (0, (1 << 16) - 1),
    "uint32": (0, (1 << 32) - 1), "stopbit": (-(1 << 63), (1 << 63) - 1),
}


class MessageTypes:
    """The message types of a journal: a common header, the tag field in it, and each type's own fields.

    Parameters
    ----------
    header : schema-like
        The fields every message starts with (a compact string, pairs, a :class:`~pychro.Schema`...).
    tag : str
        The header field whose value picks the type: an integer field (``int8`` ... ``uint32``, ``stopbit``) or a
        text field (``string``, ``utf``).
    types : mapping
        ``{tag value: (type name, fields after the header)}``; the fields may be ``""`` (a type that is only its
        header, such as a heartbeat).

    Raises
    ------
    ValueError
        A tag that is not a header field or not an integer or text field, a tag value outside the tag field's
        range or of the wrong kind, a type name that is not an identifier or is used twice, a field name of a
        type that is also a header field, no types.
    TypeError
        Arguments of the wrong kind.

    Examples
    --------
    >>> types = MessageTypes(
    ...     header="ts:timestamp_ns,type:int8",
    ...     tag="type",
    ...     types={1: ("trade", "sym:string,px:float64,qty:int32"),
    ...            2: ("quote", "sym:string,bid:float64,ask:float64"),
    ...            3: ("heartbeat", "")},
    ... )
    >>> types.names
    ['trade', 'quote', 'heartbeat']
    >>> str(types.schema("trade"))
    'ts:timestamp_ns,type:int8,sym:string,px:float64,qty:int32'
    >>> types.columns("trade")
    ['ts', 'sym', 'px', 'qty']
    >>> MessageTypes.from_json(types.to_json()) == types
    True
    """

    __slots__ = ("header", "tag", "_by_value", "_by_name")

    def __init__(self, header: SchemaLike, tag: str, types: Mapping[Any, tuple[str, SchemaLike]]) -> None:
        self.header = Schema(header)
        if not isinstance(tag, str):
            raise TypeError(f"tag must be the name of a header field (a str), got {type(tag).__name__}")
        if tag not in self.header:
            raise ValueError(f"tag {tag!r} is not a header field (header fields: {', '.join(self.header.names)})")
        self.tag = tag
        tag_type = self.header[tag].type
        text = tag_type.kind in (STRING, UTF)
        if not text and tag_type.name not in _INT_RANGE:
            raise ValueError(f"the tag field {tag!r} is {tag_type.name}; a tag is an integer field (int8..uint32, "
                             "stopbit) or a text field (string, utf)")
        if not isinstance(types, Mapping) or not types:
            raise ValueError("types must be a non-empty dict {tag value: (type name, fields)}")
        if len(types) > MAX_TYPES:
            raise ValueError(f"{len(types)} message types: at most {MAX_TYPES} (the decoder numbers them in 16 bits)")
        self._by_value: dict[Any, tuple[str, Schema]] = {}
        self._by_name: dict[str, tuple[Any, Schema]] = {}
        for value, spec in types.items():
            value = _check_value(value, tag, tag_type.name, text)
            if not isinstance(spec, (tuple, list)) or len(spec) != 2:
                raise TypeError(f"types[{value!r}] must be a (type name, fields) pair, got {spec!r}")
            name, fields = spec
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                raise ValueError(f"type name {name!r} (tag {value!r}) must be an identifier")
            if name in self._by_name:
                raise ValueError(f"type name {name!r} is used for tags {self._by_name[name][0]!r} and {value!r}")
            if value in self._by_value:
                raise ValueError(f"tag value {value!r} is listed twice")
            own = _own_fields(fields, name, self.header)
            clash = [f.name for f in own if _pair_name(f) is not None and f.name in self.header]
            if clash:
                raise ValueError(f"type {name!r}: field {clash[0]!r} is also a header field")
            full = Schema([(_pair_name(f), f.type.name) for f in (*self.header.fields, *own)])
            self._by_value[value] = (name, full)
            self._by_name[name] = (value, full)

    # -- lookups --------------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Type names, in the order given."""
        return list(self._by_name)

    @property
    def values(self) -> list[Any]:
        """Tag values, in the order given."""
        return list(self._by_value)

    def value(self, name: str) -> Any:
        """The tag value of a type."""
        return self._lookup(name)[0]

    def schema(self, name: str) -> Schema:
        """The full wire schema of a type: the header fields, then its own."""
        return self._lookup(name)[1]

    def columns(self, name: str) -> list[str]:
        """The columns of a type's table: the header's except the tag, then its own."""
        return [c for c in self.schema(name).names if c != self.tag]

    def name_of(self, value: Any) -> str | None:
        """The type name of a tag value, or None when it is not listed."""
        got = self._by_value.get(value)
        return None if got is None else got[0]

    def _lookup(self, name: str) -> tuple[Any, Schema]:
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            raise KeyError(f"no message type {name!r} (types: {', '.join(self._by_name)})") from None

    @property
    def tag_is_text(self) -> bool:
        return self.header[self.tag].type.kind in (STRING, UTF)

    # -- comparison and serialisation ------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MessageTypes):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        listed = ", ".join(f"{v!r}: {n}" for v, (n, _) in self._by_value.items())
        return f"MessageTypes(header={str(self.header)!r}, tag={self.tag!r}, types={{{listed}}})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"version": 1, "header": ..., "tag": ..., "types": [{"tag", "name", "fields"}]}``."""
        return {
            "version": TYPES_VERSION,
            "header": str(self.header),
            "tag": self.tag,
            "types": [
                {"tag": value, "name": name, "fields": _own_text(schema, len(self.header.fields))}
                for value, (name, schema) in self._by_value.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> MessageTypes:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping):
            got = json.dumps(data)[:60]
            raise ValueError(f"message types are an object with 'header', 'tag' and 'types', got {got}")
        if not {"header", "tag", "types"} <= set(data):
            raise ValueError("message types need 'header', 'tag' and 'types'")
        version = data.get("version", TYPES_VERSION)
        if version != TYPES_VERSION:
            raise ValueError(f"unsupported pychro message types version {version!r} (this pychro reads "
                             f"{TYPES_VERSION})")
        items = data["types"]
        if not isinstance(items, list) or not all(isinstance(t, Mapping) and {"tag", "name"} <= set(t) for t in items):
            raise ValueError("'types' must be a list of {\"tag\", \"name\", \"fields\"} objects")
        bad = [t["tag"] for t in items if not isinstance(t["tag"], (int, str)) or isinstance(t["tag"], bool)]
        if bad:
            raise ValueError(f"a tag value is an int or a str, got {bad[0]!r}")
        return cls(data["header"], data["tag"], {t["tag"]: (t["name"], t.get("fields", "")) for t in items})

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text (what ``--types types.json`` and file metadata hold)."""
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, source: str | bytes | os.PathLike[str]) -> MessageTypes:
        """From JSON text, or from the path of a JSON file (``types.json``)."""
        if isinstance(source, os.PathLike) or (isinstance(source, str) and source.lstrip()[:1] not in ("{", "[")):
            where = f"cannot read message types from {os.fspath(source)!r}"
            try:
                with open(source, encoding="utf-8") as fh:
                    source = fh.read()
            except UnicodeDecodeError as exc:
                raise ValueError(f"{where}: the file is not UTF-8 text (byte {exc.start})") from None
            except (OSError, ValueError) as exc:  # ValueError: a NUL character, which no path holds
                if isinstance(source, str):  # JSON text that is not an object (" null\n", "3"): said as such
                    try:
                        data = json.loads(source)
                    except (ValueError, RecursionError):
                        pass
                    else:
                        return cls.from_dict(data)
                why = exc.strerror if isinstance(exc, OSError) else "neither JSON text nor a path"
                raise ValueError(f"{where}: {why}") from None
        if not isinstance(source, (str, bytes, bytearray)):
            raise TypeError(f"from_json takes JSON text or a path, got {type(source).__name__}")
        try:
            data = json.loads(source)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"message types JSON is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _check_value(value: Any, tag: str, type_name: str, text: bool) -> Any:
    if text:
        if not isinstance(value, str):
            raise TypeError(f"the tag field {tag!r} is text: tag values are str, got {value!r}")
        return str(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"the tag field {tag!r} is {type_name}: tag values are int, got {value!r}")
    value = int(value)  # a numpy integer (from a frame's column) is the same tag as the int
    lo, hi = _INT_RANGE[type_name]
    if not lo <= value <= hi:
        raise ValueError(f"tag value {value} is outside the range of the tag field {tag!r} ({type_name})")
    return value


def _own_fields(fields: SchemaLike, name: str, header: Schema) -> list[Field]:
    if isinstance(fields, str) and not fields.strip():
        return []
    try:
        return list(Schema(fields).fields)
    except ValueError as exc:
        if isinstance(fields, str):  # padding alone ("skip4") is a schema only after the header's fields
            try:
                return list(Schema(f"{header},{fields}").fields[len(header.fields):])
            except ValueError:
                pass
        raise ValueError(f"type {name!r}: {exc}") from None


def _pair_name(f: Field) -> str | None:
    """A field's name for a new schema: None for anonymous padding (named again by its new position)."""
    return None if f.kind == "skip" and f.name.startswith("_skip") else f.name


def _own_text(schema: Schema, skip: int) -> str:
    # item by item, as Schema's own text spells them (a type of padding alone is no Schema by itself)
    return ",".join(f.type.name if _pair_name(f) is None else f"{f.name}:{f.type.name}" for f in schema.fields[skip:])

