"""`stripe-portal-admin smoke`: after a deploy, the deployed API answers as documented.

/health is 200; an unauthenticated /portal is 401 for fetch() and, for a plain link, a 302 to the sign-in
when CognitoDomain is set (else 401); a CORS preflight from an allowed origin is answered when AllowedOrigins
is set; with a token on stdin, /portal answers a portal URL (checked, never printed). Nothing is created
without a token; with one, the user's customer may be created as on a first visit.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from .key_check import Check


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the 302 itself is what is checked


def _request(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
             timeout: float = 15) -> tuple[int, dict[str, str], str]:
    opener = urllib.request.build_opener(_NoRedirects)
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        # bandit B310: the URL is the stack's own API (https), or one the operator passed on purpose.
        with opener.open(request, timeout=timeout) as response:  # nosec B310
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read(65536).decode(
                "utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read(65536).decode("utf-8", "replace")


def run_smoke(portal_url: str, *, hosted_ui: bool, origins: tuple[str, ...], token: str | None) -> list[Check]:
    checks: list[Check] = []
    base = portal_url.rsplit("/portal", 1)[0]

    def attempt(name: str, fix: str, probe) -> None:
        try:
            ok, detail = probe()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            ok, detail = False, f"no answer ({type(exc).__name__})"
        checks.append(Check(name, ok, detail, fix))

    def health():
        status, _, body = _request(f"{base}/health")
        return status == 200 and '"ok"' in body, f"status {status}"

    def fetch_without_token():
        status, headers, body = _request(portal_url, headers={"Accept": "application/json"})
        code = _json(body).get("error")
        return status == 401 and code == "authentication_required", f"status {status}, error {code}"

    def link_without_token():
        status, headers, _ = _request(portal_url, headers={"Accept": "text/html"})
        if hosted_ui:
            return status == 302 and "/oauth2/authorize?" in headers.get("location", ""), f"status {status}"
        return status == 401, f"status {status}"

    attempt("/health", "The API or the function is not answering: see the function's log", health)
    attempt("unauthenticated /portal (fetch)", "Expected 401 authentication_required", fetch_without_token)
    attempt("unauthenticated /portal (plain link)",
            "Expected a 302 to the Hosted UI (CognitoDomain, CallbackUrl)" if hosted_ui else "Expected 401",
            link_without_token)
    for origin in origins[:1]:
        def preflight(origin=origin):
            status, headers, _ = _request(portal_url, method="OPTIONS", headers={
                "Origin": origin, "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization"})
            allowed = headers.get("access-control-allow-origin")
            return status in (200, 204) and allowed == origin, f"status {status}"
        attempt(f"CORS preflight from {origin}", "Check AllowedOrigins", preflight)
    if token:
        def whole_way():
            status, _, body = _request(portal_url, headers={"Accept": "application/json",
                                                            "Authorization": f"Bearer {token}"})
            url = _json(body).get("url") or ""
            parts = urlsplit(url)
            ok = status == 200 and parts.scheme in ("https", "http") and bool(parts.hostname)
            return ok, (f"status {status}, a portal URL on {parts.hostname} (not shown)" if ok
                        else f"status {status}, error {_json(body).get('error')}")
        attempt("portal session with the token", "See the error code in README, Errors", whole_way)
    return checks


def _json(body: str) -> dict:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
