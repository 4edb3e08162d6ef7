"""Hypothesis strategies for hostile client frames, and the field table they are built from.

The table is written from the wire contract (spec §2 and the protocol's ``client.proto``), not
read from the codec's own types, so a codec that declared a field with the wrong type would
disagree with it. ``test_hostile.py`` checks that the table names every field the codec knows.
"""

from __future__ import annotations

import json
from typing import Any, Final

from hypothesis import strategies as st

UINT32_MAX: Final = 2**32 - 1
INT64_MAX: Final = 2**63 - 1
UINT64_MAX: Final = 2**64 - 1

# Field kinds of the JSON protocol. "json" is embedded raw JSON (a protobuf ``bytes`` field):
# every JSON value fits it, so it has no wrong type, only invalid JSON.
STRING, BOOL, UINT32, UINT64, INT64, LIMIT, JSON, OBJECT = (
    "string",
    "bool",
    "uint32",
    "uint64",
    "int64",
    "limit",
    "json",
    "object",
)

# Nested messages: SubscribeRecovery (values of connect.subs) and StreamPosition (history.since).
RECOVERY_FIELDS: Final = {"recover": BOOL, "epoch": STRING, "offset": UINT64}
POSITION_FIELDS: Final = {"offset": UINT64, "epoch": STRING}
MAP_OF_RECOVERY: Final = "map<string, SubscribeRecovery>"
POSITION: Final = "StreamPosition"

# Every request field of every command (spec §2.1-§2.11). ``history.limit`` is an int32 in the
# protobuf schema, but any integer is accepted and capped (docs/security.md, "Hostile input").
COMMAND_FIELDS: Final[dict[str, dict[str, str]]] = {
    "connect": {"token": STRING, "data": JSON, "subs": MAP_OF_RECOVERY, "name": STRING, "version": STRING},
    "subscribe": {
        "channel": STRING,
        "token": STRING,
        "recover": BOOL,
        "epoch": STRING,
        "offset": UINT64,
        "data": JSON,
        "positioned": BOOL,
        "recoverable": BOOL,
        "join_leave": BOOL,
        "delta": STRING,
        "flag": INT64,
    },
    "unsubscribe": {"channel": STRING},
    "publish": {"channel": STRING, "data": JSON},
    "presence": {"channel": STRING},
    "presence_stats": {"channel": STRING},
    "history": {"channel": STRING, "limit": LIMIT, "since": POSITION, "reverse": BOOL},
    "rpc": {"data": JSON, "method": STRING},
    "refresh": {"token": STRING},
    "sub_refresh": {"channel": STRING, "token": STRING},
    "send": {"data": JSON},
}
METHODS: Final = tuple(COMMAND_FIELDS)

# JSON values of every kind, small.
json_scalars: Final = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values: Final = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_KINDS: Final = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(-(2**70), 2**70),
    "float": st.floats(allow_nan=False, allow_infinity=False).map(float),
    "string": st.text(max_size=12),
    "array": st.lists(json_values, max_size=3),
    "object": st.dictionaries(st.text(max_size=6), json_values, max_size=3),
}
# Which JSON kinds each field kind accepts (a float is never an integer, even 1.0).
_ACCEPTS: Final = {
    STRING: {"string"},
    BOOL: {"bool"},
    UINT32: {"int"},
    UINT64: {"int"},
    INT64: {"int"},
    LIMIT: {"int"},
    OBJECT: {"object"},
    MAP_OF_RECOVERY: {"object", "null"},  # a map: null is "empty"
    POSITION: {"object", "null"},  # an optional message: null is "absent"
}
# Values generated as valid stay within int64 (Herald's offsets are int64); what the spec's types
# refuse is outside their own range.
_INT_RANGE: Final = {UINT32: (0, UINT32_MAX), UINT64: (0, INT64_MAX), INT64: (-(2**63), INT64_MAX)}
_SPEC_RANGE: Final = {UINT32: (0, UINT32_MAX), UINT64: (0, UINT64_MAX), INT64: (-(2**63), INT64_MAX)}


