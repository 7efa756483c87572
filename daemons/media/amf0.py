"""AMF0, the value encoding of RTMP commands and data messages and of FLV script tags.

Owns decoding and encoding of every AMF0 type, the AMF3 command/data wrapper
(a leading 0x00 format byte followed by AMF0 values) and the few trivial AMF3
values that may follow an AVMplus marker.

Python mapping (decode → value → encode round-trips):

===================  =====================================
AMF0 marker          Python value
===================  =====================================
number               ``float``
boolean              ``bool``
string, long string  ``str`` (the encoder picks by length)
object               ``dict``
null                 ``None``
undefined            ``UNDEFINED``
reference            the referenced (already decoded) value
ECMA array           ``ECMAArray`` (a ``dict``)
strict array         ``list``
date                 ``Date``
XML document         ``XMLDocument`` (a ``str``)
typed object         ``TypedObject``
===================  =====================================

Decoding is bounded by ``max_depth`` (nesting) and ``max_items`` (values in
total, counting a referenced value's items again each time it is referenced),
so neither deep nesting nor reference fan-out can exhaust the stack or memory.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field


NUMBER = 0x00
BOOLEAN = 0x01
STRING = 0x02
OBJECT = 0x03
MOVIECLIP = 0x04
NULL = 0x05
UNDEFINED_MARKER = 0x06
REFERENCE = 0x07
ECMA_ARRAY = 0x08
OBJECT_END = 0x09
STRICT_ARRAY = 0x0A
DATE = 0x0B
LONG_STRING = 0x0C
UNSUPPORTED = 0x0D
RECORDSET = 0x0E
XML_DOCUMENT = 0x0F
TYPED_OBJECT = 0x10
AVMPLUS = 0x11

# AMF3 markers we accept after an AVMplus marker: values that need no AMF3
# reference tables or traits.
AMF3_UNDEFINED = 0x00
AMF3_NULL = 0x01
AMF3_FALSE = 0x02
AMF3_TRUE = 0x03
AMF3_INTEGER = 0x04
AMF3_DOUBLE = 0x05
AMF3_STRING = 0x06

DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_ITEMS = 4096

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")


class AMF0Error(ValueError):
    """Malformed AMF0, or a value past ``max_depth``/``max_items``. The RTMP layer reports it as
    ``RTMPProtocolError``, the FLV layer as ``FLVError``."""


class _Undefined:
    """The AMF0 ``undefined`` value (distinct from ``null``/``None``)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = _Undefined()


class ECMAArray(dict):
    """An AMF0 ECMA array: string keys like an object, sent e.g. as onMetaData."""


class XMLDocument(str):
    """An AMF0 XML document (its text)."""


@dataclass(frozen=True, slots=True)
class Date:
    """An AMF0 date: milliseconds since the Unix epoch and a (reserved) timezone."""

    epoch_ms: float
    timezone: int = 0


@dataclass(frozen=True, slots=True)
class TypedObject:
    """An AMF0 typed object: a class name and its properties."""

    class_name: str
    properties: dict = field(default_factory=dict)


