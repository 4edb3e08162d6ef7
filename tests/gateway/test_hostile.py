"""Hostile input, property-based (docs/security.md "Hostile input"; spec §1.3-§2.11).

Two halves. The codec, sans-I/O, over thousands of generated frames: whatever the bytes, it
returns commands or raises ProtocolViolation, and what it accepts is UTF-8 JSON of the
protocol's shape. Then live sessions against one real gateway: every generated frame ends with
the documented reply error or close code on its own connection only, while a bystander keeps
receiving a steady publication stream and the gateway logs no traceback.

Examples are derandomized, never stored, and bounded, so a run is deterministic.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from herald.gateway.codecs.json import decode_commands
from herald.gateway.codecs.messages import Command, ProtocolViolation, command_method
from tests.support.api import api, api_raw, publish
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.hostile import (
    COMMAND_FIELDS,
    INT64_MAX,
    INVALID_UTF8,
    METHODS,
    UINT32_MAX,
    UINT64_MAX,
    any_command,
    command,
    encode,
    json_values,
    malformed,
    malformed_frames,
    message,
    valid_value,
    wrongly_typed_commands,
)
from tests.support.syncraw import Bystander, LogWatch, Outcome, session
from tests.support.tokens import token


def examples(n: int) -> Callable[[Any], Any]:
    """CI settings: a fixed number of derandomized examples, no example database, no deadline."""
    return settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


BAD_REQUEST = (3501, "bad request")


def error(code: int, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# ---------------------------------------------------------------------------------------------
# The codec, sans-I/O


def decodes(frame: bytes) -> list[Command] | None:
    """The commands of a frame, or None for a protocol violation; any other exception fails."""
    try:
        return decode_commands(frame)
    except ProtocolViolation:
        return None


def test_the_field_table_names_every_field_the_codec_knows() -> None:
    """The strategies come from a table written from the spec; a field it missed would go untested."""
    info = msgspec.inspect.type_info(Command)
    assert isinstance(info, msgspec.inspect.StructType)
    methods = {f.name: f.type for f in info.fields}
    assert set(methods) - {"id", "ping"} == set(COMMAND_FIELDS)
    for method, fields in COMMAND_FIELDS.items():
        union = methods[method]
        assert isinstance(union, msgspec.inspect.UnionType)
        request = next(t for t in union.types if isinstance(t, msgspec.inspect.StructType))
        assert {f.name for f in request.fields} == set(fields), method


@examples(2000)
@given(st.binary(max_size=300))
def test_any_bytes_are_commands_or_a_protocol_violation(frame: bytes) -> None:
    decodes(frame)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """One to three well-formed commands in a frame, then bytes flipped, inserted or deleted."""
    frame = bytearray(b"\n".join(encode(c) for c in draw(st.lists(any_command, min_size=1, max_size=3))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(frame)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "repeat"]))
        if op == "flip" and at < len(frame):
            frame[at] = draw(st.integers(0, 255))
        elif op == "insert":
            frame[at:at] = draw(st.binary(min_size=1, max_size=4) | st.sampled_from(INVALID_UTF8))
        elif op == "delete":
            del frame[at : at + draw(st.integers(1, 8))]
        else:
            frame[at:at] = frame[at : at + draw(st.integers(1, 16))]
    return bytes(frame)


@examples(500)
@given(mutated_frames())
def test_what_the_codec_accepts_is_utf8_json_objects_one_per_line(frame: bytes) -> None:
    commands = decodes(frame)
    if commands is None:
        return
    text = frame.decode("utf-8")  # accepted bytes are UTF-8 (docs/security.md)
    lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    assert len(lines) == len(commands)
    for line in lines:
        assert isinstance(json.loads(line), dict), line  # and each line a JSON object (spec §1.3)


@examples(500)
@given(malformed(min_depth=5_000))  # in this process, hypothesis lets the decoder nest deeper
def test_malformed_frames_are_protocol_violations(frame: bytes) -> None:
    assert decodes(frame) is None, frame[:200]


@examples(600)
@given(wrongly_typed_commands())
def test_a_wrong_type_in_any_field_of_any_command_is_a_protocol_violation(case: tuple[str, bytes]) -> None:
    described, frame = case
    assert decodes(frame) is None, described


@examples(250)
@given(st.lists(any_command, min_size=1, max_size=4), st.booleans())
def test_well_formed_commands_decode_in_order_with_their_ids_and_methods(
    cmds: list[dict[str, Any]], trailing_newline: bool
) -> None:
    frame = b"\n".join(encode(c) for c in cmds) + (b"\n" if trailing_newline else b"")
    decoded = decodes(frame)
    assert decoded is not None, frame[:300]
    assert [(c.id, command_method(c)) for c in decoded] == [(c["id"], next(k for k in c if k != "id")) for c in cmds]


@examples(500)
@given(st.integers(1, 200), st.sampled_from(["[]", '{"a":1}']))
def test_nesting_a_client_may_send_decodes(depth: int, leaf: str) -> None:
    data = "[" * depth + leaf + "]" * depth
    assert decodes(b'{"id":2,"publish":{"channel":"x","data":%s}}' % data.encode()) is not None


@examples(300)
@given(
    st.sampled_from(METHODS).flatmap(
        lambda m: st.tuples(
            st.just(m),
            st.sampled_from([f for f, k in COMMAND_FIELDS[m].items() if k in ("string", "bool")] or ["-"]),
        )
    ),
    st.data(),
)
def test_a_duplicate_key_counts_once_the_last_one(method_field: tuple[str, str], data: st.DataObject) -> None:
    """As the reference's decoder does (and RFC 8259 allows): the last of duplicate members wins."""
    method, name = method_field
    assume(name != "-")
    kind = COMMAND_FIELDS[method][name]
    first, last = data.draw(valid_value(kind)), data.draw(valid_value(kind))
    member = f'"{name}":'
    frame = f'{{"id":1,"id":7,"{method}":{{{member}{json.dumps(first)},{member}{json.dumps(last)}}}}}'
    decoded = decodes(frame.encode())
    assert decoded is not None and decoded[0].id == 7
    assert getattr(getattr(decoded[0], method), name) == last


