"""Portal options: where Stripe sends the customer back (allowlist) and which language the portal speaks."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from portal_gateway.errors import BadRequest, CrossSiteForm, ReturnUrlNotAllowed
from portal_gateway.text import has_lone_surrogate

MAX_RETURN_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Anything that lets the same string mean different URLs to different parsers is refused outright. Dot
# segments are not refused here but resolved (below), as browsers resolve them, before the prefix check.
_AMBIGUOUS = re.compile(r"[\x00-\x20\x7f\\]|%(?:2f|5c|00|09|0a|0d)", re.IGNORECASE)
_ENCODED_DOT = re.compile(r"%2e", re.IGNORECASE)

# Locales the Stripe customer portal accepts (billing_portal.sessions.create `locale`).
STRIPE_PORTAL_LOCALES = frozenset(
    """auto bg cs da de el en en-AU en-CA en-GB en-IE en-IN en-NZ en-SG es es-419 et fi fil fr fr-CA hr hu id
    it ja ko lt lv ms mt nb nl pl pt pt-BR ro ru sk sl sv th tr vi zh zh-HK zh-TW""".split()
)
_LOCALE_BY_LOWER = {locale.lower(): locale for locale in STRIPE_PORTAL_LOCALES}


def _origin(parts) -> tuple[str, str, int]:
    # An explicit port is kept as written: ":0" is port 0 (refused by _parse), not the scheme's default.
    port = parts.port
    return parts.scheme, (parts.hostname or ""), _DEFAULT_PORTS.get(parts.scheme, 0) if port is None else port


def _parse(url: str):
    if not url or len(url) > MAX_RETURN_URL_LENGTH or _AMBIGUOUS.search(url) or has_lone_surrogate(url):
        return None
    try:
        parts = urlsplit(url)
        if parts.port == 0:  # raises ValueError on a bad port; 0 is no port a browser can reach
            return None
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None or "@" in parts.netloc:
        return None
    if not url.lower().startswith(f"{parts.scheme}://"):
        return None
    return parts


class ReturnUrlPolicy:
    """RETURN_URL is the default; `return_to` must match an allowed origin or URL prefix exactly."""

    def __init__(self, default_url: str, allowed: tuple[str, ...]):
        self.default_url = default_url
        self._origins: set[tuple[str, str, int]] = set()
        self._prefixes: list[tuple[tuple[str, str, int], str]] = []
        default = urlsplit(default_url)
        self._prefixes.append((_origin(default), default.path or "/"))
        for entry in allowed:
            parts = urlsplit(entry)
            if parts.path in ("", "/"):
                self._origins.add(_origin(parts))
            else:
                self._prefixes.append((_origin(parts), parts.path))

    def choose(self, return_to: str | None) -> str:
        if return_to is None or return_to == "":
            return self.default_url
        parts = _parse(return_to)
        if parts is None:
            raise ReturnUrlNotAllowed()
        origin = _origin(parts)
        if origin in self._origins:
            return return_to
        path = resolved_path(parts.path)
        for allowed_origin, prefix in self._prefixes:
            if origin == allowed_origin and _path_under(path, prefix):
                return return_to
        raise ReturnUrlNotAllowed()


def resolved_path(path: str) -> str:
    """The path a browser goes to: RFC 3986 dot-segment removal, with "%2e" read as a dot as browsers do
    (WHATWG URL: ".", "%2e", "..", ".%2e", "%2e." and "%2e%2e" are dot segments)."""
    segments = (path or "/").split("/")[1:]
    output: list[str] = []
    for index, raw in enumerate(segments):
        last = index == len(segments) - 1
        segment = _ENCODED_DOT.sub(".", raw)
        if segment not in (".", ".."):
            output.append(raw)  # any other segment stays exactly as written, "%2e" included
        elif segment == "..":
            if output:
                output.pop()
            if last:
                output.append("")  # "/a/.." resolves to "/", with its trailing slash
        elif last:  # "."
            output.append("")
    return "/" + "/".join(output)


def _path_under(path: str, prefix: str) -> bool:
    if prefix.endswith("/"):
        return path.startswith(prefix) or path == prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def choose_locale(requested: str | None, accept_language: str | None) -> str:
    """An explicit `locale` must be one Stripe supports; otherwise Accept-Language decides; else `auto`."""
    if requested:
        locale = _LOCALE_BY_LOWER.get(requested.strip().lower())
        if locale is None:
            raise BadRequest("That language is not supported by the billing portal.")
        return locale
    for tag in _accept_language_tags(accept_language or ""):
        locale = _LOCALE_BY_LOWER.get(tag) or _LOCALE_BY_LOWER.get(tag.split("-")[0])
        if locale:
            return locale
    return "auto"


def _accept_language_tags(header: str) -> list[str]:
    weighted = []
    for index, item in enumerate(header[:512].split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and quality > 0:
            weighted.append((-quality, index, tag.lower()))
    return [tag for _, _, tag in sorted(weighted)]


# Deep links, chosen by name only: the client never sends raw flow_data. The subscription flows pick the
# subscription server-side among the customer's own (exactly one active, or the portal home).
FLOWS = ("payment_method_update", "customer_update", "subscription_cancel", "subscription_update",
         "subscription_pause")
SUBSCRIPTION_FLOWS = ("subscription_cancel", "subscription_update", "subscription_pause")


def choose_flow(requested: str | None) -> str | None:
    if not requested:
        return None
    if requested not in FLOWS:
        raise BadRequest("Unknown flow. Use one of: " + ", ".join(FLOWS) + ".")
    return requested


def flow_data(flow: str | None, *, return_url: str, subscription_id: str | None) -> dict | None:
    """Stripe flow_data for a preset, or None for the portal home."""
    if flow is None:
        return None
    if flow in SUBSCRIPTION_FLOWS and subscription_id is None:
        return None
    data: dict = {"type": flow, "after_completion": {"type": "redirect", "redirect": {"return_url": return_url}}}
    if flow in SUBSCRIPTION_FLOWS:
        data[flow] = {"subscription": subscription_id}
    return data


class FormOriginPolicy:
    """Who may post a form with a token to this API: pages of the site's own origins (those of RETURN_URL,
    ALLOWED_RETURN_URLS and ALLOWED_ORIGINS). A browser names the sending page's origin (`Origin`, or
    `Sec-Fetch-Site: cross-site`); "null" (a sandboxed frame, a privacy redirect) is not the site. A request that
    names neither (a server, an old browser) is not a cross-site form and is let through."""

    def __init__(self, site_urls: tuple[str, ...]):
        self._origins = {_origin(urlsplit(url)) for url in site_urls if urlsplit(url).hostname}

    def check(self, origin: str | None, sec_fetch_site: str | None) -> None:
        if origin is not None and origin.strip():
            parts = _parse(origin.strip().rstrip("/")) if origin.strip() != "null" else None
            if parts is None or parts.path not in ("", "/") or _origin(parts) not in self._origins:
                raise CrossSiteForm(log_detail="form post from an Origin that is not the site's")
            return
        if (sec_fetch_site or "").strip().lower() == "cross-site":
            raise CrossSiteForm(log_detail="form post with Sec-Fetch-Site: cross-site and no Origin")

