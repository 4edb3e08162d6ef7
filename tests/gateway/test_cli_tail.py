"""``herald tail`` as a real subprocess against real gateways: JSON lines, recovery of what was
published while its node was down (Redis engine, two nodes), ``recovered: false`` said out loud,
clean stops on SIGINT and SIGTERM, and problems in words."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import publish
from tests.support.cli import HERALD, clean_env, herald
from tests.support.gateway import TEST_API_KEY, TEST_SECRET, GatewayProcess, base_config, fresh_channel, running_gateway
from tests.support.ports import free_port
from tests.support.redis_server import RedisServer, redis_server
from tests.support.timing import seconds, wait_until_sync

# A short drain: a stopped node closes its connections at once.
FAST_STOP = {"shutdown_drain_window": "100ms"}


class TailProcess:
    """``herald tail`` running in the background; its output lines collected as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*HERALD, "tail", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._collect, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._collect, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def publications(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.out)]

    def wait_for(self, count: int, what: str) -> list[dict[str, Any]]:
        wait_until_sync(lambda: len(self.out) >= count, lambda: f"{what}; stdout {self.out}, stderr {self.err}")
        return self.publications()

    def wait_err(self, text: str) -> None:
        wait_until_sync(lambda: any(text in line for line in self.err), lambda: f"{text!r} on stderr: {self.err}")

    def following(self, times: int = 1) -> None:
        wait_until_sync(
            lambda: sum("tail: following" in line for line in self.err) >= times,
            lambda: f"tail to follow its channels ({times}); stderr {self.err}",
        )

    def exit_code(self, timeout: float = 10) -> int:
        code = self.proc.wait(timeout=seconds(timeout))
        for reader in self._readers:
            reader.join(timeout=seconds(5))
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=seconds(5))
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def secret_only(tmp_path: Path) -> str:
    path = tmp_path / "tail.json"
    path.write_text(json.dumps({"token_hmac_secret_key": TEST_SECRET}))
    return str(path)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def test_tail_prints_publications_as_json_lines(tmp_path: Path) -> None:
    with running_gateway(base_config(**FAST_STOP)) as gw:
        # The WebSocket URL is derived from the config's port, as publish derives the API URL.
        config = tmp_path / "herald.json"
        config.write_text(json.dumps({"token_hmac_secret_key": TEST_SECRET, "port": gw.port}))
        critical, plain = fresh_channel("critical"), "news"
        tail = TailProcess(critical, plain, "--config", str(config))
        try:
            tail.following()
            publish(gw.api_url, critical, {"order": 1})
            publish(gw.api_url, plain, "no history here")
            publish(gw.api_url, critical, {"order": 2})
            lines = tail.wait_for(3, "three publications")
            assert sorted(lines, key=lambda p: (p["channel"], p["offset"] or 0)) == [
                {"channel": critical, "offset": 1, "data": {"order": 1}},
                {"channel": critical, "offset": 2, "data": {"order": 2}},
                {"channel": plain, "offset": None, "data": "no history here"},
            ]
            assert tail.out[0] == json.dumps({"channel": critical, "offset": 1, "data": {"order": 1}}).replace(" ", "")
            tail.proc.send_signal(signal.SIGINT)
            assert tail.exit_code() == 0
            assert tail.err[-1] == "tail: stopped" and not any("Traceback" in line for line in tail.err)
        finally:
            tail.close()


def test_tail_recovers_what_was_published_while_its_node_was_down(redis: RedisServer, tmp_path: Path) -> None:
    config = base_config(engine="redis", redis_address=redis.url, **FAST_STOP)
    channel = fresh_channel("critical")
    with running_gateway(config) as b:
        a = GatewayProcess(config).start()
        tail = TailProcess(channel, "--url", a.ws_url, "--config", secret_only(tmp_path))
        try:
            tail.following()
            publish(b.api_url, channel, {"n": 1})
            tail.wait_for(1, "the first publication, live")
            a.stop()  # the tail's node goes away: 3001, then nothing listens
            tail.wait_err("connection closed: 3001 shutdown; reconnecting")
            for n in (2, 3, 4):
                publish(b.api_url, channel, {"n": n})  # through the other node, into Redis history
            tail.wait_err("cannot reach the gateway")
            a.start()  # same port
            tail.following(2)
            publish(b.api_url, channel, {"n": 5})
            lines = tail.wait_for(5, "every publication, once, in order")
            assert [(p["offset"], p["data"]) for p in lines] == [(n, {"n": n}) for n in range(1, 6)]
            assert not any("could not be recovered" in line for line in tail.err), tail.err
            tail.proc.send_signal(signal.SIGTERM)
            assert tail.exit_code() == 0
        finally:
            tail.close()
            a.close()


