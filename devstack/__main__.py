"""`make run`: the whole service on loopback with no AWS account, no Stripe account and no network.

Starts moto (Cognito, Secrets Manager, DynamoDB) provisioned like the stack, the Stripe stand-in, the API
(the real lambda_handler behind an HTTP API v2 adapter) and a small demo site to sign in and click.
"""

from __future__ import annotations

import html
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from devstack.aws_standin import MotoServer, provision
from devstack.http_api import load_handler_module, serve
from devstack.stripe_standin import StripeStandin, fake_key

HOST = os.environ.get("DEVSTACK_HOST", "127.0.0.1")
API_PORT = int(os.environ.get("DEVSTACK_API_PORT", "3000"))
SITE_PORT = int(os.environ.get("DEVSTACK_SITE_PORT", "8000"))
STRIPE_PORT = int(os.environ.get("DEVSTACK_STRIPE_PORT", "12111"))
MOTO_PORT = int(os.environ.get("DEVSTACK_MOTO_PORT", "5055"))
DEMO_USERS = [("ada@example.com", "Ada Lovelace"), ("grace@example.com", "Grace Hopper")]
DEMO_PASSWORD = "Demo-Password-1"


def site_handler(environment, api_url: str):
    class Site(BaseHTTPRequestHandler):
        def do_GET(self):
            self._page(sign_in_page(api_url))

        def do_POST(self):
            length = min(int(self.headers.get("Content-Length") or 0), 4096)
            form = parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
            username = (form.get("username") or [""])[0]
            try:
                tokens = environment.sign_in(username, DEMO_PASSWORD)
            except Exception:  # noqa: BLE001 - any sign-in failure just shows the form again
                self._page(sign_in_page(api_url, "Unknown demo user."), status=401)
                return
            self._page(signed_in_page(api_url, username, tokens["IdToken"]))

        def _page(self, page: str, status: int = 200):
            body = page.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Site


def sign_in_page(api_url: str, error: str = "") -> str:
    options = "".join(f'<option value="{html.escape(u)}">{html.escape(n)} ({html.escape(u)})</option>'
                      for u, n in DEMO_USERS)
    return (
        "<!doctype html><meta charset=utf-8><title>Demo site</title>"
        "<h1>Demo static site</h1><p>Local development only: users live in moto, billing in the Stripe stand-in.</p>"
        f"<p style='color:#b00'>{html.escape(error)}</p>"
        f"<form method=post><label>Sign in as <select name=username>{options}</select></label> "
        "<button id=sign-in>Sign in</button></form>"
        f"<p><a href=\"{html.escape(api_url)}/portal\">Manage billing (without signing in: shows the 401 page)</a></p>"
    )


def signed_in_page(api_url: str, username: str, id_token: str) -> str:
    # The token stays in the page (a hidden field and a JS variable), never in a URL.
    return (
        "<!doctype html><meta charset=utf-8><title>Demo site</title>"
        f"<h1>Signed in as {html.escape(username)}</h1>"
        f"<form method=post action=\"{html.escape(api_url)}/portal\">"
        f"<input type=hidden name=id_token value=\"{html.escape(id_token)}\">"
        "<button id=form-portal>Manage billing (form post)</button></form>"
        "<p><button id=fetch-portal>Manage billing (fetch + JSON)</button></p>"
        "<script>"
        f"const idToken = {json.dumps(id_token)};"
        "document.getElementById('fetch-portal').onclick = async () => {"
        f"  const r = await fetch({json.dumps(api_url + '/portal')}, "
        "{headers: {Authorization: 'Bearer ' + idToken, Accept: 'application/json'}});"
        "  const data = await r.json(); if (data.url) location.href = data.url; else alert(data.message);"
        "};</script><p><a href=\"/\">Sign out</a></p>"
    )


def main() -> int:
    print("Starting the local stack (stand-ins, no network needed)...", flush=True)
    moto = MotoServer(HOST, MOTO_PORT)
    stripe_standin = StripeStandin(HOST, STRIPE_PORT).start()
    key = stripe_standin.add_key(fake_key("sk", "test"))
    stripe_standin.create_default_portal_configuration("test")
    environment = provision(moto, stripe_key=key)
    for username, name in DEMO_USERS:
        environment.add_user(username, DEMO_PASSWORD, email=username, name=name)

    api_url = f"http://{HOST}:{API_PORT}"
    site_url = f"http://{HOST}:{SITE_PORT}"
    os.environ.update(environment.service_env(stripe_api_base=stripe_standin.base_url, return_url=site_url + "/",
                                              ALLOWED_RETURN_URLS=site_url))
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO")
    module = load_handler_module()
    api = serve(module.lambda_handler, HOST, API_PORT)
    site = ThreadingHTTPServer((HOST, SITE_PORT), site_handler(environment, api_url))
    for server in (api, site):
        threading.Thread(target=server.serve_forever, daemon=True).start()

    print(f"""
  Demo site (sign in, click Manage billing): {site_url}/
  API (the Lambda handler):                  {api_url}/portal   health: {api_url}/health
  Stripe stand-in (NOT Stripe):              {stripe_standin.base_url}
  AWS stand-in (moto server):                {moto.endpoint}
  Demo users: {', '.join(u for u, _ in DEMO_USERS)}
  Press Ctrl+C to stop.
""", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    for server in (api, site):
        server.shutdown()
    stripe_standin.close()
    moto.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
