"""A private ``redis-server`` for the Celery broker of these tests, which a test may stop
("the broker is down") and start again on the same port with its data."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import redis

from tests.support.processes import stop_process
from tests.support.timing import seconds


class RedisServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self._dir = tempfile.TemporaryDirectory(prefix="herald-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        log = Path(self._dir.name) / "redis.log"
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                "--logfile",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + seconds(10)
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log.read_text()}")
            time.sleep(0.02)
        return self

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Stop, keeping the data (queues, bindings) for the next start, as a restart would."""
        if self.proc is None:
            return
        client = redis.Redis.from_url(self.url)
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # the answer to SHUTDOWN is the connection closing
        finally:
            client.close()
        stop_process(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()