def test_numbers_at_the_edges_of_their_types() -> None:
    ok = decodes
    assert ok(b'{"id":%d,"rpc":{}}' % UINT32_MAX) is not None
    assert ok(b'{"id":%d,"rpc":{}}' % (UINT32_MAX + 1)) is None
    assert ok(b'{"id":-1,"rpc":{}}') is None
    assert ok(b'{"id":2,"subscribe":{"channel":"x","offset":%d}}' % INT64_MAX) is not None
    assert ok(b'{"id":2,"subscribe":{"channel":"x","offset":-1}}') is None
    assert ok(b'{"id":2,"subscribe":{"channel":"x","offset":%d}}' % (UINT64_MAX + 1)) is None
    assert ok(b'{"id":2,"history":{"channel":"x","limit":%d}}' % 10**40) is not None  # capped later
    assert ok(b'{"id":2,"history":{"channel":"x","limit":1e400}}') is None


# ---------------------------------------------------------------------------------------------
# Live sessions against one gateway


NAMESPACES = [
    {
        "name": "open",
        "allow_subscribe_for_client": True,
        "allow_publish_for_subscriber": True,
        "allow_history_for_client": True,
        "allow_recovery": True,
        "presence": True,
        "allow_presence_for_subscriber": True,
        "history_size": 10,
        "history_ttl": "600s",
    },
    {"name": "locked", "history_size": 10, "history_ttl": "600s"},
]
HISTORY_CHANNEL = "open:history"
RETAINED = list(range(6, 16))  # 15 publications into a history of 10


@dataclass
class Live:
    gw: GatewayProcess
    bystander: Bystander
    log: LogWatch
    epoch: str

    @property
    def url(self) -> str:
        return self.gw.ws_url

    def others_unaffected(self) -> None:
        """After each example: the bystander got the next publication and the log has no traceback."""
        self.bystander.still_receives()
        self.log.assert_clean()


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with running_gateway(base_config(namespaces=NAMESPACES)) as gw:
        for n in range(1, 16):
            publish(gw.api_url, HISTORY_CHANNEL, {"n": n})
        epoch = api(gw.api_url, "history", {"channel": HISTORY_CHANNEL})["result"]["epoch"]
        bystander = Bystander(gw, token(user="bystander"), f"open:bystander-{uuid.uuid4().hex[:8]}").start()
        try:
            yield Live(gw, bystander, LogWatch(gw), epoch)
        finally:
            bystander.stop()
        assert "Traceback" not in gw.log()


