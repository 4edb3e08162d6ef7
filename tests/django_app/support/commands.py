"""``manage.py`` commands of the test project, run as separate processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from tests.django_app.support.worker import ROOT
from tests.support.timing import seconds


def command_env(**env: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.django_app.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **env,
    }


def manage(
    *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py <args>`` to completion; its exit status, stdout and stderr."""
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        env=command_env(**(env or {})),
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=seconds(60),
    )


def start_manage(*args: str, log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a long-running ``manage.py <args>`` with its output in ``log``."""
    out: IO[bytes]
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "django", *args],
            env=command_env(**(env or {})),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
