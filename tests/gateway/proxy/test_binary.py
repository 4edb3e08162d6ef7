"""``proxy_binary_encoding`` and Protobuf clients (proxy.md §2): payloads travel as base64
``b64data`` with ``encoding: "binary"``, and ``protocol`` names the client's own encoding."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from centrifuge import Client

from tests.support.app_backend import AppBackend, Call
from tests.support.gateway import GatewayProcess, base_config, running_gateway
from tests.support.pyclient import PROTOCOLS, Recorder, close_client
from tests.support.timing import duration


@pytest.fixture(scope="module")
def gateway(backend: AppBackend) -> Iterator[GatewayProcess]:
    config = base_config(**backend.endpoints("connect", "rpc", timeout=duration(1)), proxy_binary_encoding=True)
    with running_gateway(config) as gw:
        yield gw


def b64(value: object) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def unb64(text: object) -> object:
    assert isinstance(text, str)
    return json.loads(base64.b64decode(text))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_payloads_travel_as_base64(gateway: GatewayProcess, backend: AppBackend, protocol: str) -> None:
    backend.answer("connect", {"result": {"user": "b1", "b64data": b64({"hi": 1})}})

    def rpc_answer(call: Call) -> dict[str, object]:
        return {"result": {"b64data": b64({"got": unb64(call.body["b64data"])})}}

    backend.answer("rpc", rpc_answer)
    protobuf = protocol == "protobuf"

    def payload(value: object) -> object:  # the Protobuf SDK takes bytes
        return json.dumps(value).encode() if protobuf else value

    recorder = Recorder()
    client = Client(
        gateway.ws_url, events=recorder.client_handler(), data=payload({"cred": "x"}), use_protobuf=protobuf
    )
    await client.connect()
    connected = await recorder.wait_for("connected")
    data = connected.ctx.data
    assert (json.loads(data) if isinstance(data, bytes) else data) == {"hi": 1}
    result = await client.rpc("m", payload({"q": 2}))
    got = json.loads(result.data) if isinstance(result.data, bytes) else result.data
    assert got == {"got": {"q": 2}}
    [connect] = backend.calls("connect")
    assert (connect.body["protocol"], connect.body["encoding"]) == (protocol, "binary")
    assert "data" not in connect.body and unb64(connect.body["b64data"]) == {"cred": "x"}
    await close_client(client)