@examples(150)
@given(frame=malformed_frames, connected=st.booleans(), binary=st.booleans())
def test_a_malformed_frame_closes_its_connection_with_3501(
    live: Live, frame: bytes, connected: bool, binary: bool
) -> None:
    out = session(live.url, [frame], token=token() if connected else None, binary=binary)
    assert out.close == BAD_REQUEST, frame[:200]
    assert out.replies == []
    live.others_unaffected()


# Every command a client can send without having connected first: the other methods, a pong,
# and `send`, which has no id (spec §1.4: "Commands sent before a successful connect").
before_connect = st.one_of(
    st.sampled_from([m for m in METHODS if m != "connect"]).flatmap(command),
    message(COMMAND_FIELDS["send"]).map(lambda body: {"send": body}),
    st.just({}),
)


@examples(40)
@given(cmd=before_connect, binary=st.booleans())
def test_a_command_before_connect_closes_with_3501(live: Live, cmd: dict[str, Any], binary: bool) -> None:
    out = session(live.url, [encode(cmd)], binary=binary)
    assert out.close == BAD_REQUEST, cmd
    live.others_unaffected()


@examples(30)
@given(body=message(COMMAND_FIELDS["connect"]), same_frame=st.booleans(), with_good_token=st.booleans())
def test_a_second_connect_closes_with_3501(
    live: Live, body: dict[str, Any], same_frame: bool, with_good_token: bool
) -> None:
    if with_good_token:
        body["token"] = token()
    second = encode({"id": 2, "connect": body})
    if same_frame:
        first = encode({"id": 1, "connect": {"token": token()}})
        out = session(live.url, [first + b"\n" + second])
        assert [r["id"] for r in out.replies] == [1] and "connect" in out.replies[0]
    else:
        out = session(live.url, [second], token=token())
        assert out.replies == []
    assert out.close == BAD_REQUEST
    live.others_unaffected()


@examples(30)
@given(
    cmd=st.one_of(
        st.integers(1, UINT32_MAX).map(lambda i: {"id": i}),
        st.integers(1, UINT32_MAX).map(lambda i: {"id": i, "ping": {}}),
        st.tuples(st.integers(1, UINT32_MAX), st.text(min_size=1, max_size=10)).map(
            lambda t: {"id": t[0], **({} if t[1] in METHODS or t[1] == "id" else {t[1]: {}})}
        ),
    )
)
def test_a_command_with_no_known_request_closes_with_3501(live: Live, cmd: dict[str, Any]) -> None:
    """An id with no request field, ``ping`` included (spec §1.4), is a bad request."""
    out = session(live.url, [encode(cmd)], token=token())
    assert out.close == BAD_REQUEST, cmd
    live.others_unaffected()


# Commands with a known answer on a fresh connection that is subscribed to nothing.
ANSWERS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "rpc": ({"rpc": {"method": "x"}}, error(108, "not available")),
    "history-not-allowed": ({"history": {"channel": "locked:a"}}, error(103, "permission denied")),
    "presence-off": ({"presence": {"channel": "locked:a"}}, error(108, "not available")),
    "presence-not-subscribed": ({"presence_stats": {"channel": "open:a"}}, error(103, "permission denied")),
    "subscribe-not-granted": ({"subscribe": {"channel": "tenant_999"}}, error(103, "permission denied")),
    "subscribe-unknown-namespace": ({"subscribe": {"channel": "nowhere:a"}}, error(102, "unknown channel")),
    "unsubscribe-not-subscribed": ({"unsubscribe": {"channel": "open:zz"}}, {"unsubscribe": {}}),
    "sub-refresh-not-subscribed": (
        {"sub_refresh": {"channel": "open:zz", "token": "x"}},
        error(103, "permission denied"),
    ),
    "publish-not-subscribed": ({"publish": {"channel": "open:zz", "data": {}}}, error(103, "permission denied")),
}