def valid_value(kind: str) -> st.SearchStrategy[Any]:
    """A value of the right type for a field kind."""
    if kind == STRING:
        return st.text(max_size=16)
    if kind == BOOL:
        return st.booleans()
    if kind in _INT_RANGE:
        lo, hi = _INT_RANGE[kind]
        return st.integers(lo, hi)
    if kind == LIMIT:
        return st.integers(-(2**80), 2**80)
    if kind == JSON:
        return json_values
    if kind == MAP_OF_RECOVERY:
        return st.dictionaries(st.text(max_size=8), message(RECOVERY_FIELDS), max_size=2)
    if kind == POSITION:
        return st.none() | message(POSITION_FIELDS)
    raise AssertionError(kind)


def message(fields: dict[str, str]) -> st.SearchStrategy[dict[str, Any]]:
    """A message with any subset of its fields, each of the right type."""
    return st.fixed_dictionaries({}, optional={name: valid_value(kind) for name, kind in fields.items()})


def wrong_value(kind: str) -> st.SearchStrategy[Any]:
    """A JSON value a field of this kind must refuse: another JSON type, or an integer out of range."""
    other = [strategy for name, strategy in _KINDS.items() if name not in _ACCEPTS[kind]]
    if kind in _SPEC_RANGE:
        lo, hi = _SPEC_RANGE[kind]
        other += [st.integers(hi + 1, hi + 2**70), st.integers(lo - 2**70, lo - 1)]
    if kind == MAP_OF_RECOVERY:  # a map whose entry is not a SubscribeRecovery
        entries = st.sampled_from(list(_KINDS)).flatmap(_not_object)
        other.append(st.dictionaries(st.text(max_size=4), entries, min_size=1))
    return st.one_of(other)


def _not_object(kind: str) -> st.SearchStrategy[Any]:
    return _KINDS["null" if kind == "object" else kind]


def nested_fields() -> list[tuple[str, str, str, str]]:
    """(method, field, nested field, kind) for every field inside a nested message."""
    found = []
    for method, fields in COMMAND_FIELDS.items():
        for name, kind in fields.items():
            nested = {MAP_OF_RECOVERY: RECOVERY_FIELDS, POSITION: POSITION_FIELDS}.get(kind)
            for inner, inner_kind in (nested or {}).items():
                found.append((method, name, inner, inner_kind))
    return found


def leaf_fields() -> list[tuple[str, str, str, str]]:
    """(method, field, nested field or "", kind) for every field that can be given a wrong type."""
    leaves = [("", "id", "", UINT32)]
    for method, fields in COMMAND_FIELDS.items():
        leaves += [(method, name, "", kind) for name, kind in fields.items() if kind != JSON]
    return leaves + nested_fields()


@st.composite
def wrongly_typed_commands(draw: st.DrawFn) -> tuple[str, bytes]:
    """A command with one field of the wrong type; (a description, the frame)."""
    method, name, inner, kind = draw(st.sampled_from(leaf_fields()))
    bad = draw(wrong_value(kind))
    if not method:  # the command id itself
        command: dict[str, Any] = {"id": bad, draw(st.sampled_from(METHODS)): {}}
    elif inner:
        body: Any = {inner: bad}
        if COMMAND_FIELDS[method][name] == MAP_OF_RECOVERY:
            body = {"ch": body}
        command = {"id": 2, method: {name: body}}
    else:
        command = {"id": 2, method: {name: bad}}
    return f"{method or 'id'}.{name}{'.' + inner if inner else ''} = {bad!r}", json.dumps(command).encode()


