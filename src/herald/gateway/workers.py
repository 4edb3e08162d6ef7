"""The process supervisor behind ``herald serve --workers N``: N nodes, one port, every core.

One Python process runs its event loop on one core. A supervisor forks N worker processes, each
a complete node with its own name (``<name>_w<i>``), sharing the port:

* **The port.** Without socket activation, each worker binds its own listening socket with
  ``SO_REUSEPORT`` and the kernel spreads new connections over them evenly. With socket
  activation (a supervisor such as systemd holds the socket), the workers share the inherited
  socket and accept from it in turn. Either way a zero-downtime restart works as for one node.
* **Crashes.** A worker that dies is logged and started again (after a growing pause if it
  keeps dying at once); its clients reconnect, to any worker, and recover from the shared
  engine. Workers that cannot even start end the supervisor with an error.
* **Stopping.** SIGTERM or SIGINT is passed on to every worker, which drains as one node does
  (``shutdown_timeout`` each); a worker still running well after that is killed.

The supervisor itself holds no connections and runs no event loop, so forking is safe.
Workers share nothing but the engine, so more than one needs Redis (the config check says so).
Limits Centrifugo applies per node (``client_connection_limit``, the admission rate) apply per
worker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable
from types import FrameType

from herald.gateway.config import Config, worker_count

log = logging.getLogger("herald.workers")

POLL = 0.1  # how often the supervisor looks for exited workers
QUICK_EXIT = 1.0  # a worker that exits sooner than this after its start failed to start
MAX_QUICK_EXITS = 5  # ...this many times in a row: give up
STOP_GRACE = 5.0  # beyond shutdown_timeout, before a stopping worker is killed
RESTART_PAUSE_MAX = 10.0


class PortUnavailable(Exception):
    """The workers could not listen on the configured address and port."""


def check_port(config: Config) -> None:
    """Bind and release the port once, so a taken port is reported here rather than by N
    workers dying one after another."""
    family = socket.AF_INET6 if ":" in config.address else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.bind((config.address, config.port))
    except OSError as exc:
        raise PortUnavailable(f"cannot listen on {config.address or '*'}:{config.port}: {exc.strerror}") from None
    finally:
        probe.close()


class Supervisor:
    def __init__(
        self,
        config: Config,
        listener: socket.socket | None,
        run_worker: Callable[[Config, socket.socket | None], None],
    ) -> None:
        self.config = config
        self.listener = listener
        self.count = worker_count(config)
        self._run_worker = run_worker
        port = config.port if listener is None else listener.getsockname()[1]
        self._base_name = config.name or f"{socket.gethostname()}_{port}"
        self._children: dict[int, tuple[int, float]] = {}  # pid -> (worker index, start time)
        self._quick_exits: dict[int, int] = {}  # worker index -> consecutive failed starts
        self._pending: dict[int, float] = {}  # worker index -> monotonic time to start it again
        self._stop_deadline: float | None = None
        self._failed = False

    # --- the supervisor's loop

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop_signal)
        where = f"{self.config.address or '*'}:{self.config.port}" if self.listener is None else "the inherited socket"
        log.info("herald supervisor %d: %d workers on %s", os.getpid(), self.count, where)
        for index in range(self.count):
            self._start(index)
        while self._children or (self._pending and self._stop_deadline is None):
            self._reap()
            now = time.monotonic()
            if self._stop_deadline is None:
                for index, due in list(self._pending.items()):
                    if now >= due:
                        del self._pending[index]
                        self._start(index)
            elif now > self._stop_deadline:
                for pid in list(self._children):
                    log.warning("worker pid %d did not stop in time: killing it", pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self._stop_deadline = now + STOP_GRACE  # then reap what is left
            time.sleep(POLL)
        log.info("herald supervisor %d: all workers stopped", os.getpid())
        return 1 if self._failed else 0

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Pass SIGTERM on to every worker (each drains); stop starting new ones."""
        if self._stop_deadline is not None:
            return
        self._stop_deadline = time.monotonic() + (self.config.shutdown_timeout or 60.0) + STOP_GRACE
        self._pending.clear()
        log.info("herald supervisor %d: stopping %d workers", os.getpid(), len(self._children))
        for pid in list(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self._children.clear()
                return
            if pid == 0:
                return
            entry = self._children.pop(pid, None)
            if entry is not None:
                self._exited(pid, *entry, status)

    def _exited(self, pid: int, index: int, started: float, status: int) -> None:
        if os.WIFSIGNALED(status):
            how = f"was killed by signal {os.WTERMSIG(status)}"
        else:
            how = f"exited with status {os.waitstatus_to_exitcode(status)}"
        if self._stop_deadline is not None:
            if status != 0:
                log.warning("worker %d (pid %d) %s while stopping", index, pid, how)
            return
        quick = time.monotonic() - started < QUICK_EXIT
        self._quick_exits[index] = self._quick_exits.get(index, 0) + 1 if quick else 0
        if self._quick_exits[index] >= MAX_QUICK_EXITS:
            log.error("worker %d %s %d times right after starting: giving up", index, how, MAX_QUICK_EXITS)
            self._failed = True
            self.stop()
            return
        pause = min(RESTART_PAUSE_MAX, 0.5 * 2 ** self._quick_exits[index]) if quick else 0.0
        log.warning("worker %d (pid %d) %s; starting it again in %.1fs", index, pid, how, pause)
        self._pending[index] = time.monotonic() + pause

    # --- a worker

    def _start(self, index: int) -> None:
        config = dataclasses.replace(
            self.config,
            name=f"{self._base_name}_w{index}",
            # Without a supervisor's socket, every worker binds the port itself.
            reuse_port=self.config.reuse_port or self.listener is None,
            workers=1,
        )
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)  # the node installs its own handlers
                self._run_worker(config, self.listener)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        self._children[pid] = (index, time.monotonic())
        log.info("worker %d started (pid %d, node %s)", index, pid, config.name)


def supervise(config: Config, listener: socket.socket | None) -> int:
    """Run ``worker_count(config)`` workers until SIGTERM/SIGINT; the process's exit code."""
    from herald.gateway.app import configure_logging, run

    configure_logging(config)
    if listener is None:
        try:
            check_port(config)
        except PortUnavailable as exc:
            log.error("%s", exc)
            return 1
    return Supervisor(config, listener, run).run()
