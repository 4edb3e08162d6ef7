"""Socket activation: a supervisor owns the listening socket, so a restart refuses nobody."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from herald.gateway.activation import handed_over
from tests.support.gateway import GatewayProcess, base_config
from tests.support.ports import free_port
from tests.support.raw import RawClient
from tests.support.timing import seconds
from tests.support.tokens import token


async def test_a_restart_under_a_supervisor_refuses_no_connection() -> None:
    gw = GatewayProcess(base_config(), socket_activated=True)
    try:
        gw.start()
        assert "socket from the supervisor" in gw.log()
        before = await RawClient.open(gw.ws_url)
        assert "connect" in await before.connect(token())
        await before.close()

        gw.stop()
        # No node runs: the kernel queues the connection on the supervisor's socket (a TCP
        # connect succeeds at once, where a closed port would refuse it)...
        with socket.create_connection(("127.0.0.1", gw.port), timeout=seconds(5)):
            pass
        opening = asyncio.create_task(RawClient.open(gw.ws_url, open_timeout=seconds(20)))
        done, _ = await asyncio.wait({opening}, timeout=seconds(0.3))
        assert not done, "the upgrade was answered (or failed) while no node was running"
        # ...and the next node answers the upgrade it finds waiting.
        await asyncio.to_thread(gw.start)
        during = await asyncio.wait_for(opening, seconds(20))
        reply = await during.connect(token())
        assert reply["connect"]["client"]
        await during.close()
    finally:
        gw.close()


async def test_without_a_supervisor_a_restart_refuses_connections() -> None:
    # The contrast that makes the test above meaningful: the node's own socket dies with it.
    gw = GatewayProcess(base_config())
    try:
        gw.start()
        gw.stop()
        with pytest.raises(ConnectionRefusedError):
            await RawClient.open(gw.ws_url)
    finally:
        gw.close()


def _handed_over(tmp_path: Path, fd: int, fd_count: str = "1") -> subprocess.CompletedProcess[str]:
    config = tmp_path / "herald.json"
    config.write_text(json.dumps(base_config()))
    cmd = [sys.executable, "-m", "herald.gateway", "serve", "--config", str(config), "--port", str(free_port())]
    return subprocess.run(
        handed_over(cmd, fd, fd_count), capture_output=True, text=True, timeout=seconds(20), pass_fds=(fd,)
    )


def test_two_inherited_sockets_are_refused(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        done = _handed_over(tmp_path, listener.fileno(), fd_count="2")
    assert done.returncode == 1
    assert "socket activation: LISTEN_FDS=2" in done.stderr


def test_an_inherited_descriptor_that_is_not_a_socket_is_refused(tmp_path: Path) -> None:
    with open(os.devnull, "rb") as devnull:
        done = _handed_over(tmp_path, devnull.fileno())
    assert done.returncode == 1
    assert "file descriptor 3 is not a socket" in done.stderr


def test_an_inherited_socket_that_is_not_listening_is_refused(tmp_path: Path) -> None:
    with socket.socket() as unbound:
        done = _handed_over(tmp_path, unbound.fileno())
    assert done.returncode == 1
    assert "is not listening" in done.stderr


def test_an_inherited_udp_socket_is_refused(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        done = _handed_over(tmp_path, udp.fileno())
    assert done.returncode == 1
    assert "not a TCP socket" in done.stderr


def test_a_hand_over_meant_for_another_process_is_ignored() -> None:
    # LISTEN_PID names the supervisor's child, not this process (here: a pid that is not ours):
    # the node binds its own port as usual.
    gw = GatewayProcess(base_config(), env={"LISTEN_FDS": "1", "LISTEN_PID": "1"})
    try:
        gw.start()
        with socket.create_connection(("127.0.0.1", gw.port), timeout=seconds(5)):
            pass
        assert "socket from the supervisor" not in gw.log()
    finally:
        gw.close()
