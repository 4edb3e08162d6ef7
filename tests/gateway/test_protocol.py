"""The client-protocol codec on literal bytes (spec §1.3-§3)."""

from __future__ import annotations

import pytest
from msgspec import Raw

from herald import errors
from herald.gateway.codecs.json import (
    clean_raw,
    decode_commands,
    encode_error_reply,
    encode_publication_push,
    encode_reply,
    encode_unsubscribe_push,
)
from herald.gateway.codecs.messages import (
    ClientInfo,
    ConnectResult,
    EmptyResult,
    HistoryResult,
    PresenceResult,
    PresenceStatsResult,
    ProtocolViolation,
    Publication,
    SubscribeResult,
    command_method,
)


def test_several_commands_per_frame_in_order() -> None:
    frame = b'{"id":1,"connect":{"token":"t","name":"js"}}\n{"id":2,"subscribe":{"channel":"news","flag":1}}'
    cmds = decode_commands(frame)
    assert [c.id for c in cmds] == [1, 2]
    assert [command_method(c) for c in cmds] == ["connect", "subscribe"]
    assert cmds[0].connect is not None and cmds[0].connect.token == "t"
    assert cmds[1].subscribe is not None and cmds[1].subscribe.channel == "news"


def test_one_trailing_newline_is_tolerated() -> None:
    assert len(decode_commands(b'{"id":1,"connect":{}}\n')) == 1


def test_unknown_fields_are_ignored() -> None:
    (cmd,) = decode_commands(b'{"id":7,"subscribe":{"channel":"c","flag":1,"tf":{"x":1}},"headers":{"a":"b"}}')
    assert cmd.subscribe is not None and cmd.subscribe.channel == "c"


def test_text_frames_decode_like_bytes() -> None:
    (cmd,) = decode_commands('{"id":3,"publish":{"channel":"c","data":{"é":1}}}')
    assert cmd.publish is not None and bytes(cmd.publish.data) == '{"é":1}'.encode()


def test_pong_is_an_empty_command() -> None:
    (cmd,) = decode_commands(b"{}")
    assert cmd.id == 0 and command_method(cmd) is None


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\n",
        b"   ",
        b"{not json}",
        b'{"id":1,"connect":{}}\n\n{"id":2,"subscribe":{"channel":"c"}}',  # blank line between commands
        b"[1,2]",
        b'{"id":-1,"connect":{}}',
        b'{"id":"1","connect":{}}',
        b'{"id":1,"subscribe":{"channel":5}}',
        b'{"id":1,"subscribe":{"channel":"c","offset":-3}}',
        b'{"id":1,"connect":{}}\n\n',
    ],
)
def test_bad_frames_are_protocol_violations(frame: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        decode_commands(frame)


def test_reply_keeps_the_result_object_even_when_empty() -> None:
    assert encode_reply(4, "publish", EmptyResult()) == b'{"id":4,"publish":{}}'
    assert encode_reply(2, "subscribe", SubscribeResult()) == b'{"id":2,"subscribe":{}}'


def test_connect_reply_omits_empty_fields_but_keeps_client() -> None:
    out = encode_reply(1, "connect", ConnectResult(client="abc", version="0.1.0", ping=25, pong=True))
    assert out == b'{"id":1,"connect":{"client":"abc","version":"0.1.0","ping":25,"pong":true}}'
    assert encode_reply(1, "connect", ConnectResult(client="")) == b'{"id":1,"connect":{"client":""}}'


def test_always_present_fields() -> None:
    assert encode_reply(6, "presence_stats", PresenceStatsResult(0, 0)) == (
        b'{"id":6,"presence_stats":{"num_clients":0,"num_users":0}}'
    )
    assert encode_reply(5, "presence", PresenceResult({})) == b'{"id":5,"presence":{"presence":{}}}'
    assert encode_reply(7, "history", HistoryResult([], "", 0)) == (
        b'{"id":7,"history":{"publications":[],"epoch":"","offset":0}}'
    )
    info = ClientInfo(user="", client="c1")
    assert encode_reply(5, "presence", PresenceResult({"c1": info})) == (
        b'{"id":5,"presence":{"presence":{"c1":{"user":"","client":"c1"}}}}'
    )


def test_error_reply_has_message_and_temporary_only_when_true() -> None:
    assert encode_error_reply(3, errors.ERROR_PERMISSION_DENIED) == (
        b'{"id":3,"error":{"code":103,"message":"permission denied"}}'
    )
    assert encode_error_reply(3, errors.ERROR_INTERNAL) == (
        b'{"id":3,"error":{"code":100,"message":"internal server error","temporary":true}}'
    )


def test_publication_push_embeds_raw_json() -> None:
    pub = Publication(data=Raw(b'{"n":1}'), offset=7, tags={"k": "v"})
    assert encode_publication_push("news", pub) == (
        b'{"push":{"channel":"news","pub":{"data":{"n":1},"offset":7,"tags":{"k":"v"}}}}'
    )
    assert encode_publication_push("c", Publication(data=Raw(b"[1]"))) == b'{"push":{"channel":"c","pub":{"data":[1]}}}'
    info = ClientInfo(user="5", client="x", conn_info=Raw(b'{"name":"A"}'))
    assert encode_publication_push("c", Publication(data=Raw(b"1"), info=info)) == (
        b'{"push":{"channel":"c","pub":{"data":1,"info":{"user":"5","client":"x","conn_info":{"name":"A"}}}}}'
    )


def test_unsubscribe_push_always_has_code_and_reason() -> None:
    assert encode_unsubscribe_push("c", 2000, "server unsubscribe") == (
        b'{"push":{"channel":"c","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}'
    )


def test_raw_newlines_are_stripped_so_messages_stay_on_one_line() -> None:
    # Pretty-printed JSON arrives through the HTTP API; a client frame cannot carry raw newlines.
    assert bytes(clean_raw(Raw(b'{\r\n "a" : 1\n}'))) == b'{ "a" : 1}'
    unchanged = Raw(b'{"a":"x\\ny"}')
    assert clean_raw(unchanged) is unchanged
