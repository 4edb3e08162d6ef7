"""Run the whole demo: Herald gateway node(s), the Django app under gunicorn, a Celery worker.

``python examples/demo/launcher.py`` (what ``make run`` ends in) migrates and seeds the
SQLite database, starts every process, prints the address and the logins, and stops
everything on Ctrl-C, or on SIGINT/SIGTERM sent to it or to the ``make`` that started it.
``--nodes 2`` runs two gateway nodes on the Redis engine.

Environment (all optional):

=====================  ==========================================================
``DEMO_HOST``          address everything binds to (``127.0.0.1``)
``DEMO_WEB_PORT``      Django under gunicorn (``8001``)
``DEMO_GATEWAY_PORT``  the gateway; node *n* of several listens on this + 10·n (``8000``)
``DEMO_DATA_DIR``      the broker folder and the logs (a folder under the system temp dir)
``DEMO_DB_PATH``       the SQLite file (``examples/demo/demo.sqlite3``)
``REDIS_URL``          Celery uses Redis instead of its filesystem broker; the
                       multi-node variant also puts the gateway nodes on it
=====================  ==========================================================

The browser tests import this module to run the same processes on free ports.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEMO_DIR = Path(__file__).resolve().parent
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Shared by the gateway (proxy_static_http_headers) and Django (REALTIME_PROXY_SECRET).
DEFAULT_PROXY_SECRET = "demo-proxy-secret-change-me-demo-proxy-secret"
# The proxy calls the live chat page needs (proxy mode, herald.django.proxy). No refresh
# endpoint: with one, every connection would be refreshed by the server, including the
# dashboard's token connections, whose own token refresh the demo shows.
PROXY_EVENTS = ("connect", "subscribe", "publish", "rpc")


def http_ok(url: str) -> Callable[[Service], bool]:
    def ready(service: Service) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    return ready


def log_matches(pattern: str) -> Callable[[Service], bool]:
    regex = re.compile(pattern, re.MULTILINE)

    def ready(service: Service) -> bool:
        return regex.search(service.log()) is not None

    return ready


class Service:
    """One child process with its output in a log file, started in its own session so a
    Ctrl-C in the terminal reaches only the launcher, which stops children in order."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        ready: Callable[[Service], bool],
        cwd: Path = DEMO_DIR,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.ready = ready
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- {time.strftime('%H:%M:%S')} starting {self.name}\n".encode())
            log.flush()
            self._log_start = log.tell()
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.ready(self):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                output = self.log()
                self.stop()
                raise RuntimeError(f"{self.name} did not become ready in {timeout:.0f}s:\n{output}")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (every service here shuts down gracefully on it), SIGKILL if it hangs."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def log(self) -> str:
        """What this run of the process wrote (the file keeps earlier runs too)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class DemoConfig:
    host: str = "127.0.0.1"
    web_port: int = 8001
    gateway_ports: list[int] = field(default_factory=lambda: [8000])
    data_dir: Path | None = None  # None: the settings' default, under the temp dir
    db_path: Path | None = None  # None: examples/demo/demo.sqlite3
    redis_url: str = ""  # Celery's broker; empty = the filesystem broker
    engine: str = "memory"  # the gateway's engine; "redis" for several nodes
    extra_env: dict[str, str] = field(default_factory=dict)  # more DEMO_*/HERALD_* settings
    proxy_secret: str = field(default_factory=lambda: os.environ.get("DEMO_PROXY_SECRET") or DEFAULT_PROXY_SECRET)

    @classmethod
    def from_environment(cls, nodes: int = 1) -> DemoConfig:
        env = os.environ
        base = int(env.get("DEMO_GATEWAY_PORT") or 8000)
        redis_url = env.get("REDIS_URL", "")
        if nodes > 1 and not redis_url:
            redis_url = DEFAULT_REDIS_URL
        return cls(
            host=env.get("DEMO_HOST") or "127.0.0.1",
            web_port=int(env.get("DEMO_WEB_PORT") or 8001),
            gateway_ports=[base + 10 * n for n in range(nodes)],
            data_dir=Path(env["DEMO_DATA_DIR"]) if env.get("DEMO_DATA_DIR") else None,
            db_path=Path(env["DEMO_DB_PATH"]) if env.get("DEMO_DB_PATH") else None,
            redis_url=redis_url,
            engine="redis" if nodes > 1 else "memory",
        )

    @property
    def web_url(self) -> str:
        return f"http://{self.host}:{self.web_port}"

    def gateway_url(self, node: int = 0) -> str:
        return f"http://{self.host}:{self.gateway_ports[node]}"

    def django_env(self) -> dict[str, str]:
        """What every Django process (web, worker, manage.py) is told."""
        env = {
            "DJANGO_SETTINGS_MODULE": "demo_site.settings",
            "DEMO_HOST": self.host,
            "DEMO_GATEWAY_PORT": str(self.gateway_ports[0]),
            "DEMO_API_URL": f"{self.gateway_url(0)}/api",
            "DEMO_SOCKET_URLS": ",".join(
                f"ws://{self.host}:{port}/connection/websocket" for port in self.gateway_ports
            ),
            "REDIS_URL": self.redis_url,
            "DEMO_PROXY_SECRET": self.proxy_secret,
            "PYTHONUNBUFFERED": "1",
        }
        if self.data_dir is not None:
            env["DEMO_DATA_DIR"] = str(self.data_dir)
        if self.db_path is not None:
            env["DEMO_DB_PATH"] = str(self.db_path)
        return {**os.environ, **env, **self.extra_env}

    def gateway_config(self) -> dict[str, Any]:
        """``herald.json`` plus the proxy endpoints on this run's web port (they change with it)
        and the ``chat`` namespace whose subscribe and publish Django decides."""
        config: dict[str, Any] = json.loads((DEMO_DIR / "herald.json").read_text())
        for event in PROXY_EVENTS:
            config[f"proxy_{event}_endpoint"] = f"{self.web_url}/realtime/proxy/{event}/"
            config[f"proxy_{event}_timeout"] = "5s"
        # The browser's cookie (the session) goes with every proxy call; the secret proves
        # to Django that the caller is this gateway.
        config["proxy_http_headers"] = ["Cookie"]
        config["proxy_static_http_headers"] = {"X-Realtime-Proxy-Secret": self.proxy_secret}
        namespaces = [*config.get("namespaces", [])]
        namespaces.append({"name": "chat", "proxy_subscribe": True, "proxy_publish": True})
        config["namespaces"] = namespaces
        return config

    def gateway_env(self, node: int) -> dict[str, str]:
        # The page is served from the web port: that is the Origin the browser sends.
        origins = [f"http://{host}:{self.web_port}" for host in dict.fromkeys([self.host, "127.0.0.1", "localhost"])]
        env = {
            **os.environ,
            "HERALD_ALLOWED_ORIGINS": ",".join(origins),
            "HERALD_ENGINE": self.engine,
            "HERALD_NAME": f"demo-node-{node + 1}",
        }
        if self.engine == "redis":
            env["HERALD_REDIS_ADDRESS"] = self.redis_url or DEFAULT_REDIS_URL
            env["HERALD_REDIS_PREFIX"] = "herald-demo"
        return {**env, **self.extra_env}


class Demo:
    """The demo's processes: ``prepare()`` once, then ``start()`` / ``stop()``."""

    def __init__(self, config: DemoConfig, log_dir: Path) -> None:
        self.config = config
        self.log_dir = log_dir
        python = sys.executable
        django_env = config.django_env()
        log_dir.mkdir(parents=True, exist_ok=True)
        self.gateway_config_path = log_dir / "herald-gateway.json"
        self.gateway_config_path.write_text(json.dumps(config.gateway_config(), indent=2))
        self.gateways = [
            Service(
                f"gateway {node + 1}",
                [
                    python,
                    "-m",
                    "herald.gateway",
                    "serve",
                    "--config",
                    str(self.gateway_config_path),
                    "--address",
                    config.host,
                    "--port",
                    str(port),
                ],
                env=config.gateway_env(node),
                log_path=log_dir / f"gateway-{node + 1}.log",
                ready=http_ok(f"{config.gateway_url(node)}/health"),
            )
            for node, port in enumerate(config.gateway_ports)
        ]
        self.web = Service(
            "web (gunicorn)",
            [
                python,
                "-m",
                "gunicorn",
                "demo_site.wsgi:application",
                "--bind",
                f"{config.host}:{config.web_port}",
                "--workers",
                "2",
                "--threads",
                "4",
                "--graceful-timeout",
                "5",
                "--access-logfile",
                "-",
            ],
            env=django_env,
            log_path=log_dir / "web.log",
            ready=http_ok(f"{config.web_url}/healthz/"),
        )
        self.worker = Service(
            "worker (celery)",
            [
                python,
                "-m",
                "celery",
                "-A",
                "demo_site",
                "worker",
                "--pool",
                "solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
                "--hostname",
                f"demo-{config.web_port}@%h",
            ],
            env=django_env,
            log_path=log_dir / "worker.log",
            ready=log_matches(r"\S+@\S+ ready\."),
        )

    @property
    def services(self) -> list[Service]:
        return [*self.gateways, self.worker, self.web]

    def manage(self, *args: str) -> str:
        """Run ``manage.py`` with the demo's environment; its output, or RuntimeError."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=DEMO_DIR,
            env=self.config.django_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done.stdout

    def prepare(self) -> str:
        """Migrate and seed the database; returns the seed's list of logins."""
        self.manage("migrate", "--noinput", "--verbosity", "0")
        return self.manage("seed_demo")

    def start(self) -> None:
        try:
            for service in self.services:
                service.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        # The web app first (no new work), then the worker (finishes its task), then the
        # gateways (they drain their connections).
        for service in reversed(self.services):
            service.stop()

    def crashed(self) -> Service | None:
        return next((s for s in self.services if not s.running), None)