@examples(30)
@given(
    cmd_id=st.integers(1, UINT32_MAX),
    picks=st.lists(st.sampled_from(sorted(ANSWERS)), min_size=2, max_size=6),
    one_frame=st.booleans(),
)
def test_duplicate_ids_are_each_answered_in_order(live: Live, cmd_id: int, picks: list[str], one_frame: bool) -> None:
    """The server echoes ids and keeps no table of them (spec §1.4): a reused id is answered again."""
    cmds = [encode({"id": cmd_id, **ANSWERS[p][0]}) for p in picks]
    frames = [b"\n".join(cmds)] if one_frame else cmds
    out = session(live.url, frames, token=token(), replies=len(picks))
    assert out.replies == [{"id": cmd_id, **ANSWERS[p][1]} for p in picks]
    assert out.close is None
    live.others_unaffected()


def expected_history(live: Live, limit: int, since: dict[str, Any] | None, reverse: bool) -> dict[str, Any]:
    """The answer spec §2.7 and docs/security.md give for the channel's 10 retained publications."""
    if reverse and since is not None and since.get("offset", 0) == 0:
        return error(107, "bad request")
    if since is not None and since.get("epoch") and since["epoch"] != live.epoch:
        return error(112, "unrecoverable position")
    cap = 300 if limit < 0 or limit > 300 else limit  # client_history_max_publication_limit
    after = since.get("offset", 0) if since is not None else None
    if reverse:
        offsets = [o for o in reversed(RETAINED) if after is None or o < after]
    else:
        offsets = [o for o in RETAINED if after is None or o > after]
    pubs = [{"data": {"n": o}, "offset": o} for o in offsets[:cap]]
    return {"history": {"publications": pubs, "epoch": live.epoch, "offset": RETAINED[-1]}}


@examples(60)
@given(
    limit=st.sampled_from([0, -1, 1, 3, 10, 300, 301, -(2**31), 2**31, 2**63, -(2**63) - 1, 10**30])
    | st.integers(-(2**80), 2**80),
    since=st.none()
    | st.fixed_dictionaries(
        {},
        optional={
            "offset": st.integers(0, 20) | st.integers(0, INT64_MAX),
            "epoch": st.sampled_from(["", "current"]) | st.text(min_size=1, max_size=8),
        },
    ),
    reverse=st.booleans(),
)
def test_history_limit_and_since_abuse(live: Live, limit: int, since: dict[str, Any] | None, reverse: bool) -> None:
    if since is not None and since.get("epoch") == "current":
        since["epoch"] = live.epoch
    cmd = {"id": 2, "history": {"channel": HISTORY_CHANNEL, "limit": limit, "since": since, "reverse": reverse}}
    out = session(live.url, [encode(cmd)], token=token(), replies=1)
    assert out.replies == [{"id": 2, **expected_history(live, limit, since, reverse)}]
    assert out.close is None
    live.others_unaffected()


@examples(40)
@given(
    epoch=st.text(min_size=1, max_size=12),
    offset=st.integers(0, 20) | st.integers(0, INT64_MAX),
    flag=st.integers(0, 7) | st.integers(-(2**63), INT64_MAX),
)
def test_a_foreign_epoch_is_never_recovered(live: Live, epoch: str, offset: int, flag: int) -> None:
    """Subscribe with recovery from a stream the client cannot have seen: recovered false with the
    current position, or error 112 when its flag 2 asks for it (spec §2.2, §6); history since
    that epoch: 112 (spec §2.7)."""
    assume(epoch != live.epoch)
    sub = {"channel": HISTORY_CHANNEL, "recover": True, "recoverable": True, "epoch": epoch, "offset": offset}
    history = {"channel": HISTORY_CHANNEL, "limit": 5, "since": {"offset": offset, "epoch": epoch}}
    frames = [encode({"id": 2, "subscribe": {**sub, "flag": flag}}), encode({"id": 3, "history": history})]
    out = session(live.url, frames, token=token(), replies=2)
    if flag & 2:
        expected_subscribe = error(112, "unrecoverable position")
    else:
        position = {"recoverable": True, "epoch": live.epoch, "offset": RETAINED[-1], "positioned": True}
        expected_subscribe = {"subscribe": {**position, "was_recovering": True}}
    assert out.replies == [{"id": 2, **expected_subscribe}, {"id": 3, **error(112, "unrecoverable position")}]
    assert out.close is None
    live.others_unaffected()


