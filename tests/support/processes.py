"""Stopping the subprocesses the tests start: a signal, a bounded wait, then SIGKILL."""

from __future__ import annotations

import signal
import subprocess

from tests.support.timing import seconds


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Send ``sig`` and wait ``timeout`` time units for the exit; kill the process if it hangs."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=seconds(timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
