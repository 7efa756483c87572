"""AMF0: every type decodes and re-encodes byte for byte; garbage only ever raises
AMF0Error; limits stop nesting and reference bombs."""

import contextlib
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemons.media.amf0 import (
    AMF0Error,
    UNDEFINED,
    Date,
    ECMAArray,
    TypedObject,
    XMLDocument,
    decode_amf3_wrapped,
    decode_value,
    decode_values,
    encode_values,
)

LONG = "x" * 70000

# (value, its canonical AMF0 bytes)
CASES = [
    pytest.param(1.5, b"\x00" + struct.pack(">d", 1.5), id="number"),
    pytest.param(True, b"\x01\x01", id="boolean-true"),
    pytest.param(False, b"\x01\x00", id="boolean-false"),
    pytest.param("live", b"\x02\x00\x04live", id="string"),
    pytest.param("", b"\x02\x00\x00", id="string-empty"),
    pytest.param("é", b"\x02\x00\x02\xc3\xa9", id="string-utf8"),
    pytest.param(
        {"a": 1.0}, b"\x03\x00\x01a\x00" + struct.pack(">d", 1.0) + b"\x00\x00\x09", id="object"
    ),
    pytest.param({}, b"\x03\x00\x00\x09", id="object-empty"),
    pytest.param(None, b"\x05", id="null"),
    pytest.param(UNDEFINED, b"\x06", id="undefined"),
    pytest.param(
        ECMAArray(w=320.0),
        b"\x08\x00\x00\x00\x01\x00\x01w\x00" + struct.pack(">d", 320.0) + b"\x00\x00\x09",
        id="ecma-array",
    ),
    pytest.param(
        [1.0, "a"],
        b"\x0a\x00\x00\x00\x02\x00" + struct.pack(">d", 1.0) + b"\x02\x00\x01a",
        id="strict-array",
    ),
    pytest.param(Date(1.7e12, 0), b"\x0b" + struct.pack(">dh", 1.7e12, 0), id="date"),
    pytest.param(LONG, b"\x0c" + struct.pack(">I", 70000) + LONG.encode(), id="long-string"),
    pytest.param(XMLDocument("<a/>"), b"\x0f\x00\x00\x00\x04<a/>", id="xml-document"),
    pytest.param(
        TypedObject("C", {"k": None}), b"\x10\x00\x01C\x00\x01k\x05\x00\x00\x09", id="typed-object"
    ),
    pytest.param(
        {"o": {"p": [None]}},
        b"\x03\x00\x01o\x03\x00\x01p\x0a\x00\x00\x00\x01\x05\x00\x00\x09\x00\x00\x09",
        id="nested",
    ),
]


@pytest.mark.parametrize(("value", "encoded"), CASES)
def test_decode_and_reencode_every_type(value, encoded):
    decoded = decode_value(encoded)
    assert decoded == value
    assert type(decoded) is type(value)
    assert encode_values(decoded) == encoded


def test_int_encodes_as_number():
    assert decode_value(encode_values(7)) == 7.0


def test_nan_number_round_trips():
    assert math.isnan(decode_value(encode_values(float("nan"))))


def test_reference_resolves_to_the_finished_object():
    # [{"a": 1}, ref 1]: the strict array is reference 0, the object reference 1.
    body = (
        b"\x0a\x00\x00\x00\x02"
        + b"\x03\x00\x01a\x00"
        + struct.pack(">d", 1.0)
        + b"\x00\x00\x09"
        + b"\x07\x00\x01"
    )
    value = decode_value(body)
    assert value == [{"a": 1.0}, {"a": 1.0}]
    assert value[0] is value[1]


def test_reference_to_unfinished_value_is_a_cycle():
    # An object whose property references the object itself.
    with pytest.raises(AMF0Error, match="cycle"):
        decode_value(b"\x03\x00\x01s\x07\x00\x00\x00\x00\x09")


def test_reference_past_table():
    with pytest.raises(AMF0Error, match="reference 3"):
        decode_value(b"\x07\x00\x03")


