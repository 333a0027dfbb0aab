"""Hostile input: every one refused cleanly (right status, machine-readable code), nothing created, no trace."""

from __future__ import annotations

import base64
import json

import pytest

from devstack.http_api import build_event, new_context

OPEN_REDIRECTS = [
    "https://evil.example.net", "//evil.example.net/x", "///evil.example.net", "https:/evil.example.net",
    "https:evil.example.net", "https://shop.example.com@evil.example.net/", "https://evil.example.net#@shop.example.com",
    "https://evil.example.net?@shop.example.com", "https://shop.example.com:@evil.example.net",
    "https://shop.example.com\\@evil.example.net", "https:\\\\evil.example.net", "/\\evil.example.net",
    "https://shop.example.com%2f@evil.example.net", "https://shop.example.com%2F..%2F", "https://shop.example.com./",
    "https://shop.example.com.evil.net", "https://shop-example.com", "https://xn--shp-example-8kb.com",
    "https://shop.exаmple.com/",  # Cyrillic "а": a lookalike host
    "https://docs.example.com/billing/..%2f..%2fadmin", "https://docs.example.com/billing/%2e%2e/x",
    "https://docs.example.com/billing/./../x", "javascript://shop.example.com/%0aalert(1)",
    "data:text/html;base64,PHNjcmlwdD4=", "vbscript:msgbox", "\thttps://shop.example.com/", "https://shop.example.com/\r\nSet-Cookie:x=y",
    "https://shop.example.com/" + "a" * 5000, "HTTPS://EVIL.EXAMPLE.NET", "https://[::1]/", "https://127.0.0.1/",
    "http://shop.example.com/", "ftp://shop.example.com/",
]


@pytest.mark.parametrize("return_to", OPEN_REDIRECTS)
def test_open_redirect_attempts_are_refused(gateway, user, stripe_standin, return_to):
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], accept="application/json", query={"return_to": return_to})
    assert reply.status == 400 and reply.json["error"] == "return_url_not_allowed"
    assert stripe_standin.customers() == []


@pytest.mark.parametrize("field, value", [
    ("flow", "subscription_cancel\x00"), ("flow", "payment_method_update&flow_data[type]=x"), ("flow", "f" * 100_000),
    ("locale", "../../etc/passwd"), ("locale", "e" * 100_000), ("flow", "[object Object]"),
])
def test_huge_or_malformed_options_are_400(gateway, user, stripe_standin, field, value):
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], accept="application/json", query={field: value})
    assert reply.status == 400 and reply.json["error"] == "invalid_request"
    assert stripe_standin.requests == []


def raw_call(gw, event) -> dict:
    result = gw.module.lambda_handler(event, new_context())
    assert "Traceback" not in (result.get("body") or "")
    return result


@pytest.mark.parametrize("body, base64_encoded, content_type, status, code", [
    (b"id_token=%%%%", False, "application/x-www-form-urlencoded", 401, "invalid_token"),
    (b"\xff\xfe\xfd", True, "application/x-www-form-urlencoded", 400, "invalid_request"),
    (b"not base64 at all !!", "raw", "application/x-www-form-urlencoded", 400, "invalid_request"),
    (b"&".join(b"f%d=1" % i for i in range(100)), False, "application/x-www-form-urlencoded", 400, "invalid_request"),
    (b"a" * 70_000, False, "application/x-www-form-urlencoded", 413, "payload_too_large"),
    (b"id_token=x", False, "multipart/form-data; boundary=x", 415, "unsupported_media_type"),
    (b"id_token=x", False, "", 415, "unsupported_media_type"),
    (b"", False, "application/x-www-form-urlencoded", 401, "authentication_required"),
    (b"id_token=", False, "application/x-www-form-urlencoded", 401, "authentication_required"),
])
def test_malformed_form_bodies(gateway, stripe_standin, body, base64_encoded, content_type, status, code):
    gw = gateway()
    event = build_event("POST", "/portal", headers={"content-type": content_type, "accept": "application/json"})
    if base64_encoded == "raw":
        event["body"], event["isBase64Encoded"] = body.decode(), True
    elif base64_encoded:
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"] = body.decode("latin-1")
    result = raw_call(gw, event)
    assert result["statusCode"] == status
    assert json.loads(result["body"])["error"] == code
    assert stripe_standin.requests == []


@pytest.mark.parametrize("authorization", [
    "Bearer " + "a" * 20_000, "Bearer a.b", "Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", "bearer\tx.y.z",
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "Bearer " + "\u00e9" * 100,
])
def test_oversized_and_odd_authorization_headers(gateway, stripe_standin, authorization):
    reply = gateway().call("GET", "/portal", headers={"authorization": authorization, "accept": "application/json"})
    assert reply.status == 401
    assert reply.json["error"] in ("invalid_token", "authentication_required")
    assert stripe_standin.requests == []


def test_oversized_headers_and_query_do_not_break_anything(gateway, user, stripe_standin):
    _, tokens = user()
    reply = gateway().portal(tokens["IdToken"], accept="application/json", query={"x" * 100: "y" * 10_000},
                             **{"accept-language": "x-" * 4000, "x-junk": "z" * 30_000})
    assert reply.status == 200 and reply.json["url"]


def test_callback_with_hostile_query_when_login_disabled_is_404(gateway):
    reply = gateway().call("GET", "/portal/callback", query={"code": "<script>", "state": "\x00" * 10})
    assert reply.status == 404 and "<script>" not in reply.body


@pytest.mark.parametrize("path", ["/portal", "/billing/checkout"])
@pytest.mark.parametrize(("headers", "allowed"), [
    ({"origin": "https://shop.example.com"}, True),  # the site's own page (RETURN_URL's origin)
    ({"origin": "https://docs.example.com"}, True),  # an origin of ALLOWED_RETURN_URLS
    ({}, True),  # no browser's mark at all: a server, an old browser
    ({"sec-fetch-site": "same-site"}, True),
    ({"origin": "https://evil.example.net"}, False),  # login CSRF: the attacker's token, posted by their page
    ({"origin": "null"}, False),  # a sandboxed frame hides its origin
    ({"origin": "https://shop.example.com.evil.example.net"}, False),
    ({"sec-fetch-site": "cross-site"}, False),
])
def test_a_form_posted_by_another_site_signs_no_browser_in(gateway, user, stripe_standin, path, headers, allowed):
    from urllib.parse import urlencode

    stripe_standin.add_product("Pro", lookup_key="pro_monthly")
    _, tokens = user()
    gw = gateway(CHECKOUT_PRICES="pro_monthly")
    reply = gw.call("POST", path, body=urlencode({"id_token": tokens["IdToken"]}), headers={
        "content-type": "application/x-www-form-urlencoded", "accept": "text/html", **headers})
    if allowed:
        assert reply.status == 303, reply.body
    else:
        assert reply.status == 403 and "cross_site_form" in reply.body
        assert stripe_standin.calls("POST") == []  # nothing made, nobody signed in
