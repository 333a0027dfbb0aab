"""The README's run command (`python -m devstack`) started on free ports, as a pytest fixture."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local_stack():
    """The README's run command, on free ports. Yields (api URL, site URL, banner)."""
    ports = {name: free_port() for name in ("API", "SITE", "STRIPE", "MOTO", "HOSTED_UI")}
    env = {**os.environ, **{f"DEVSTACK_{k}_PORT": str(v) for k, v in ports.items()}}
    for name in ("AWS_ENDPOINT_URL", "STRIPE_API_BASE", "STRIPE_API_KEY", "COGNITO_USER_POOL_ID", "COGNITO_DOMAIN"):
        env.pop(name, None)
    process = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    banner, deadline = "", time.time() + 60
    while "Press Ctrl+C" not in banner and time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        banner += line
    try:
        assert "Press Ctrl+C" in banner, banner
        yield f"http://127.0.0.1:{ports['API']}", f"http://127.0.0.1:{ports['SITE']}/", banner
    finally:
        process.terminate()
        process.wait(timeout=10)