def command(method: str, cmd_id: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    """A well-typed command of ``method`` (its values may still be refused by the session)."""
    return message(COMMAND_FIELDS[method]).map(lambda body: {"id": cmd_id, method: body})


any_command: Final = st.sampled_from(METHODS).flatmap(command)


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# --- frames that are not the protocol's JSON, by construction

# Byte sequences that are never valid UTF-8: a lone continuation byte, an overlong encoding,
# a surrogate encoded directly, a code point past U+10FFFF, bytes that never occur, a cut-off
# multi-byte sequence.
INVALID_UTF8: Final = (b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff", b"\xfe", b"\xe2\x82")


@st.composite
def truncated(draw: st.DrawFn) -> bytes:
    """A single command cut short: a proper prefix of a JSON object is never a JSON object."""
    frame = encode(draw(any_command))
    return frame[: draw(st.integers(0, len(frame) - 1))]


@st.composite
def with_invalid_utf8(draw: st.DrawFn) -> bytes:
    """A well-formed command with bytes that are not UTF-8 inside one of its strings or its data."""
    marker = "\u2603MARK\u2603"
    method = draw(st.sampled_from(["connect", "subscribe", "publish", "rpc", "refresh", "sub_refresh", "history"]))
    where = draw(st.sampled_from(["string", "data"]))
    fields = COMMAND_FIELDS[method]
    body: dict[str, Any]
    if where == "data" and "data" in fields:
        body = {"data": {"text": marker}}
    else:
        body = {next(f for f in ("token", "channel", "method") if f in fields): marker}
    frame = json.dumps({"id": 2, method: body}, ensure_ascii=False).encode()
    bad = draw(st.sampled_from(INVALID_UTF8))
    return frame.replace(marker.encode(), b"ok" + bad + b"ok")


@st.composite
def with_lone_surrogate(draw: st.DrawFn) -> bytes:
    """A ``\\uD800``-style escape with no partner: valid JSON syntax, but no Unicode string."""
    unit = draw(st.integers(0xD800, 0xDFFF))
    method = draw(st.sampled_from(["subscribe", "publish", "refresh", "rpc"]))
    field = {"subscribe": "channel", "publish": "channel", "refresh": "token", "rpc": "method"}[method]
    return b'{"id":2,"%s":{"%s":"a\\u%04xb"}}' % (method.encode(), field.encode(), unit)


@st.composite
def deeply_nested(draw: st.DrawFn, min_depth: int = 1_000) -> bytes:
    """Embedded JSON nested past the decoder's depth, yet within the frame size limit.

    The decoder's depth follows the interpreter's recursion limit (1,000 in the gateway; while
    hypothesis runs an example in this process it is raised to about 2,000)."""
    depth = draw(st.integers(min_depth, 10_000))  # 6 bytes a level at most: under 64 KiB
    inner = draw(st.sampled_from([(b"[" * depth, b"]" * depth), (b'{"a":' * depth + b"1", b"}" * depth)]))
    where = draw(st.sampled_from([b'"publish":{"channel":"x","data":%s}', b'"rpc":{"data":%s}', b'"ping":{"a":%s}']))
    return b'{"id":2,' + where % (inner[0] + inner[1]) + b"}"


not_an_object: Final = st.sampled_from(["[]", "null", "1", '"x"', "true", "[{}]", "{}{}", '{"id":1}x']).map(str.encode)
blank: Final = st.sampled_from([b"", b" ", b"\n", b"\t", b"\r\n", b"\n\n", b" \n "])
byte_order_mark: Final = any_command.map(lambda c: b"\xef\xbb\xbf" + encode(c))
blank_line_between: Final = st.tuples(any_command, any_command).map(lambda cs: encode(cs[0]) + b"\n\n" + encode(cs[1]))


def malformed(min_depth: int = 1_000) -> st.SearchStrategy[bytes]:
    """Frames whose every reading is a protocol violation (spec §1.3; docs/security.md): 3501."""
    return st.one_of(
        truncated(),
        with_invalid_utf8(),
        with_lone_surrogate(),
        wrongly_typed_commands().map(lambda described: described[1]),
        deeply_nested(min_depth),
        not_an_object,
        blank,
        byte_order_mark,
        blank_line_between,
    )


malformed_frames: Final = malformed()
