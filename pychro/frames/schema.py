"""Schema: the fields of a message, in order, as the frames reader decodes them (vanilla-format.md §7).

One table, :data:`TYPES`, maps each field type name to its wire kind, its size, the numpy dtype of its raw
bytes and the Arrow type of its column; everything else (decoding plans, Arrow schemas, pandas dtypes) is
derived from it. Fixed sizes and dtypes come from :data:`pychro._fields.FIXED`, the table the row API uses.

Importing this module needs only the standard library; pyarrow is imported by the methods that build or read
Arrow schemas.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Union

from .. import _fields as F
from .. import _layout as L
from .._optional import require

__all__ = ["TYPES", "Field", "FieldType", "Schema", "SchemaLike", "field_type"]

# wire kinds
FIXED = "fixed"  # a fixed number of bytes at a known offset
STOPBIT = "stopbit"  # Java writeStopBit: 1-10 bytes
STRING = "string"  # Java writeUTFΔ: stop-bit byte length (-1 = null) + text
UTF = "utf"  # Java-Lang writeUTF: uint16 LE byte length + text
SKIP = "skip"  # N bytes passed over, no column
LIST = "list"  # a repeated group: stop-bit count, then that many entries of fixed-size fields

META_TYPE = b"pychro.type"  # Arrow field metadata key: the pychro type name
META_SCHEMA = b"pychro.schema"  # Arrow schema metadata key: Schema.to_json()
SCHEMA_VERSION = 1


class FieldType(NamedTuple):
    """One field type: how it is laid out and what column it becomes."""

    name: str
    kind: str  # FIXED, STOPBIT, STRING, UTF, SKIP or LIST
    size: int  # bytes on the wire for FIXED and SKIP; 0 for variable-size kinds
    dtype: str | None  # numpy dtype of the raw bytes (FIXED kinds)
    arrow: str | None  # Arrow type of the column ("int64", "string", "timestamp[ms]" = tz UTC); None for SKIP
    items: tuple[Field, ...] = ()  # LIST: the fields of one entry (one unnamed field: a list of plain values)

    @property
    def entry_size(self) -> int:
        """LIST: bytes of one entry."""
        return sum(f.type.size for f in self.items)


def _fixed(name: str, arrow: str, wire: str | None = None) -> FieldType:
    spec = F.FIXED[wire or name]
    return FieldType(name, FIXED, spec.size, spec.dtype, arrow)


def _timestamp(unit: str) -> FieldType:
    spec = F.FIXED["int64"]  # Java long epoch count
    return FieldType(f"timestamp_{unit}", FIXED, spec.size, spec.dtype, f"timestamp[{unit}]")


# The one type table. Order matters only for Arrow -> pychro inference: the first type with a given Arrow
# type wins (so an Arrow string column is read as a UTFΔ string, not as a char or writeUTF text).
TYPES: dict[str, FieldType] = {
    t.name: t
    for t in (
        _fixed("int8", "int8"),
        _fixed("int16", "int16"),
        _fixed("int32", "int32"),
        _fixed("int64", "int64"),
        _fixed("uint8", "uint8"),
        _fixed("uint16", "uint16"),
        _fixed("uint32", "uint32"),
        _fixed("float32", "float32"),
        _fixed("float64", "float64"),
        _fixed("bool", "bool"),  # any non-zero byte is true (Java writes 'Y')
        FieldType("string", STRING, 0, None, "string"),  # null for Java null
        FieldType("stopbit", STOPBIT, 0, None, "int64"),
        FieldType("utf", UTF, 0, None, "string"),
        _fixed("char", "string"),  # one UTF-16 code unit -> a one-character string
        _timestamp("ms"),
        _timestamp("us"),
        _timestamp("ns"),
    )
}

_SKIP = re.compile(r"skip(?:(\d+)|<(\d+)>)\Z")  # skip3, or skip<3> as the docs write skip<N>
_RESERVED = ("_index", "_cycle", "_seq")  # metadata column names the reader may add


def field_type(name: str) -> FieldType:
    """The :class:`FieldType` of a type name (``"int64"``, ``"string"``, ``"skip3"`` ...).

    Raises ValueError for an unknown name, suggesting the closest valid ones.

    Examples
    --------
    >>> field_type("float64").size
    8
    >>> field_type("skip3")
    FieldType(name='skip3', kind='skip', size=3, dtype=None, arrow=None, items=())
    """
    if not isinstance(name, str):
        raise TypeError(f"a field type must be a str, got {type(name).__name__}")
    key = name.strip()
    found = TYPES.get(key)
    if found is not None:
        return found
    if key.startswith("list<") and key.endswith(">"):
        return _list_type(key[len("list<") : -1])
    m = _SKIP.match(key)
    if m:
        size = int(m.group(1) or m.group(2))
        if not 0 < size < L.MAX_BODY_LENGTH:
            raise ValueError(f"skip size must be between 1 and 2**30 - 1 bytes, got {size}")
        return FieldType(f"skip{size}", SKIP, size, None, None)
    close = difflib.get_close_matches(key, [*TYPES, "skip<N>"], n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ValueError(f"unknown field type {name!r}{hint}; valid types: {', '.join(TYPES)}, skip<N>, list<...>")


def _list_type(inner: str) -> FieldType:
    """``list<px:float64,qty:int32>`` (entries of named fields) or ``list<int64>`` (plain values)."""
    if "list<" in inner:  # (before the parse of its items: deeply nested lists would exhaust the stack)
        raise ValueError(f"list<{inner}>: lists do not nest")
    parts = [p.strip() for p in inner.split(",")]
    if len(parts) == 1 and ":" not in parts[0] and not _SKIP.match(parts[0]):
        items = [Field("", field_type(parts[0]))]
    else:
        items = _from_pairs([_pair(p, f"list<{inner}>") for p in parts], what="a list entry")
    for f in items:
        t = f.type
        if t.kind == LIST or "<" in t.name:
            raise ValueError(f"list<{inner}>: lists do not nest")
        if t.kind not in (FIXED, SKIP) or t.name == "char":
            raise ValueError(
                f"list<{inner}>: field {f.name or t.name!r} is {t.name}; list entries hold fixed-size numbers, bools, "
                "timestamps and skip<N> (not strings, chars or stop-bit values)"
            )
    if not any(f.is_column for f in items):
        raise ValueError(f"list<{inner}>: an entry needs at least one field that is not a skip")
    name = "list<" + ",".join(f.type.name if not f.name or _anonymous(f) else f"{f.name}:{f.type.name}"
                              for f in items) + ">"
    return FieldType(name, LIST, 0, None, "list", tuple(items))


def arrow_type(ft: FieldType) -> Any:
    """The ``pyarrow.DataType`` of a column of this type (timestamps are tz-aware UTC)."""
    pa = require("pyarrow", purpose="Schema.to_arrow")
    spec = ft.arrow
    if spec is None:
        raise ValueError(f"{ft.name} fields have no column")
    if ft.kind == LIST:
        cols = [f for f in ft.items if f.is_column]
        if len(cols) == 1 and not cols[0].name:
            return pa.list_(arrow_type(cols[0].type))
        return pa.list_(pa.struct([pa.field(f.name, arrow_type(f.type)) for f in cols]))
    if spec.startswith("timestamp["):
        return pa.timestamp(spec[len("timestamp[") : -1], tz="UTC")
    if spec == "bool":
        return pa.bool_()
    return getattr(pa, spec)()


@dataclass(frozen=True)
class Field:
    """One named field of a :class:`Schema`."""

    name: str
    type: FieldType

    @property
    def kind(self) -> str:
        return self.type.kind

    @property
    def is_column(self) -> bool:
        """False for ``skip<N>`` padding, which produces no column."""
        return self.type.kind != SKIP

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.type.name!r})"


SchemaLike = Union["Schema", str, Mapping[str, str], Iterable[tuple[str, str]], Any]


class Schema:
    """The ordered fields of a message, for :func:`pychro.read_table` and friends.

    Parameters
    ----------
    fields : str, dict, list of (name, type) pairs, pyarrow.Schema or Schema
        * a compact string ``"ts:timestamp_ms,px:float64,qty:int32,sym:string"``; a bare ``skip<N>`` item
          is anonymous padding;
        * a dict ``{"ts": "timestamp_ms", ...}`` or a list of ``(name, type)`` pairs (name may be None or
          ``""`` for a skip);
        * a ``pyarrow.Schema``: read back exactly from :meth:`to_arrow` metadata, else each field from its
          ``pychro.type`` field metadata, else inferred from its Arrow type.

    Type names: ``int8 int16 int32 int64 uint8 uint16 uint32 float32 float64 bool char stopbit string utf
    timestamp_ms timestamp_us timestamp_ns``, ``skip<N>`` and ``list<...>``. ``string`` is Java ``writeUTFΔ``
    (nullable), ``utf`` is Java-Lang ``writeUTF`` (uint16 length), ``char`` one UTF-16 code unit, ``stopbit`` a
    ``writeStopBit`` long; timestamps are int64 counts since the Unix epoch, read as UTC. ``list<px:float64,
    qty:int32>`` is a repeated group: a ``writeStopBit`` count, then that many entries of fixed-size fields (an
    Arrow list of structs; ``list<int64>``, one unnamed field, a list of values).

    Raises
    ------
    ValueError
        Unknown type, empty or duplicate name, no fields.
    TypeError
        Input of an unsupported kind.

    Examples
    --------
    >>> s = Schema("ts:timestamp_ms,px:float64,qty:int32,skip3,sym:string")
    >>> s.names
    ['ts', 'px', 'qty', 'sym']
    >>> str(s)
    'ts:timestamp_ms,px:float64,qty:int32,skip3,sym:string'
    >>> Schema({"a": "int8", "b": "stopbit"}) == Schema([("a", "int8"), ("b", "stopbit")])
    True
    >>> Schema.from_json(s.to_json()) == s
    True
    >>> Schema("n:int32,levels:list<px:float64,qty:int32>")["levels"].type.entry_size
    12
    """

    __slots__ = ("_fields", "_by_name")

    def __init__(self, fields: SchemaLike) -> None:
        if isinstance(fields, Schema):
            parsed = list(fields._fields)
        elif isinstance(fields, str):
            parsed = _parse_compact(fields)
        elif _is_arrow_schema(fields):
            parsed = list(Schema.from_arrow(fields)._fields)
        elif isinstance(fields, Mapping):
            parsed = _from_pairs(list(fields.items()))
        elif isinstance(fields, Iterable):
            pairs = []
            for item in fields:
                if isinstance(item, Field):
                    pairs.append((item.name, item.type.name))
                elif isinstance(item, (tuple, list)) and len(item) == 2:
                    pairs.append((item[0], item[1]))
                else:
                    raise TypeError(f"schema items must be (name, type) pairs, got {item!r}")
            parsed = _from_pairs(pairs)
        else:
            raise TypeError(
                "a schema is a compact string, a dict, a list of (name, type) pairs, a pyarrow.Schema or a "
                f"Schema; got {type(fields).__name__}"
            )
        if not any(f.is_column for f in parsed):
            raise ValueError("a schema needs at least one field that is not a skip")
        self._fields: tuple[Field, ...] = tuple(parsed)
        self._by_name = {f.name: f for f in parsed}

    # -- sequence-like access ------------------------------------------------------------------------------
    @property
    def fields(self) -> tuple[Field, ...]:
        """All fields in wire order, skips included."""
        return self._fields

    @property
    def names(self) -> list[str]:
        """Column names in wire order (skips excluded)."""
        return [f.name for f in self._fields if f.is_column]

    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[Field]:
        return iter(self._fields)

    def __getitem__(self, name: str) -> Field:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no field {name!r} in the schema (fields: {', '.join(self.names)})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schema):
            return NotImplemented
        return [(f.name, f.type.name) for f in self._fields] == [(f.name, f.type.name) for f in other._fields]

    def __hash__(self) -> int:
        return hash(tuple((f.name, f.type.name) for f in self._fields))

    def __repr__(self) -> str:
        return f"Schema({str(self)!r})"

    def __str__(self) -> str:
        return ",".join(f.type.name if _anonymous(f) else f"{f.name}:{f.type.name}" for f in self._fields)

    @property
    def fixed_size(self) -> int | None:
        """Body size in bytes when every field has a fixed size, else None."""
        if any(f.type.size == 0 for f in self._fields):
            return None
        return sum(f.type.size for f in self._fields)

    # -- serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"version": 1, "fields": [{"name": ..., "type": ...}, ...]}``."""
        return {"version": SCHEMA_VERSION, "fields": [{"name": f.name, "type": f.type.name} for f in self._fields]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schema:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping) or "fields" not in data:
            raise ValueError("a schema dict needs a 'fields' list")
        version = data.get("version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(f"unsupported pychro schema version {version!r} (this pychro reads {SCHEMA_VERSION})")
        if not isinstance(data["fields"], (list, tuple)):
            raise ValueError(f"a schema dict's 'fields' must be a list, got {type(data['fields']).__name__}")
        pairs = []
        for item in data["fields"]:
            if not isinstance(item, Mapping) or "type" not in item:
                raise ValueError(f"schema dict fields need 'name' and 'type', got {item!r}")
            pairs.append((item.get("name"), item["type"]))
        return cls(pairs)

    def to_json(self) -> str:
        """:meth:`to_dict` as compact JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Schema:
        """Inverse of :meth:`to_json`."""
        if not isinstance(text, (str, bytes, bytearray)):
            raise TypeError(f"from_json takes JSON text, got {type(text).__name__}")
        try:
            data = json.loads(text)
        except RecursionError:  # json recurses per nesting level; hostile metadata can nest thousands deep
            raise ValueError("schema JSON is nested too deeply to be a pychro schema") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise ValueError(f"schema JSON is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_arrow(self) -> Any:
        """The ``pyarrow.Schema`` of the columns, recoverable with :meth:`from_arrow`.

        Each field carries ``{"pychro.type": <type name>}`` metadata and the schema carries the whole
        :meth:`to_json` (skips included) under ``"pychro.schema"``, so it survives a Parquet round trip.

        Examples
        --------
        >>> Schema("t:timestamp_us,c:char").to_arrow().types
        [TimestampType(timestamp[us, tz=UTC]), DataType(string)]
        """
        pa = require("pyarrow", purpose="Schema.to_arrow")
        fields = [
            pa.field(f.name, arrow_type(f.type), nullable=True, metadata={META_TYPE: f.type.name.encode()})
            for f in self._fields
            if f.is_column
        ]
        return pa.schema(fields, metadata={META_SCHEMA: self.to_json().encode()})

    @classmethod
    def from_arrow(cls, schema: Any) -> Schema:
        """A Schema from a ``pyarrow.Schema`` (see the class docstring for the rules)."""
        meta = schema.metadata or {}
        if META_SCHEMA in meta:
            try:
                return cls.from_json(meta[META_SCHEMA])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"the Arrow schema's 'pychro.schema' metadata is not a pychro schema: {exc}") from None
        pairs = []
        for fld in schema:
            fmeta = fld.metadata or {}
            if META_TYPE in fmeta:
                ft = field_type(fmeta[META_TYPE].decode())
                if ft.kind != SKIP and not arrow_type(ft).equals(fld.type):
                    raise ValueError(
                        f"field {fld.name!r}: pychro.type {ft.name} needs Arrow type {arrow_type(ft)}, not {fld.type}"
                    )
            else:
                ft = _infer(fld)
            pairs.append((fld.name, ft.name))
        return cls(pairs)


# -- parsing helpers ---------------------------------------------------------------------------------------
def _anonymous(f: Field) -> bool:
    return f.kind == SKIP and f.name.startswith("_skip")


def _parse_compact(text: str) -> list[Field]:
    return _from_pairs([_pair(item, text) for item in _split_top(text)])


def _split_top(text: str) -> list[str]:
    """The items of a schema string: split at the commas outside ``list<...>``."""
    items, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced '>' in schema string {text!r}")
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError(f"unbalanced '<' in schema string {text!r}")
    items.append(text[start:])
    return items


def _pair(raw: str, text: str) -> tuple[str | None, str]:
    item = raw.strip()
    if not item:
        raise ValueError(f"empty item in schema string {text!r}")
    if ":" in item and not item.startswith("list<"):
        name, _, type_name = item.partition(":")
        return name.strip(), type_name.strip()
    if _SKIP.match(item):
        return None, item
    raise ValueError(f"schema item {item!r} needs the form name:type (or a bare skip<N>)")


def _from_pairs(pairs: list[tuple[Any, Any]], what: str = "a schema") -> list[Field]:
    out: list[Field] = []
    seen: set[str] = set()
    for name, type_name in pairs:
        ft = field_type(type_name)
        if name is None or name == "":
            if ft.kind != SKIP:
                raise ValueError(f"a {ft.name} field needs a name")
            name = f"_skip{len(out)}"
        if not isinstance(name, str):
            raise TypeError(f"field names must be str, got {name!r}")
        if name in seen:
            raise ValueError(f"duplicate field name {name!r}")
        seen.add(name)
        out.append(Field(name, ft))
    if not out:
        raise ValueError(f"{what} needs at least one field")
    return out


def _is_arrow_schema(obj: Any) -> bool:
    return type(obj).__module__.startswith("pyarrow") and type(obj).__name__ == "Schema"


def _infer(fld: Any) -> FieldType:
    """pychro type of an Arrow field without pychro metadata: the first TYPES entry with that Arrow type."""
    pa = require("pyarrow")
    t = fld.type
    if pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", lambda _: False)(t):  # polars: views
        return TYPES["string"]
    if pa.types.is_timestamp(t):
        if t.tz not in (None, "UTC", "utc", "+00:00", "Z", "Etc/UTC"):
            raise ValueError(f"field {fld.name!r}: timestamps are read as UTC; Arrow tz {t.tz!r} is not supported")
        return TYPES[f"timestamp_{t.unit}"] if f"timestamp_{t.unit}" in TYPES else _no_type(fld)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        v = t.value_type
        try:
            if pa.types.is_struct(v):
                inner = ",".join(f"{c.name}:{_infer(c).name}" for c in v)
            else:
                inner = _infer(pa.field(fld.name, v)).name
            return field_type(f"list<{inner}>")
        except ValueError as exc:
            raise ValueError(f"field {fld.name!r}: {exc}") from None
    for ft in TYPES.values():
        if ft.kind != SKIP and arrow_type(ft).equals(t):
            return ft
    return _no_type(fld)


def _no_type(fld: Any) -> FieldType:
    raise ValueError(
        f"field {fld.name!r}: no pychro type reads Arrow type {fld.type}; give the field "
        f"metadata {{'pychro.type': <type>}} (types: {', '.join(TYPES)})"
    )
