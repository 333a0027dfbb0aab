"""The pre-traffic check of a new version (CodeDeploy PreTraffic hook): before any user is sent to it, the new
version must start with its configuration, answer /health, refuse an unauthenticated /portal the documented
way, hold a Stripe key of the right mode and of the pinned account, and log nothing it must never log.

The probes carry no token, so the new version cannot create a customer or a portal session while it is
checked; the checks below assert the answers that prove it stopped before the customer path.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from portal_gateway.checks.stripe_key_check import Check, passed

# What must never appear in a log line (docs/security.md): tokens, Stripe keys, emails, portal URLs.
FORBIDDEN_IN_LOGS = {
    "a JWT": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    "a Stripe key": re.compile(r"\b(?:sk|rk)_(?:test|live)_[0-9A-Za-z]{8,}"),
    "an email address": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),
    "a portal URL": re.compile(r"billing\.stripe\.com/p/session/|/p/session/[A-Za-z0-9_]+"),
}


@dataclass(frozen=True)
class Invocation:
    """What invoking the new version returned: its HTTP answer, or the runtime's error, and its log lines."""

    status: int | None
    body: str = ""
    headers: dict = field(default_factory=dict)
    function_error: str | None = None
    log: str = ""


def api_event(method: str, path: str, headers: dict[str, str]) -> dict:
    """A minimal API Gateway HTTP API (payload 2.0) event, as the API sends it to the function."""
    return {
        "version": "2.0", "routeKey": f"{method} {path}", "rawPath": path, "rawQueryString": "",
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1", "userAgent": "pre-traffic-check"},
                           # The hook cannot know the API's domain (naming it would make a dependency cycle):
                           # a reserved name (RFC 2606), where sign-in's derived callback would point.
                           "domainName": "pre-traffic-check.invalid",
                           "requestId": str(uuid.uuid4()), "routeKey": f"{method} {path}", "stage": "$default",
                           "timeEpoch": int(time.time() * 1000)},
        "isBase64Encoded": False,
    }


def check_release(*, invoke: Callable[[dict], Invocation], key_checks: Callable[[], list[Check]],
                  hosted_ui: bool) -> list[Check]:
    """Run every check; none stops the others, so the log shows everything that is wrong at once."""
    health = invoke(api_event("GET", "/health", {"accept": "application/json"}))
    api = invoke(api_event("GET", "/portal", {"accept": "application/json"}))
    link = invoke(api_event("GET", "/portal", {"accept": "text/html"}))
    status = invoke(api_event("GET", "/billing/status", {"accept": "application/json"}))
    session = invoke(api_event("POST", "/billing/customer-session", {"accept": "application/json"}))
    signed_in = invoke({"rehearsal": PRE_TRAFFIC_REHEARSAL})
    checks = [_started(health), *documented_answers(health, api, link, hosted_ui=hosted_ui, status=status,
                                                    customer_session=session), _signed_in(signed_in)]
    try:
        checks += key_checks()
    except Exception as exc:  # noqa: BLE001 - reported as a failed check, never as a crash of the hook
        checks.append(Check("Stripe key", False, f"could not be checked: {type(exc).__name__}",
                            "See the hook's log; run `stripe-portal-admin check`"))
    checks.append(_clean_logs([health, api, link, status, session]))
    return checks


# What the portal function answers as its signed-in rehearsal (functions/portal/app.py says the same).
PRE_TRAFFIC_REHEARSAL = "stripe-portal-gateway/pre-traffic-rehearsal"
SIGNED_IN_CHECK = "signed-in requests (rehearsed in memory)"


def _signed_in(answer: Invocation) -> Check:
    """The new version takes a signed-in portal request and a status request whole, in memory (its init
    rehearsal's world: a token only its throwaway verifier trusts, Stripe and AWS answered in the process): what
    every user's click goes through after the sign-in."""
    if answer.function_error or answer.status != 200:
        try:
            unexpected = json.loads(answer.body or "{}").get("unexpected")
        except ValueError:
            unexpected = None
        detail = f"{_answered(answer)}" + (f": {unexpected['route']} answered {unexpected['status']}"
                                          if isinstance(unexpected, dict) else "")
        return Check(SIGNED_IN_CHECK, False, detail,
                     "The new version fails after sign-in: read its log (\"Rehearsal of a first request\")")
    return Check(SIGNED_IN_CHECK, True)


def _started(health: Invocation) -> Check:
    if health.function_error:
        return Check("new version starts", False, f"the function failed: {health.function_error}",
                     "Read the new version's log: most often a configuration variable it names")
    return Check("new version starts", True)


def documented_answers(health: Invocation, api: Invocation, link: Invocation, *, hosted_ui: bool,
                       status: Invocation | None = None, customer_session: Invocation | None = None) -> list[Check]:
    """The answers the docs give without a token: /health is ok, fetch() gets 401 authentication_required,
    a plain link gets a 302 to the Hosted UI sign-in when it is configured (else 401), and the billing status
    and a Customer Session 401 authentication_required. Also what `smoke` checks on a deployed API."""
    if hosted_ui:
        plain_link = _sign_in_redirect(link)
    else:
        plain_link = _expect_status(link, 401, "unauthenticated /portal (plain link)")
    checks = [_health(health), _expect_error(api, 401, "authentication_required", "unauthenticated /portal (fetch)"),
              plain_link]
    if status is not None:
        checks.append(_expect_error(status, 401, "authentication_required", "unauthenticated /billing/status"))
    if customer_session is not None:
        checks.append(_expect_error(customer_session, 401, "authentication_required",
                                    "unauthenticated /billing/customer-session"))
    return checks


def _answered(answer: Invocation) -> str:
    return answer.function_error or f"status {answer.status}"


def _health(health: Invocation) -> Check:
    try:
        ok = health.status == 200 and json.loads(health.body).get("status") == "ok"
    except (ValueError, AttributeError):
        ok = False
    return Check("/health", ok, _answered(health), "The function does not answer /health: see its log")


def _expect_error(answer: Invocation, status: int, code: str, name: str) -> Check:
    try:
        found = json.loads(answer.body).get("error")
    except (ValueError, AttributeError):
        found = None
    ok = answer.status == status and found == code
    return Check(name, ok, f"{_answered(answer)}, error {found}", f"Expected {status} {code}")


def _expect_status(answer: Invocation, status: int, name: str) -> Check:
    return Check(name, answer.status == status, _answered(answer), f"Expected {status}")


def _sign_in_redirect(answer: Invocation) -> Check:
    location = {k.lower(): v for k, v in answer.headers.items()}.get("location", "")
    ok = answer.status == 302 and "/oauth2/authorize?" in location
    return Check("unauthenticated /portal (plain link)", ok, _answered(answer),
                 "Expected 302 to the Hosted UI sign-in: check CognitoDomain and CallbackUrl")


def _clean_logs(invocations: list[Invocation]) -> Check:
    found = sorted({label for inv in invocations for label, pattern in FORBIDDEN_IN_LOGS.items()
                    if pattern.search(inv.log)})
    if found:
        return Check("logs hold no secrets", False, "the new version logged " + ", ".join(found),
                     "Never log tokens, keys, emails or portal URLs: fix the logging before releasing")
    return Check("logs hold no secrets", True)


def outcome(checks: list[Check]) -> str:
    """CodeDeploy's lifecycle status for these checks."""
    return "Succeeded" if passed(checks) else "Failed"
