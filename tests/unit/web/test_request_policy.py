"""return_to allowlist and locale choice."""

from __future__ import annotations

import pytest
from portal_gateway.errors import BadRequest, ReturnUrlNotAllowed
from portal_gateway.web.request_policy import ReturnUrlPolicy, choose_locale

POLICY = ReturnUrlPolicy("https://www.example.com/account?tab=billing",
                         ("https://shop.example.com", "https://www.example.com/help/", "http://localhost:8000"))


@pytest.mark.parametrize("url", [
    "https://shop.example.com", "https://shop.example.com/", "https://shop.example.com/a/b?c=d#e",
    "https://SHOP.example.com/x", "https://shop.example.com:443/x", "https://www.example.com/help/faq",
    "https://www.example.com/help", "https://www.example.com/account", "https://www.example.com/account/invoices",
    "http://localhost:8000/back", "https://www.example.com/help/a/../faq", "https://www.example.com/help/./faq",
    "https://www.example.com/help/a%2eb",
])
def test_allowed(url):
    assert POLICY.choose(url) == url


def test_default_when_absent():
    assert POLICY.choose(None) == "https://www.example.com/account?tab=billing"
    assert POLICY.choose("") == "https://www.example.com/account?tab=billing"


@pytest.mark.parametrize("url", [
    "https://evil.com", "http://shop.example.com/", "https://shop.example.com:8443/", "https://shop.example.com.evil.com/",
    "https://evilshop.example.com/", "https://user@shop.example.com/", "https://shop.example.com@evil.com/",
    "https://evil.com\\@shop.example.com/", "https:\\\\evil.com", "//evil.com", "/relative", "javascript:alert(1)",
    "data:text/html,x", "https://www.example.com/helpdesk", "https://www.example.com/accounting",
    "https://www.example.com/help/../admin", "https://www.example.com/help/%2e%2e/admin",
    "https://www.example.com/help/..%2fadmin", "https://www.example.com/help/%2E%2E%2Fadmin",
    "https://www.example.com/", "https://shop.example.com/\x00", "https://shop.example.com/ x",
    "https://shop.example.com/\t", " https://shop.example.com/", "https://shop.example.com/" + "a" * 3000,
    "https://shop.example.com:99999/", "HTTPS://evil.com", "https:shop.example.com", "ftp://shop.example.com/",
    "http://localhost:8001/", "https://localhost:8000/",
    # dot segments just before "?" or "#", or at the end: browsers resolve them out of the prefix
    "https://www.example.com/help/..?next=/admin", "https://www.example.com/help/..#top",
    "https://www.example.com/help/..", "https://www.example.com/help/%2e%2e?x=1", "https://www.example.com/help/.%2E#",
    "https://www.example.com/help/%2E.", "https://www.example.com/help/faq/../../admin",
    "https://www.example.com/account/..?x",
])
def test_refused(url):
    with pytest.raises(ReturnUrlNotAllowed):
        POLICY.choose(url)


@pytest.mark.parametrize("requested, header, expected", [
    ("fr", None, "fr"), ("PT-br", None, "pt-BR"), ("en-GB", "de", "en-GB"), (None, "de-CH,de;q=0.9", "de"),
    (None, "xx,es-419;q=0.8", "es-419"), (None, "en;q=0.1,ja;q=0.9", "ja"), (None, None, "auto"),
    (None, "*", "auto"), (None, "klingon", "auto"), (None, "fr;q=abc,it;q=0.5", "it"), (None, "fr;q=0", "auto"),
])
def test_locale(requested, header, expected):
    assert choose_locale(requested, header) == expected


@pytest.mark.parametrize("requested", ["xx", "fr-FR-x", "<script>", "e" * 100])
def test_unknown_explicit_locale_is_refused(requested):
    with pytest.raises(BadRequest):
        choose_locale(requested, None)
