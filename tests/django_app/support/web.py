"""The test project under gunicorn, as a deployment runs it: the process the gateway's proxy
calls reach. It shares the test process's database (the SQLite file, by name; see settings)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import stop_process
from tests.support.timing import wait_until_sync

ROOT = Path(__file__).resolve().parents[3]


class Gunicorn:
    def __init__(self, env: Mapping[str, str] | None = None, *, workers: int = 2, threads: int = 4) -> None:
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="herald-web-")
        self.log_path = Path(self._dir.name) / "gunicorn.log"
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.django_app.settings", **(env or {})}
        self.argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "tests.django_app.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--access-logfile",
            "-",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def proxy_url(self, event: str) -> str:
        return f"{self.url}/realtime/proxy/{event}/"

    def start(self) -> Gunicorn:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        proc = self.proc

        def answering() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{self.log()}")
            try:
                urllib.request.urlopen(self.proxy_url("connect"), timeout=1).close()
            except urllib.error.HTTPError as answer:
                answer.close()
                return True  # 405 for a GET: Django answers
            except OSError:
                return False
            return True

        wait_until_sync(answering, "gunicorn to answer", within=30)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        self._dir.cleanup()


@contextmanager
def running_gunicorn(env: Mapping[str, str] | None = None) -> Iterator[Gunicorn]:
    web = Gunicorn(env)
    try:
        yield web.start()
    finally:
        web.close()
