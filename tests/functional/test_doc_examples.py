"""Every link the README and the site guide show works on a stack deployed with the deploy guide's answers
(ReturnUrl https://www.example.com/account, no AllowedReturnUrls, plain links through the Hosted UI): none is
refused for its return address or its options before the sign-in."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.deploy.readme_script import ROOT
from tests.functional.test_hosted_ui_login import hosted_ui, oauth_gateway  # noqa: F401 - fixtures

# The deploy guide's answers (docs/deploy.md, step 3) that decide what a link may name.
GUIDE_RETURN_URL = "https://www.example.com/account"
LINK = re.compile(r'href="((?:PORTAL_URL|SUBSCRIBE_URL)[^"]*)"')


def documented_links() -> list[tuple[str, str]]:
    found = []
    for document in ("README.md", "docs/site-integration.md"):
        for link in LINK.findall((ROOT / document).read_text()):
            found.append((document, link.replace("&amp;", "&")))
    return found


def test_the_docs_show_links_to_check():
    assert len(documented_links()) >= 7


@pytest.mark.parametrize(("document", "link"), documented_links())
def test_every_documented_link_works_with_the_guides_answers(oauth_gateway, stripe_standin, document, link):  # noqa: F811
    stripe_standin.add_product("Pro", lookup_key="pro_monthly")
    gw = oauth_gateway(RETURN_URL=GUIDE_RETURN_URL, ALLOWED_RETURN_URLS="", CHECKOUT_PRICES="pro_monthly")
    url = urlsplit(link.replace("PORTAL_URL", "https://api.example.com/portal")
                   .replace("SUBSCRIBE_URL", "https://api.example.com/billing/checkout"))
    reply = gw.call("GET", url.path, query=url.query, headers={"accept": "text/html"})
    # A plain link goes to the Hosted UI to sign in (302), a sign-out through its /logout (302): never a 4xx.
    assert reply.status == 302, f"{document}: {link} answered {reply.status}: {reply.body[:200]}"
