"""Shared plumbing of the benchmarks: processes, /proc sampling, limits, statistics, the report.

Every figure the benchmarks print about a server comes from that server process's own
``/proc/<pid>/stat`` (utime + stime) and ``/proc/<pid>/status`` (VmRSS), so the load
generator's cost never leaks into the server's numbers.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime
import importlib.metadata
import math
import multiprocessing
import multiprocessing.connection
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from herald.gateway.activation import handed_over

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS_PATH: Final = ROOT / "docs" / "benchmarks.md"
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
FD_MARGIN: Final = 200  # descriptors a server needs besides its client sockets

_PR_SET_PDEATHSIG: Final = 1


# --- limits


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (inherited by children); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def max_server_clients() -> int:
    """How many client sockets one server process can hold under this machine's fd limit."""
    return raise_fd_limit() - FD_MARGIN


def read_sysctl(name: str) -> str:
    try:
        return Path("/proc/sys", name.replace(".", "/")).read_text().strip()
    except OSError:
        return "?"


def system_limits() -> dict[str, str]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "RLIMIT_NOFILE": f"{soft}/{hard}",
        "net.core.somaxconn": read_sysctl("net.core.somaxconn"),
        "net.ipv4.ip_local_port_range": read_sysctl("net.ipv4.ip_local_port_range").replace("\t", "-"),
        "net.ipv4.tcp_max_syn_backlog": read_sysctl("net.ipv4.tcp_max_syn_backlog"),
    }


# --- /proc sampling


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far, all its threads included."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # The command name may contain spaces: fields start after the closing parenthesis.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss(pid: int) -> int:
    """Resident set size in bytes."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class CpuMeter:
    """CPU seconds used by a set of processes between ``start()`` and ``stop()``."""

    pids: list[int]
    _start: dict[int, float] = field(default_factory=dict)
    _seen: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    wall: float = 0.0
    _t0: float = 0.0

    def start(self) -> CpuMeter:
        self._start = {pid: proc_cpu(pid) for pid in self.pids}
        self._t0 = time.monotonic()
        return self

    def add(self, pid: int, baseline: float = 0.0) -> None:
        """Include a process started after ``start()`` (e.g. a restarted server)."""
        self.pids.append(pid)
        self._start[pid] = baseline

    def sample(self) -> float:
        total = 0.0
        for pid in self.pids:
            with contextlib.suppress(OSError):
                self._seen[pid] = proc_cpu(pid)
            total += self._seen.get(pid, self._start[pid]) - self._start[pid]
        return total

    def stop(self) -> float:
        self.seconds = self.sample()
        self.wall = time.monotonic() - self._t0
        return self.seconds


# --- processes


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the benchmark process dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    os.setpgrp()  # Ctrl-C in the terminal reaches only the benchmark, which stops its servers


_live: set[ServerProcess] = set()


def _stop_all() -> None:
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.kill()


atexit.register(_stop_all)


def install_signal_cleanup() -> None:
    """SIGTERM/SIGHUP end the benchmark like Ctrl-C: finally blocks and atexit stop the servers."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A server started as a child process, ready when ``health_path`` answers 200."""

    def __init__(
        self,
        name: str,
        argv: Callable[[int], list[str]],
        *,
        health_path: str = "/health",
        env: Mapping[str, str] | None = None,
        port: int = 0,
        workdir: Path | None = None,
        listener: socket.socket | None = None,
    ) -> None:
        self.name = name
        self._argv = argv
        self.port = port or free_port()
        #: A listening socket this process holds and hands to every start, as systemd would.
        self.listener = listener
        self.health_path = health_path
        self.env = {**os.environ, **(env or {})}
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            argv, pass_fds = self._argv(self.port), tuple[int, ...]()
            if self.listener is not None:
                argv, pass_fds = handed_over(argv, self.listener.fileno()), (self.listener.fileno(),)
            self.proc = subprocess.Popen(
                argv,
                pass_fds=pass_fds,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=ROOT,
                preexec_fn=_die_with_parent,
            )
        self.starts += 1
        _live.add(self)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}{self.health_path}"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not become healthy in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_grep(self, *needles: str) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if any(n in line for n in needles)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> float:
        """Stop the process; return the CPU seconds it used in its whole life (from wait4)."""
        proc = self.proc
        if proc is None:
            return 0.0
        cpu = 0.0
        if proc.poll() is None:
            proc.send_signal(sig)
            deadline = time.monotonic() + timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    cpu = usage.ru_utime + usage.ru_stime
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    deadline = math.inf
                time.sleep(0.01)
        self.proc = None
        _live.discard(self)
        return cpu

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


# --- source addresses

_IP_BIND_ADDRESS_NO_PORT: Final = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def source_address(worker: int, attempt: int, per_address: int = 4000) -> str:
    """A loopback source address for a client connection.

    One source address gives at most ~28k ephemeral ports (``ip_local_port_range``), fewer
    while old sockets sit in TIME_WAIT after a reconnect storm, so every worker process
    uses its own 127.x.0.0/16 and moves to the next address every ``per_address`` attempts.
    """
    n = attempt // per_address
    return f"127.{10 + worker % 200}.{(n // 250) % 256}.{1 + n % 250}"


