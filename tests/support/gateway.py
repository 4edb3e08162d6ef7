"""Start a real ``herald serve`` process on a free port and stop it cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from herald.gateway.activation import handed_over
from tests.support.ports import free_port
from tests.support.processes import stop_process
from tests.support.timing import wait_until_sync

TEST_SECRET = "herald-test-secret-0123456789abcdef-herald-test-secret-0123456789"
TEST_API_KEY = "test-api-key-0123456789abcdef-test"


def base_config(**overrides: Any) -> dict[str, Any]:
    """A config most tests start from: HMAC auth, API key, the ``critical`` namespace."""
    cfg: dict[str, Any] = {
        "token_hmac_secret_key": TEST_SECRET,
        "api_key": TEST_API_KEY,
        "namespaces": [{"name": "critical", "history_size": 50, "history_ttl": "120s", "force_recovery": True}],
    }
    cfg.update(overrides)
    return cfg


def fresh_channel(namespace: str) -> str:
    """A channel no other test uses, in ``namespace``: tests can share one gateway."""
    return f"{namespace}:{uuid.uuid4().hex[:12]}"


class GatewayProcess:
    def __init__(
        self,
        config: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
        port: int = 0,
        *,
        socket_activated: bool = False,
    ) -> None:
        self.port = port or free_port()
        #: With ``socket_activated``, the test process owns the listening socket, as systemd
        #: would, and hands it to every gateway process it starts.
        self.listener: socket.socket | None = None
        if socket_activated:
            self.listener = socket.create_server(("127.0.0.1", self.port), backlog=4096)
        self.config = dict(config)
        self._dir = tempfile.TemporaryDirectory(prefix="herald-test-")
        self.config_path = Path(self._dir.name) / "herald.json"
        self.config_path.write_text(json.dumps(self.config))
        self.log_path = Path(self._dir.name) / "gateway.log"
        # The test suite's own settings (HERALD_TEST_*) are not gateway keys: the gateway would
        # warn about each one, and tests that read its log expect only what they caused.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_TEST_")}
        self._env = {**inherited, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.http_url}/api"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> GatewayProcess:
        cmd = [
            sys.executable,
            "-m",
            "herald.gateway",
            "serve",
            "--config",
            str(self.config_path),
            "--port",
            str(self.port),
            "--address",
            "127.0.0.1",
        ]
        pass_fds: tuple[int, ...] = ()
        if self.listener is not None:
            cmd, pass_fds = handed_over(cmd, self.listener.fileno()), (self.listener.fileno(),)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self._env, pass_fds=pass_fds)
        proc = self.proc

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/health", timeout=1) as resp:
                    return bool(resp.status == 200)
            except (urllib.error.URLError, ConnectionError, OSError):
                return False

        try:
            wait_until_sync(healthy, "the gateway to answer /health", within=15)
        except AssertionError:
            self.stop()
            raise RuntimeError(f"gateway did not become healthy:\n{self.log()}") from None
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, sig)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self.listener is not None:
            self.listener.close()
        self._dir.cleanup()


@contextmanager
def running_gateway(config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(config, env)
    try:
        gw.start()
        yield gw
    finally:
        gw.close()
