"""`make run` really works: start the local stack as a user would and click through it over HTTP."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_local_stack_signs_in_and_lands_on_the_users_portal():
    ports = {name: free_port() for name in ("API", "SITE", "STRIPE", "MOTO")}
    env = {**os.environ, **{f"DEVSTACK_{k}_PORT": str(v) for k, v in ports.items()}}
    for name in ("AWS_ENDPOINT_URL", "STRIPE_API_BASE"):
        env.pop(name, None)
    process = subprocess.Popen([sys.executable, "-m", "devstack"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        banner = ""
        deadline = time.time() + 60
        while "Press Ctrl+C" not in banner and time.time() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            banner += line
        assert "Press Ctrl+C" in banner, banner
        api, site = f"http://127.0.0.1:{ports['API']}", f"http://127.0.0.1:{ports['SITE']}"
        assert api in banner and site in banner and "NOT Stripe" in banner
        assert urllib.request.urlopen(f"{api}/health").read() == b'{"status": "ok"}'

        pages = {}
        for user in ("ada@example.com", "grace@example.com"):
            page = urllib.request.urlopen(site + "/", data=b"username=" + urllib.parse.quote(user).encode()).read()
            token = re.search(rb'name=id_token value="([^"]+)"', page).group(1).decode()
            request = urllib.request.Request(f"{api}/portal", data=urllib.parse.urlencode({"id_token": token}).encode(),
                                             headers={"Content-Type": "application/x-www-form-urlencoded"})
            try:
                urllib.request.build_opener(NoRedirect).open(request)
                raise AssertionError("expected a redirect")
            except urllib.error.HTTPError as redirect:
                assert redirect.code == 303
                portal = urllib.request.urlopen(redirect.headers["Location"]).read().decode()
            assert "Stripe stand-in" in portal and f'href="{site}/"' in portal
            pages[user] = re.search(r"<code id=customer>(cus_\w+)</code>", portal).group(1)
        assert pages["ada@example.com"] != pages["grace@example.com"]
    finally:
        process.terminate()
        process.wait(timeout=10)