def client_socket(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    # Let connect() pick the port per destination instead of bind() per address.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((source, 0))
    return sock


# --- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ratio(value: float, reference: float) -> float:
    if not reference or math.isnan(reference) or math.isnan(value):
        return math.nan
    return value / reference


def fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def fmt_ratio(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    return f"{value:.2f}x"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def note(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the report


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def versions() -> dict[str, str]:
    found = {"Python": platform.python_version()}
    for dist in ("herald-gateway", "aiohttp", "uvloop", "msgspec", "Django", "channels", "channels-redis", "daphne"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "-"
    return found


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        rev = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return f"{rev}{' (src modified)' if dirty else ''}" if rev else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def environment_block(command: str) -> str:
    uname = platform.uname()
    vers = ", ".join(f"{k} {v}" for k, v in versions().items())
    limits = ", ".join(f"{k} {v}" for k, v in system_limits().items())
    return "\n".join(
        [
            f"- command: `{command}`",
            f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
            f"- revision: {git_revision()}",
            f"- versions: {vers}",
            f"- machine: {uname.system} {uname.release} {uname.machine}, {os.cpu_count()} CPUs ({cpu_model()}), "
            f"{_mem_total_gib()} GiB RAM",
            f"- limits: {limits}",
        ]
    )


def _mem_total_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f}"
    except OSError:
        pass
    return "?"


def append_results(title: str, body: str, command: str | None = None) -> None:
    """Append one dated results section to docs/benchmarks.md."""
    command = command or "python -m " + " ".join([_module_name(), *sys.argv[1:]])
    section = f"\n### {title}\n\n{environment_block(command)}\n\n{body.strip()}\n"
    if not RESULTS_PATH.exists():
        RESULTS_PATH.write_text("# Benchmarks\n\n## Results\n")
    with open(RESULTS_PATH, "a") as f:
        f.write(section)
    note(f"results appended to {RESULTS_PATH.relative_to(ROOT)}")


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    return name if isinstance(name, str) else Path(sys.argv[0]).stem


# --- profiling


class Profiler:
    """``py-spy record`` of a process while a phase runs; collapsed stacks, summarised by function."""

    def __init__(self, pid: int, out: Path, rate: int = 250, native: bool | None = None) -> None:
        if native is None:
            native = os.environ.get("BENCH_PROFILE_NATIVE", "") == "1"
        self.out = out
        # The virtual environment's py-spy, also when its bin directory is not on PATH.
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        argv = [py_spy, "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-r", str(rate), "--nolineno"]
        # Native unwinding needs the process paused per sample; Python-only sampling does not.
        argv.append("--native" if native else "--nonblocking")
        self.log = out.with_suffix(".log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        time.sleep(0.5)  # let it attach before the measured phase starts

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def summarize_profile(path: Path, top: int = 12) -> tuple[list[tuple[str, float]], list[tuple[str, float]], int]:
    """(self time share by function, inclusive share by function, samples) of a raw py-spy file."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return [], [], 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short_frame(f) for f in stack.split(";")]
        frames = [f for f in frames if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + count
    if not total:
        return [], [], 0

    def ranked(counts: dict[str, int], python_only: bool) -> list[tuple[str, float]]:
        # Frames on (nearly) every stack, the entry point and the event loop's C frames, say
        # nothing about where the time goes: skip them.
        useful = [
            (name, n)
            for name, n in counts.items()
            if n < total * 0.95 and (not python_only or ".py:" in name) and not name.startswith(_ENTRY_FRAMES)
        ]
        return [(name, n / total) for name, n in sorted(useful, key=lambda kv: -kv[1])[:top]]

    return ranked(own, False), ranked(inclusive, True), total


_ENTRY_FRAMES: Final = ("runners.py:", "__main__.py:", "app.py:run", "__init__.py:run", "<frozen runpy>")


def _short_frame(frame: str) -> str:
    """``flush (herald/gateway/hub.py)`` → ``hub.py:flush``; process/thread headers dropped."""
    frame = frame.strip()
    if frame.startswith(("process ", "thread ")):
        return ""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    file = where.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{file}:{name}" if file else name


def profile_text(path: Path, what: str) -> str:
    own, inclusive, samples = summarize_profile(path)
    if not samples:
        return f"(no py-spy samples for {what}: see {path.with_suffix('.log')})"
    rows = [[f"`{n}`", f"{s * 100:.1f}%"] for n, s in own]
    rows2 = [[f"`{n}`", f"{s * 100:.1f}%"] for n, s in inclusive]
    return (
        f"py-spy, Herald, {what} ({samples:,} samples while busy), self time:\n\n"
        + table(["function", "share"], rows)
        + "\n\ninclusive (Python functions):\n\n"
        + table(["function", "share"], rows2)
    )


class WorkerPool:
    """Load-generator processes, each driven over its own pipe with ``(op, args)`` messages.

    A worker answers every message with one dict (``{"error": ...}`` when the op failed) and
    exits on ``("quit", {})``. Spawned, not forked: the orchestrator holds sockets and threads.
    """

    def __init__(self, workers: int, target: Callable[..., None], name: str, first_index: int = 0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for i in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, first_index + i), daemon=True, name=f"{name}-{i}")
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    def __len__(self) -> int:
        return len(self.pipes)

    def call(self, what: str, op: str, per_worker: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Send each worker its share of ``op`` and collect every reply; raise on the first error."""
        for pipe, args in zip(self.pipes, per_worker, strict=True):
            pipe.send((op, dict(args)))
        replies: list[dict[str, Any]] = [pipe.recv() for pipe in self.pipes]
        for reply in replies:
            if "error" in reply:
                raise RuntimeError(f"{what} {op}: {reply['error']}")
        return replies

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("quit", {}))
        deadline = time.monotonic() + 5
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(1)
        for pipe in self.pipes:
            pipe.close()