@pytest.mark.parametrize("offset", [2**63, UINT64_MAX])
def test_offsets_past_int64_close_with_3501(live: Live, offset: int) -> None:
    """Valid uint64 in the spec, but no Herald stream reaches them: refused as a bad request
    rather than silently answered for another position."""
    cmd = {"id": 2, "subscribe": {"channel": "open:x", "recover": True, "offset": offset}}
    out = session(live.url, [encode(cmd)], token=token())
    assert out.close == BAD_REQUEST
    live.others_unaffected()


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragmented"])
def test_a_message_over_the_size_limit_closes_with_1009(live: Live, fragmented: bool) -> None:
    big = b'{"id":2,"publish":{"channel":"open:x","data":"' + b"x" * 70_000 + b'"}}'
    frame: bytes | list[bytes] = [big[i : i + 20_000] for i in range(0, len(big), 20_000)] if fragmented else big
    out = session(live.url, [frame], token=token())
    assert out.close is not None and out.close[0] == 1009
    live.others_unaffected()


@pytest.mark.parametrize("bad", INVALID_UTF8, ids=lambda b: b.hex())
def test_a_publication_that_is_not_utf8_reaches_no_subscriber(live: Live, bad: bytes) -> None:
    """A subscriber publishing bytes that are not UTF-8 is closed (3501); had they been delivered,
    every subscriber's WebSocket would have failed on the invalid text frame."""
    channel = f"open:{uuid.uuid4().hex[:8]}"
    victim = Bystander(live.gw, token(user="victim"), channel).start()
    try:
        frames = [
            encode({"id": 2, "subscribe": {"channel": channel}}),
            b'{"id":3,"publish":{"channel":"%s","data":{"t":"a%sb"}}}' % (channel.encode(), bad),
        ]
        out = session(live.url, frames, token=token())
        assert out.close == BAD_REQUEST
        assert [r["id"] for r in out.replies] == [2]
        victim.still_receives()
    finally:
        victim.stop()
    live.others_unaffected()


@pytest.mark.parametrize("bad", INVALID_UTF8, ids=lambda b: b.hex())
def test_api_bodies_that_are_not_utf8_are_bad_requests(live: Live, bad: bytes) -> None:
    """The server API answers 400 (docs/security.md), in every form it accepts a command."""
    channel = f"open:{uuid.uuid4().hex[:8]}"
    victim = Bystander(live.gw, token(user="victim"), channel).start()
    try:
        data = b'{"channel":"%s","data":{"t":"a%sb"}}' % (channel.encode(), bad)
        assert api_raw(live.gw.api_url, "publish", data)[0] == 400
        assert api_raw(live.gw.api_url, "publish", b'{"channel":"a%sb","data":{}}' % bad)[0] == 400
        assert api_raw(live.gw.api_url, "batch", b'{"commands":[{"publish":%s}]}' % data)[0] == 400
        assert api_raw(live.gw.api_url, "", b'{"method":"publish","params":%s}' % data)[0] == 400
        assert api_raw(live.gw.api_url, "", b'{"method":"pub%slish","params":{}}' % bad)[0] == 400
        victim.still_receives()
    finally:
        victim.stop()
    live.others_unaffected()


@examples(25)
@given(data=json_values, binary=st.booleans())
def test_well_formed_publications_of_any_json_reach_the_subscribers(live: Live, data: Any, binary: bool) -> None:
    """The other side of the coin: nothing above refuses valid input. A subscriber publishes any
    JSON value (binary or text frame) and receives it back as it was sent."""
    assume(data is not None)  # null data is "no data": a bad request (spec §2.4)
    channel = f"open:{uuid.uuid4().hex[:8]}"
    frames = [
        encode({"id": 2, "subscribe": {"channel": channel}}),
        encode({"id": 3, "publish": {"channel": channel, "data": data}}),
    ]
    out: Outcome = session(live.url, frames, token=token(), binary=binary, replies=2, pushes=1)
    assert [r["id"] for r in out.replies] == [2, 3] and out.replies[1] == {"id": 3, "publish": {}}
    assert out.pushes[0]["pub"]["data"] == data
    live.others_unaffected()