def test_tail_says_when_missed_publications_cannot_be_recovered(tmp_path: Path) -> None:
    # The memory engine's history dies with the process: the restarted node has a new epoch.
    with running_gateway(base_config(**FAST_STOP)) as gw:
        channel = fresh_channel("critical")
        tail = TailProcess(channel, "--url", gw.ws_url, "--config", secret_only(tmp_path))
        try:
            tail.following()
            publish(gw.api_url, channel, {"n": 1})
            tail.wait_for(1, "the first publication")
            gw.restart()
            tail.wait_err(f"tail: {channel}: publications missed while disconnected could not be recovered")
            tail.following(2)
            publish(gw.api_url, channel, {"n": "after"})
            lines = tail.wait_for(2, "the publication after the restart")
            assert lines[1] == {"channel": channel, "offset": 1, "data": {"n": "after"}}  # the new epoch's first
        finally:
            tail.close()


def test_tail_stops_with_a_message_on_problems(tmp_path: Path) -> None:
    unreachable = f"ws://127.0.0.1:{free_port()}/connection/websocket"
    result = herald("tail", "news", "--url", unreachable, "--config", secret_only(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach the gateway at {unreachable}: ")
    assert "Connection refused" in result.stderr and "Traceback" not in result.stderr
    with running_gateway(base_config()) as gw:
        result = herald("tail", "nowhere:x", "--url", gw.ws_url, "--config", secret_only(tmp_path))
        assert result.returncode == 1
        assert "error: cannot tail nowhere:x: error 102 unknown channel" in result.stderr
        wrong = tmp_path / "wrong.json"
        wrong.write_text(json.dumps({"token_hmac_secret_key": "another-secret-another-secret-another-secret"}))
        result = herald("tail", "news", "--url", gw.ws_url, "--config", str(wrong))
        assert result.returncode == 1
        assert "error: the gateway closed the connection: 3500 invalid token" in result.stderr
    result = herald("tail", "news", cwd=str(tmp_path))
    assert result.returncode == 1 and "HERALD_TOKEN_HMAC_SECRET_KEY" in result.stderr


def test_tail_recovers_server_side_subscriptions_from_a_v6_configured_gateway(
    redis: RedisServer, tmp_path: Path
) -> None:
    # token_channels "subscribe": the gateway subscribes the connection to the token's channels
    # itself, and recovery goes through the connect command's subs (spec §6.3). The nodes and
    # the tail read one Centrifugo v6 file.
    v6 = {
        "client": {"token": {"hmac_secret_key": TEST_SECRET, "channels": "subscribe"}},
        "http_api": {"key": TEST_API_KEY},
        "engine": {"type": "redis", "redis": {"address": [redis.url]}},
        "shutdown": {"drain_window": "100ms"},
        "channel": {"namespaces": base_config()["namespaces"]},
    }
    shared = tmp_path / "herald.json"
    shared.write_text(json.dumps(v6))
    channel = fresh_channel("critical")
    with running_gateway(v6) as b:
        a = GatewayProcess(v6).start()
        tail = TailProcess(channel, "--url", a.ws_url, "--config", str(shared))
        try:
            tail.following()
            publish(b.api_url, channel, {"n": 1})
            tail.wait_for(1, "the first publication, live")
            a.stop()
            tail.wait_err("connection closed: 3001 shutdown; reconnecting")
            publish(b.api_url, channel, {"n": 2})
            publish(b.api_url, channel, {"n": 3})
            a.start()
            tail.following(2)
            lines = tail.wait_for(3, "the publications missed while the node was down")
            assert [(p["offset"], p["data"]) for p in lines] == [(n, {"n": n}) for n in (1, 2, 3)]
            assert not any("could not be recovered" in line for line in tail.err), tail.err
        finally:
            tail.close()
            a.close()
