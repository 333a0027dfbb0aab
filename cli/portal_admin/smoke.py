"""`stripe-portal-admin smoke`: after a deploy, the deployed API answers as documented.

/health is 200; an unauthenticated /portal is 401 for fetch() and, for a plain link, a 302 to the sign-in
when CognitoDomain is set (else 401); an unauthenticated /billing/status is 401; an unsigned webhook delivery is
refused (400); a CORS preflight from an allowed origin is answered when AllowedOrigins is set; with a token on
stdin, /portal answers a portal URL (checked, never printed) and /billing/status the caller's status. Nothing is created
without a token; with one, the user's customer may be created as on a first visit.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from portal_gateway.aws.endpoints import LOOPBACK_HOSTS
from portal_gateway.checks.release_check import Invocation, documented_answers
from portal_gateway.checks.stripe_key_check import Check


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the 302 itself is what is checked


def _request(url: str, *, method: str = "GET", headers: dict[str, str] | None = None, data: bytes | None = None,
             timeout: float = 15) -> tuple[int, dict[str, str], str]:
    opener = urllib.request.build_opener(_NoRedirects)
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        # bandit B310: the URL is the stack's own API (https), or one the operator passed on purpose.
        with opener.open(request, timeout=timeout) as response:  # nosec B310
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read(65536).decode(
                "utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read(65536).decode("utf-8", "replace")


def _probe(url: str, **kwargs) -> Invocation:
    """The API's answer as an Invocation (what release_check reads), or why there was none."""
    try:
        status, headers, body = _request(url, **kwargs)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Invocation(None, function_error=f"no answer ({type(exc).__name__})")
    return Invocation(status, body, headers)


def checked_portal_url(url: str) -> str | None:
    """Why `url` cannot be smoke-tested, or None. A user's token is sent to it, so never over plain http (but
    to `make run` on this machine)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"not a URL: {url[:80]!r}"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return "http:// would send a user's token in clear text; use the https PortalUrl"
    if not parts.path.rstrip("/").endswith("/portal"):
        return "the URL must end in /portal (the stack output PortalUrl)"
    return None


def run_smoke(portal_url: str, *, hosted_ui: bool, origins: tuple[str, ...], token: str | None) -> list[Check]:
    base = portal_url.rsplit("/portal", 1)[0]
    status_url = f"{base}/billing/status"
    checks = documented_answers(_probe(f"{base}/health"),
                                _probe(portal_url, headers={"Accept": "application/json"}),
                                _probe(portal_url, headers={"Accept": "text/html"}), hosted_ui=hosted_ui,
                                status=_probe(status_url, headers={"Accept": "application/json"}))
    # The webhook route: an unsigned delivery is refused by the function itself (and changes nothing).
    webhook = _probe(f"{base}/webhooks/stripe", method="POST", data=b"{}",
                     headers={"Content-Type": "application/json", "Stripe-Signature": "t=0,v1=00"})
    error = _json(webhook.body).get("error")
    refused = webhook.status == 400 and error == "webhook_signature_invalid"
    fix = ("Run stripe-portal-admin webhooks setup (docs/deploy.md, step 6)" if error == "webhook_not_configured"
           else "Deploy the stack again; the WebhookFunction route must answer")
    checks.append(Check("unsigned webhook delivery refused", refused,
                        webhook.function_error or f"status {webhook.status}" + (f", error {error}" if error else ""),
                        "" if refused else fix))
    for origin in origins[:1]:
        answer = _probe(portal_url, method="OPTIONS", headers={"Origin": origin,
                        "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
        ok = answer.status in (200, 204) and answer.headers.get("access-control-allow-origin") == origin
        checks.append(Check(f"CORS preflight from {origin}", ok, answer.function_error or f"status {answer.status}",
                            "Check AllowedOrigins"))
    if token:
        answer = _probe(portal_url, headers={"Accept": "application/json", "Authorization": f"Bearer {token}"})
        parts = urlsplit(_json(answer.body).get("url") or "")
        ok = answer.status == 200 and parts.scheme in ("https", "http") and bool(parts.hostname)
        detail = (f"status 200, a portal URL on {parts.hostname} (not shown)" if ok else
                  answer.function_error or f"status {answer.status}, error {_json(answer.body).get('error')}")
        checks.append(Check("portal session with the token", ok, detail,
                            "See the error code in docs/reference.md, Errors"))
        answer = _probe(status_url, headers={"Accept": "application/json", "Authorization": f"Bearer {token}"})
        ok = answer.status == 200 and isinstance(_json(answer.body).get("has_billing_account"), bool)
        checks.append(Check("billing status with the token", ok, answer.function_error or f"status {answer.status}",
                            "See the error code in docs/reference.md, Errors"))
    return checks


def _json(body: str) -> dict:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
