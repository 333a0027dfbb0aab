"""The operator's command installs as pipx installs it (a virtualenv of its own, from this project) on the
oldest Python it claims, and answers there."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def oldest_python() -> str:
    """The CLI's oldest supported Python: PYTHON311, else python3.11 on the PATH (the workflow's setup-python puts
    it there), else a pyenv 3.11 of this user's. Skipped, saying why, on a machine that has none."""
    claimed = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert claimed == ">=3.11"
    candidates = [os.environ.get("PYTHON311"), shutil.which("python3.11"),
                  *sorted(glob.glob(str(Path.home() / ".pyenv" / "versions" / "3.11*" / "bin" / "python3.11")))]
    for found in candidates:
        if found and Path(found).is_file():
            return found
    pytest.skip("no Python 3.11 here (PYTHON311, python3.11 on the PATH, or pyenv): the CLI's oldest supported "
                "Python is checked where one is (the GitHub workflow installs it)")


def project_copy(directory: Path) -> Path:
    """What the wheel is built from, copied: an in-tree build would leave build/ and an egg-info in the layer."""
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, directory / name)
    for package in ("layers/core/portal_gateway", "cli/portal_admin"):
        shutil.copytree(ROOT / package, directory / package, ignore=shutil.ignore_patterns("__pycache__"))
    return directory


def test_the_admin_command_installs_and_runs_on_python_3_11(tmp_path):
    (tmp_path / "source").mkdir()
    source = project_copy(tmp_path / "source")
    venv = tmp_path / "venv"
    subprocess.run([oldest_python(), "-m", "venv", str(venv)], check=True, timeout=120)  # noqa: S603
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", str(source)], check=True,  # noqa: S603
                   timeout=300, capture_output=True)
    command = str(venv / "bin" / "stripe-portal-admin")
    version = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=60)  # noqa: S603
    assert version.returncode == 0 and version.stdout.startswith("stripe-portal-admin ")
    usage = subprocess.run([command, "check"], capture_output=True, text=True, timeout=60)  # noqa: S603
    assert usage.returncode == 2 and usage.stderr.startswith("error: nothing to check")