def _fan_out(levels: int) -> bytes:
    """Level k is [level k-1, reference to level k-1]: five bytes a level on the wire,
    2**levels values once references are expanded."""
    body = b"\x0a\x00\x00\x00\x02\x05\x05"  # innermost: [null, null]
    for k in range(levels):
        # Arrays are numbered as they begin, outermost first: the array just inside
        # level k has index levels - k.
        body = b"\x0a\x00\x00\x00\x02" + body + b"\x07" + struct.pack(">H", levels - k)
    return body


def test_reference_fan_out_is_bounded_by_max_items():
    small = decode_value(_fan_out(3))
    assert small[0] is small[1]
    with pytest.raises(AMF0Error, match="max_amf_items"):
        decode_value(_fan_out(20), max_items=10_000)


def test_depth_limit():
    body = b"\x0a\x00\x00\x00\x01" * 40 + b"\x05"
    with pytest.raises(AMF0Error, match="max_amf_depth"):
        decode_value(body, max_depth=32)
    assert decode_value(b"\x0a\x00\x00\x00\x01" * 10 + b"\x05", max_depth=32) is not None


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "truncated"),
        (b"\x00\x00", "number truncated"),
        (b"\x02\x00\x05ab", "string truncated"),
        (b"\x0c\x7f\xff\xff\xff", "long string truncated"),  # 2 GiB announced: nothing allocated
        (b"\x0a\xff\xff\xff\xff", "strict array truncated"),
        (b"\x03\x00\x01a", "type marker truncated"),
        (b"\x09", "object-end marker outside"),
        (b"\x04", "0x04 is not supported"),
        (b"\x0d", "0x0d is not supported"),
        (b"\x12", "0x12 is not supported"),
        (b"\x02\x00\x01\xff", "not valid UTF-8"),
        (b"\x11\x0a\x0b", "AMF3 value with marker 0x0a"),
        (b"\x11\x06\x00", "AMF3 string references"),
    ],
)
def test_malformed(body, match):
    with pytest.raises(AMF0Error, match=match):
        decode_value(body)


def test_trailing_bytes_after_single_value():
    with pytest.raises(AMF0Error, match="after the AMF0 value"):
        decode_value(b"\x05\x05")


@pytest.mark.parametrize(
    ("amf3", "value"),
    [
        (b"\x00", UNDEFINED),
        (b"\x01", None),
        (b"\x02", False),
        (b"\x03", True),
        (b"\x04\x05", 5.0),
        (b"\x04\x81\x00", 128.0),
        (b"\x04\xff\xff\xff\xff", -1.0),
        (b"\x05" + struct.pack(">d", 2.5), 2.5),
        (b"\x06\x07abc", "abc"),
    ],
)
def test_avmplus_trivial_values(amf3, value):
    assert decode_value(b"\x11" + amf3) == value


def test_amf3_wrapper():
    body = b"\x00" + encode_values("connect", 1.0, {"app": "live"})
    assert decode_amf3_wrapped(body) == ["connect", 1.0, {"app": "live"}]
    with pytest.raises(AMF0Error, match="format byte"):
        decode_amf3_wrapped(encode_values("connect"))


def test_decode_values_reads_a_command_body():
    body = encode_values("publish", 5.0, None, "key", "live")
    assert decode_values(body) == ["publish", 5.0, None, "key", "live"]


def test_encoding_unknown_type_is_a_type_error():
    with pytest.raises(TypeError):
        encode_values(object())


amf_values = st.recursive(
    st.none()
    | st.just(UNDEFINED)
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.builds(Date, st.floats(allow_nan=False), st.integers(-32768, 32767))
    | st.builds(XMLDocument, st.text(max_size=10)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=4)
        | st.builds(
            ECMAArray, st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=4)
        )
        | st.builds(
            TypedObject,
            st.text(max_size=8),
            st.dictionaries(st.text(min_size=1, max_size=8), children, max_size=3),
        )
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(amf_values)
def test_round_trip_generated_values(value):
    encoded = encode_values(value)
    decoded = decode_value(encoded)
    assert decoded == value
    assert encode_values(decoded) == encoded


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_raises_only_protocol_errors(data):
    with contextlib.suppress(AMF0Error):
        decode_values(data, max_depth=8, max_items=200)