class _Decoder:
    """One decode pass over a buffer; carries the reference table and budgets."""

    __slots__ = ("data", "pos", "end", "max_depth", "items_left", "references", "sizes")

    def __init__(self, data: bytes, pos: int, max_depth: int, max_items: int) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data)
        self.max_depth = max_depth
        self.items_left = max_items
        # Complex values in the order they began; a reference may only point at
        # a finished one (no cycles), and costs that value's item count again.
        self.references: list = []
        self.sizes: list[int | None] = []

    def _need(self, n: int, what: str) -> None:
        if self.end - self.pos < n:
            raise AMF0Error(
                f"AMF0 {what} truncated: needs {n} bytes, {self.end - self.pos} left"
            )

    def _spend(self, n: int) -> None:
        self.items_left -= n
        if self.items_left < 0:
            raise AMF0Error("AMF0 value has too many items (max_amf_items exceeded)")

    def _u16(self, what: str) -> int:
        self._need(2, what)
        (v,) = _U16.unpack_from(self.data, self.pos)
        self.pos += 2
        return v

    def _u32(self, what: str) -> int:
        self._need(4, what)
        (v,) = _U32.unpack_from(self.data, self.pos)
        self.pos += 4
        return v

    def _utf8(self, length: int, what: str) -> str:
        self._need(length, what)
        raw = self.data[self.pos : self.pos + length]
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AMF0Error(f"AMF0 {what} is not valid UTF-8") from exc

    def value(self, depth: int = 0) -> object:
        if depth > self.max_depth:
            raise AMF0Error("AMF0 value nested too deeply (max_amf_depth exceeded)")
        self._need(1, "type marker")
        marker = self.data[self.pos]
        self.pos += 1
        self._spend(1)
        if marker == STRING:
            return self._utf8(self._u16("string length"), "string")
        if marker == NUMBER:
            self._need(8, "number")
            (v,) = _DOUBLE.unpack_from(self.data, self.pos)
            self.pos += 8
            return v
        if marker == BOOLEAN:
            self._need(1, "boolean")
            v = self.data[self.pos] != 0
            self.pos += 1
            return v
        if marker == NULL:
            return None
        if marker == UNDEFINED_MARKER:
            return UNDEFINED
        if marker == OBJECT:
            return self._properties(dict(), depth)
        if marker == ECMA_ARRAY:
            self._u32("ECMA array count")  # a hint only; the end marker terminates
            return self._properties(ECMAArray(), depth)
        if marker == TYPED_OBJECT:
            class_name = self._utf8(self._u16("class name length"), "class name")
            obj = TypedObject(class_name, {})
            self._properties(obj.properties, depth, ref=obj)
            return obj
        if marker == STRICT_ARRAY:
            return self._strict_array(depth)
        if marker == REFERENCE:
            return self._reference()
        if marker == DATE:
            self._need(10, "date")
            epoch_ms, tz = _DATE.unpack_from(self.data, self.pos)
            self.pos += 10
            return Date(epoch_ms, tz)
        if marker == LONG_STRING:
            return self._utf8(self._u32("long string length"), "long string")
        if marker == XML_DOCUMENT:
            return XMLDocument(self._utf8(self._u32("XML document length"), "XML document"))
        if marker == AVMPLUS:
            return self._amf3_value()
        if marker == OBJECT_END:
            raise AMF0Error("AMF0 object-end marker outside an object")
        raise AMF0Error(f"AMF0 type marker 0x{marker:02x} is not supported")

    def _begin_complex(self, value: object) -> int:
        self.references.append(value)
        self.sizes.append(None)  # None: still being decoded
        return len(self.references) - 1

    def _properties(self, target: dict, depth: int, ref: object | None = None) -> object:
        start_items = self.items_left
        index = self._begin_complex(target if ref is None else ref)
        while True:
            key_length = self._u16("property name length")
            if key_length == 0:
                self._need(1, "object end")
                if self.data[self.pos] == OBJECT_END:
                    self.pos += 1
                    break
                # An empty key that is not the end marker is a legal (if odd) property.
            key = self._utf8(key_length, "property name")
            target[key] = self.value(depth + 1)
        self.sizes[index] = start_items - self.items_left
        return target if ref is None else ref

    def _strict_array(self, depth: int) -> list:
        count = self._u32("strict array count")
        # Each element takes at least one byte: reject impossible counts before looping.
        self._need(count, "strict array")
        start_items = self.items_left
        items: list = []
        index = self._begin_complex(items)
        for _ in range(count):
            items.append(self.value(depth + 1))
        self.sizes[index] = start_items - self.items_left
        return items

    def _reference(self) -> object:
        index = self._u16("reference index")
        if index >= len(self.references):
            raise AMF0Error(f"AMF0 reference {index} points past the reference table")
        size = self.sizes[index]
        if size is None:
            raise AMF0Error(f"AMF0 reference {index} points at an unfinished value (cycle)")
        self._spend(size)
        return self.references[index]

    def _amf3_u29(self) -> int:
        # 1-4 bytes: three with 7 payload bits and a continuation bit, a fourth with 8.
        value = 0
        for _ in range(3):
            self._need(1, "AMF3 integer")
            b = self.data[self.pos]
            self.pos += 1
            if not b & 0x80:
                return (value << 7) | b
            value = (value << 7) | (b & 0x7F)
        self._need(1, "AMF3 integer")
        b = self.data[self.pos]
        self.pos += 1
        return (value << 8) | b

    def _amf3_value(self) -> object:
        self._need(1, "AMF3 type marker")
        marker = self.data[self.pos]
        self.pos += 1
        if marker == AMF3_UNDEFINED:
            return UNDEFINED
        if marker == AMF3_NULL:
            return None
        if marker == AMF3_FALSE:
            return False
        if marker == AMF3_TRUE:
            return True
        if marker == AMF3_INTEGER:
            v = self._amf3_u29()
            return float(v - (1 << 29) if v & (1 << 28) else v)  # 29-bit two's complement
        if marker == AMF3_DOUBLE:
            self._need(8, "AMF3 double")
            (v,) = _DOUBLE.unpack_from(self.data, self.pos)
            self.pos += 8
            return v
        if marker == AMF3_STRING:
            header = self._amf3_u29()
            if not header & 1:
                raise AMF0Error("AMF3 string references are not supported")
            return self._utf8(header >> 1, "AMF3 string")
        raise AMF0Error(f"AMF3 value with marker 0x{marker:02x} is not supported")


