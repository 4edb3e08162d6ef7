"""Run the ``herald`` command line as a real subprocess, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from tests.support.timing import seconds

HERALD = [sys.executable, "-m", "herald.gateway"]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test environment without HERALD_* variables (they would override the config under
    test, or draw a warning), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    return {**env, **(extra or {})}


def herald(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: str | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """``herald <args>`` to completion; ``env`` adds to a clean environment."""
    return subprocess.run(
        [*HERALD, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=seconds(timeout),
        check=False,
        env=clean_env(env),
        cwd=cwd,
    )
