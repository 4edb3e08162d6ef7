"""Installing Herald draws no deprecation warning from the build backend (PEP 639 license metadata)."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from tests.support.timing import seconds

ROOT = Path(__file__).resolve().parents[2]


def test_pip_install_editable_prints_no_build_warning(tmp_path: Path) -> None:
    venv.create(tmp_path / "venv", with_pip=False)
    target = tmp_path / "venv" / "bin" / "python"
    # This pip (the project's own, recent enough to relay build-backend warnings) installs
    # into the fresh venv; --no-deps: the metadata build is what warned, not the dependencies.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(target), "install", "--no-deps", "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=seconds(300),
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    noise = [line for line in output.splitlines() if "deprecat" in line.lower() or "BackendWarning" in line]
    assert noise == [], "\n".join(noise)
    metadata = subprocess.run(
        [
            str(target),
            "-c",
            "import importlib.metadata as m; print(m.metadata('herald-gateway')['License-Expression'])",
        ],
        capture_output=True,
        text=True,
        timeout=seconds(60),
        check=True,
    )
    assert metadata.stdout.strip() == "MIT"