def default_log_dir(config: DemoConfig) -> Path:
    if config.data_dir is not None:
        return config.data_dir / "logs"
    # Ask the settings where their data folder is, so logs sit beside the broker folder.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.DEMO_DATA_DIR)",
        ],
        cwd=DEMO_DIR,
        env=config.django_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip()) / "logs"


class MakeParent:
    """Notices ``kill -INT <pid of make>`` when ``make run`` started the launcher.

    GNU make passes a SIGTERM on to its children, but not a SIGINT, SIGHUP or SIGQUIT: it
    expects the terminal to have sent those to the whole process group, so it only waits
    for its children, and the demo would run on. What make does first, though, is put the
    signal's disposition back to the default (so that re-raising it later kills make): the
    signal leaves the "caught" mask in ``/proc/<make>/status``. That change, or make being
    gone altogether, is the launcher's cue to stop as if it had been signalled itself.
    """

    _FATAL = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)

    def __init__(self, pid: int, caught: int) -> None:
        self.pid = pid
        self._caught = caught

    @classmethod
    def watch(cls) -> MakeParent | None:
        """The watcher, when the parent is make (on Linux); None otherwise."""
        pid = os.getppid()
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() not in ("make", "gmake"):
                return None
        except OSError:
            return None
        caught = cls._caught_fatal(pid)
        return cls(pid, caught) if caught else None

    @classmethod
    def _caught_fatal(cls, pid: int) -> int:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return 0
        mask = next((int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:")), 0)
        return mask & sum(1 << (sig - 1) for sig in cls._FATAL)

    def signalled(self) -> bool:
        if os.getppid() != self.pid:
            return True  # make is gone: nobody is left to stop the demo but us
        return self._caught_fatal(self.pid) != self._caught


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Herald demo")
    parser.add_argument("--nodes", type=int, default=1, help="gateway nodes; 2 or more run on the Redis engine")
    args = parser.parse_args(argv)
    config = DemoConfig.from_environment(nodes=max(1, args.nodes))
    demo = Demo(config, default_log_dir(config))

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())

    print("demo: migrating and seeding the SQLite database", flush=True)
    logins = demo.prepare()
    broker = f"Redis at {config.redis_url}" if config.redis_url else "the filesystem (no server)"
    engine = "Redis engine" if config.engine == "redis" else "memory engine"
    print(
        f"demo: starting {len(config.gateway_ports)} gateway node(s) ({engine}), gunicorn, "
        f"and a Celery worker whose broker is {broker}",
        flush=True,
    )
    try:
        demo.start()
    except RuntimeError as exc:
        print(f"demo: could not start: {exc}", file=sys.stderr)
        return 1
    nodes = ", ".join(f"{config.gateway_url(n)} (pid {gw.pid})" for n, gw in enumerate(demo.gateways))
    print(
        f"""
  Herald demo is running:  {config.web_url}/

  Log in as (password "demo"):
{logins.rstrip()}

  Open two windows as alice and bob (same tenant) and one as carol (the other tenant),
  press "New order" and watch the orders flip to paid. "Live chat (proxy mode)" opens a
  chat with no token: the gateway asks Django about each connect, subscribe and line. From a shell:
      .venv/bin/python examples/demo/manage.py create_order alice
  (with the same DEMO_* / REDIS_URL variables as this launcher, if you set any)

  gateway: {nodes}
  logs:    {demo.log_dir}
  Stop a gateway (kill <pid>) to watch the pages reconnect; the demo starts it again.
  Ctrl-C stops everything.
""",
        flush=True,
    )
    code = 0
    make = MakeParent.watch()
    while not stopping.wait(0.5):
        if make is not None and make.signalled():
            print("demo: make was interrupted", flush=True)
            break
        crashed = demo.crashed()
        if crashed is not None and crashed in demo.gateways:
            # Stopping a gateway node (kill <pid>) is part of the demo: its clients reconnect
            # and recover, or reload their state. Bring it back after a short pause.
            print(f"demo: {crashed.name} stopped; starting it again in 2 s", flush=True)
            if stopping.wait(2.0):
                break
            try:
                crashed.start()
            except RuntimeError as exc:
                print(f"demo: {exc}", file=sys.stderr)
                code = 1
                break
            print(f"demo: {crashed.name} is back", flush=True)
        elif crashed is not None:
            print(f"demo: {crashed.name} stopped unexpectedly:\n{crashed.log()[-3000:]}", file=sys.stderr)
            code = 1
            break
    print("demo: stopping", flush=True)
    demo.stop()
    print("demo: stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
