"""`make run` really works: start the local stack as a user would and follow a plain link over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support.hosted_ui_client import fetch, sign_in

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


def test_banner_names_every_stand_in(local_stack):
    api, site, banner = local_stack
    for text in (api, site, "NOT Stripe", "NOT Cognito", "moto", "ada@example.com"):
        assert text in banner
    assert urllib.request.urlopen(f"{api}/health").read() == b'{"status": "ok"}'
    config = urllib.request.urlopen(site + "config.js").read().decode()
    assert api in config and "hostedUiUrl" in config


def test_plain_link_round_trip_for_two_users(local_stack):
    api, site, banner = local_stack
    password = banner.split("password: ")[1].split()[0]
    customers = []
    for username in ("ada@example.com", "grace@example.com"):
        status, authorize, _, cookies = fetch(f"{api}/portal", headers={"Accept": "text/html"})
        assert status == 302 and cookies and cookies[0].startswith("__Host-portal_login=")
        params = sign_in(authorize, username, password, callback=f"{api}/portal/callback")
        status, portal, _, _ = fetch(f"{api}/portal/callback?{urllib.parse.urlencode(params)}",
                                     headers={"Cookie": cookies[0].split(";")[0], "Accept": "text/html"})
        assert status == 302, portal
        page = urllib.request.urlopen(portal).read().decode()
        assert "Stripe stand-in" in page and f'href="{site}"' in page
        customers.append(page.split("<code id=customer>")[1].split("<")[0])
    assert customers[0] != customers[1]
