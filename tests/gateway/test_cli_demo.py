"""``make run`` stops on a signal sent to its top process, not only on Ctrl-C to the terminal's
process group: the demo's launcher, gateway, gunicorn (and its workers) and Celery all exit."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.timing import seconds, wait_until_sync

ROOT = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    """Every live process under ``pid`` (children, their children...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name may hold spaces and parentheses: the fields after the last ")".
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def _terminal_signals() -> None:
    """SIGINT and SIGQUIT as a terminal or a supervisor leaves them. ``make test`` runs its test
    lanes in the background of a script, where the shell ignores both, and an ignored signal
    stays ignored across exec: ``make`` would then rightly take no notice of ``kill -INT``."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


class Demo:
    """``make run`` (or the script it runs) on free ports and a fresh database, its output kept."""

    def __init__(self, argv: list[str], data: Path) -> None:
        env = {
            **os.environ,
            "DEMO_WEB_PORT": str(free_port()),
            "DEMO_GATEWAY_PORT": str(free_port()),
            "DEMO_DATA_DIR": str(data),
            "DEMO_DB_PATH": str(data / "demo.sqlite3"),
            "HERALD_SKIP_BROWSER": "1",
        }
        self.output: list[str] = []
        # A session of its own, as a terminal would give it: nothing the test does reaches it by accident.
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=_terminal_signals,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.started: set[int] = set()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))

    def wait_running(self) -> set[int]:
        wait_until_sync(
            lambda: any("Herald demo is running" in line for line in self.output) or self.proc.poll() is not None,
            lambda: f"the demo to start: {self.output}",
            within=120,
        )
        assert self.proc.poll() is None, "\n".join(self.output)
        self.started = descendants(self.proc.pid)
        return self.started

    def close(self) -> None:
        """Whatever is still running of what this demo started is killed (by pid, nothing else)."""
        for pid in self.started | {self.proc.pid}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=seconds(10))
        self._reader.join(timeout=seconds(5))
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.mark.parametrize(
    ("argv", "sig"),
    [
        # make passes a SIGTERM on to its children, but not a SIGINT: the case that needed a fix.
        (["make", "-s", "run"], signal.SIGINT),
        (["./scripts/run-demo"], signal.SIGTERM),  # the launcher itself is the top process
    ],
    ids=["make-SIGINT", "run-demo-SIGTERM"],
)
def test_a_signal_to_the_top_process_stops_every_demo_process(argv: list[str], sig: int, tmp_path: Path) -> None:
    demo = Demo(argv, tmp_path)
    try:
        processes = demo.wait_running()
        # The launcher, a gateway, gunicorn with its workers, a Celery worker.
        assert len(processes) >= 5, (processes, demo.output)
        os.kill(demo.proc.pid, sig)
        wait_until_sync(
            lambda: not any(alive(pid) for pid in processes | {demo.proc.pid}),
            lambda: f"every demo process to exit; still alive: {[p for p in processes if alive(p)]}; {demo.output}",
            within=60,
        )
        assert "demo: stopped" in demo.output, demo.output
    finally:
        demo.close()