def decode_values(
    data: bytes,
    offset: int = 0,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> list:
    """Decode AMF0 values from ``data[offset:]`` to the end (a command or data body).

    References are resolved within the whole body, as the spec scopes them.
    """
    decoder = _Decoder(data, offset, max_depth, max_items)
    values = []
    while decoder.pos < decoder.end:
        values.append(decoder.value())
    return values


def decode_value(
    data: bytes,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> object:
    """Decode exactly one AMF0 value that fills ``data``."""
    decoder = _Decoder(data, 0, max_depth, max_items)
    value = decoder.value()
    if decoder.pos != decoder.end:
        raise AMF0Error(f"{decoder.end - decoder.pos} bytes after the AMF0 value")
    return value


def decode_amf3_wrapped(data: bytes, **limits: int) -> list:
    """Decode the body of an AMF3 command (17) or data (15) message.

    Such bodies start with a format byte 0x00 and then carry plain AMF0 values.
    """
    if not data or data[0] != 0x00:
        raise AMF0Error("AMF3-wrapped message does not start with the 0x00 format byte")
    return decode_values(data, 1, **limits)


def _encode_into(out: bytearray, value: object) -> None:
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out += bytes((BOOLEAN, 1 if value else 0))
    elif isinstance(value, (int, float)):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, XMLDocument):
        raw = value.encode("utf-8")
        out.append(XML_DOCUMENT)
        out += _U32.pack(len(raw)) + raw
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += _U16.pack(len(raw)) + raw
        else:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw)) + raw
    elif isinstance(value, ECMAArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_properties(out, value)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(out, value)
    elif isinstance(value, TypedObject):
        raw = value.class_name.encode("utf-8")
        out.append(TYPED_OBJECT)
        out += _U16.pack(len(raw)) + raw
        _encode_properties(out, value.properties)
    elif isinstance(value, (list, tuple)):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_into(out, item)
    elif isinstance(value, Date):
        out.append(DATE)
        out += _DATE.pack(value.epoch_ms, value.timezone)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def _encode_properties(out: bytearray, properties: dict) -> None:
    for key, item in properties.items():
        raw = str(key).encode("utf-8")
        out += _U16.pack(len(raw)) + raw
        _encode_into(out, item)
    out += b"\x00\x00\x09"


def encode_values(*values: object) -> bytes:
    """Encode values back to back, as in a command or data message body."""
    out = bytearray()
    for value in values:
        _encode_into(out, value)
    return bytes(out)
