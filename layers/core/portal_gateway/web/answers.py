"""HTTP answers: redirects, JSON, and error pages. The only module that knows status codes."""

from __future__ import annotations

import html
import json

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.shared.cookies import Cookie, SameSite

from portal_gateway.billing.status_projection import encode, etag
from portal_gateway.errors import GatewayError

STATUS_BY_CODE: dict[str, int] = {
    "invalid_request": 400,
    "token_in_query_string": 400,
    "return_url_not_allowed": 400,
    "price_not_offered": 400,
    "checkout_not_offered": 404,
    "price_unavailable": 409,
    "login_failed": 400,
    "login_session_invalid": 400,
    "webhook_signature_invalid": 400,
    "webhook_payload_invalid": 400,
    "authentication_required": 401,
    "invalid_token": 401,
    "no_billing_account": 403,
    "cross_site_form": 403,
    "not_found": 404,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "internal_error": 500,
    "billing_provider_error": 502,
    "billing_provider_timeout": 504,
    "auth_unavailable": 503,
    "identity_unavailable": 503,
    "customer_store_unavailable": 503,
    "stripe_key_unavailable": 503,
    "stripe_mode_mismatch": 503,
    "stripe_key_rejected": 503,
    "stripe_key_missing_permission": 503,
    "stripe_account_mismatch": 503,
    "portal_not_configured": 503,
    "portal_configuration_invalid": 503,
    "login_unavailable": 503,
    "webhook_not_configured": 503,
}
# Worth retrying soon: the dependency is probably back in a moment.
_TRANSIENT = {"auth_unavailable", "identity_unavailable", "customer_store_unavailable", "billing_provider_error",
              "billing_provider_timeout"}
REALM = 'Bearer realm="billing-portal"'

BASE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


def status_for(code: str) -> int:
    return STATUS_BY_CODE.get(code, 500)


def redirect(url: str, status: int = 302, *, cookies: list | None = None) -> Response:
    return Response(status_code=status, headers={**BASE_HEADERS, "Location": url}, body="", cookies=cookies or [])


def login_cookie(value: str) -> Cookie:
    # __Host-: Secure, Path=/, no Domain, so no other host or path can set or read it. Lax: it must come
    # back on the top-level redirect from the Hosted UI.
    from portal_gateway.web.sign_in import COOKIE_NAME, COOKIE_TTL_SECONDS

    return Cookie(name=COOKIE_NAME, value=value, path="/", secure=True, http_only=True,
                  max_age=COOKIE_TTL_SECONDS, same_site=SameSite.LAX_MODE)


def clear_login_cookie() -> Cookie:
    from portal_gateway.web.sign_in import COOKIE_NAME

    return Cookie(name=COOKIE_NAME, value="", path="/", secure=True, http_only=True, max_age=0,
                  same_site=SameSite.LAX_MODE)


def portal_url_json(url: str, **extra: str) -> Response:
    return Response(status_code=200, content_type="application/json", headers=dict(BASE_HEADERS),
                    body=json.dumps({"url": url, **extra}))


def customer_session_json(session: dict) -> Response:
    """A Customer Session's client secret: for this page view only (no-store), never kept by any cache."""
    return Response(status_code=200, content_type="application/json", headers=dict(BASE_HEADERS),
                    body=json.dumps({key: session[key] for key in ("client_secret", "expires_at",
                                                                   "client_reference_id")}))


# The billing status is the caller's own: a browser may keep it briefly and revalidate it by its ETag; no
# shared cache may keep it at all, and it differs by Authorization.
STATUS_MAX_AGE_SECONDS = 5


def billing_status(status: dict, if_none_match: str | None) -> Response:
    """The status JSON, or 304 when the caller already holds exactly this answer (its ETag)."""
    body = encode(status)
    tag = etag(body)
    headers = {**BASE_HEADERS, "Cache-Control": f"private, max-age={STATUS_MAX_AGE_SECONDS}", "ETag": tag,
               "Vary": "Authorization"}
    del headers["Pragma"]
    offered = {part.strip().removeprefix("W/") for part in (if_none_match or "").split(",")}
    if tag in offered or "*" in offered:
        return Response(status_code=304, headers=headers, body="")
    return Response(status_code=200, content_type="application/json", headers=headers, body=body)


# What /health names when a deploy step is still to do, and where the deploy guide says how (never any value).
SETUP_STEPS = {"stripe_key": "Put the Stripe key in: stripe-portal-admin rotate-key --stack <stack> "
                             "(docs/deploy.md, step 4)"}


def health(missing: tuple[str, ...] = ()) -> Response:
    if missing:
        body = {"status": "setup_incomplete", "missing": list(missing), "fix": [SETUP_STEPS[m] for m in missing]}
        return Response(status_code=503, content_type="application/json", headers=dict(BASE_HEADERS),
                        body=json.dumps(body))
    return Response(status_code=200, content_type="application/json", headers=dict(BASE_HEADERS),
                    body=json.dumps({"status": "ok"}))


def error(err: GatewayError, *, wants_html: bool, back_url: str | None, message: str | None = None) -> Response:
    return error_for(err.code, message or err.message, wants_html=wants_html, back_url=back_url, title=err.title)


def error_for(code: str, message: str, *, wants_html: bool, back_url: str | None,
              title: str = GatewayError.title) -> Response:
    status = status_for(code)
    headers = dict(BASE_HEADERS)
    if code == "authentication_required":
        headers["WWW-Authenticate"] = REALM
    elif code == "invalid_token":
        headers["WWW-Authenticate"] = f'{REALM}, error="invalid_token"'
    if code in _TRANSIENT:
        headers["Retry-After"] = "5"
    if wants_html:
        headers["Content-Security-Policy"] = HTML_CSP
        return Response(status_code=status, content_type="text/html; charset=utf-8", headers=headers,
                        body=error_page(message, code, back_url, title))
    return Response(status_code=status, content_type="application/json", headers=headers,
                    body=json.dumps({"error": code, "message": message}))


def error_page(message: str, code: str, back_url: str | None, title: str = GatewayError.title) -> str:
    back = f'<p><a href="{html.escape(back_url)}">Back to the site</a></p>' if back_url else ""
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<title>Billing</title><style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;"
        "padding:0 1rem;color:#222}code{color:#666}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p>{back}"
        f"<p><code>{html.escape(code)}</code></p></body></html>"
    )


def wants_html(accept: str | None) -> bool:
    """Browsers navigating (Accept includes text/html) get a page; everything else gets JSON."""
    return "text/html" in (accept or "").lower()


def wants_json(accept: str | None) -> bool:
    """fetch() callers ask for JSON explicitly; a browser navigation (text/html) gets the redirect."""
    accept = (accept or "").lower()
    return "application/json" in accept and "text/html" not in accept
