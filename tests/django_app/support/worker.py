"""A real ``celery worker`` subprocess for the test project, and the Redis it needs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import redis

from tests.support.processes import stop_process
from tests.support.timing import seconds

ROOT = Path(__file__).resolve().parents[3]


def ensure_redis(url: str) -> None:
    """Use the machine's Redis; start it (as the machine's service) if nothing answers."""
    if _redis_answers(url):
        return
    if shutil.which("redis-server") is None:
        raise RuntimeError(f"no Redis at {url} and no redis-server to start")
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "-::1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + seconds(10)
    while not _redis_answers(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server started but {url} does not answer")
        time.sleep(0.05)


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class CeleryWorker:
    """``celery -A tests.django_app.celery_app worker`` with its output in a file."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self._dir = tempfile.TemporaryDirectory(prefix="herald-worker-")
        self.log_path = Path(self._dir.name) / "worker.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryWorker:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.django_app.celery_app",
            "worker",
            "-P",
            self.env.get("HERALD_TEST_POOL", "solo"),
            "-c",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
            "-Q",
            self.env["HERALD_TEST_QUEUE"],
            "-n",
            f"herald-test-{uuid.uuid4().hex[:8]}@%h",
        ]
        env = {
            **os.environ,
            **self.env,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + seconds(30)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.proc.returncode}:\n{self.log()}")
            if re.search(r"\S+@\S+ ready\.", self.log()):
                return self
            time.sleep(0.05)
        output = self.log()
        self.stop()
        raise RuntimeError(f"celery worker did not become ready:\n{output}")

    def log(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        """An offset into the log; ``log(mark)`` is what was written after it."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def wait_for_log(self, pattern: str, since: int, count: int = 1, timeout: float = 10.0) -> list[re.Match[str]]:
        """Wait until ``pattern`` matched ``count`` lines written after ``since``."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + seconds(timeout)
        while True:
            matches = list(regex.finditer(self.log(since)))
            if len(matches) >= count:
                return matches
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                raise AssertionError(
                    f"{count} line(s) matching {pattern!r} expected, got {len(matches)}:\n{self.log(since)}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)  # SIGTERM: Celery's warm shutdown
        self.proc = None

    def pool_children(self) -> list[int]:
        """The pool's child processes (prefork), by pid."""
        assert self.proc is not None
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, nothing handed back to the broker, as when the machine dies."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


class Workers:
    """At most one worker at a time, restarted when a test needs other settings.

    All workers consume this test run's own queue, so concurrent test runs on the same
    Redis never take each other's tasks; only one consumes at a time, so a task always
    reaches the worker configured for the test that sent it.
    """

    def __init__(self, base_env: Mapping[str, str]) -> None:
        self.base_env = dict(base_env)
        self.current: CeleryWorker | None = None

    def ensure(self, **env: str) -> CeleryWorker:
        wanted = {**self.base_env, **env}
        current = self.current
        if current is not None and current.env == wanted and current.proc is not None and current.proc.poll() is None:
            return current
        self.close()
        worker = CeleryWorker(wanted)
        try:
            worker.start()
        except BaseException:
            worker.close()
            raise
        self.current = worker
        return worker

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None
