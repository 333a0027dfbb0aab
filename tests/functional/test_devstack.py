"""`make run` really works: start the local stack as a user would and follow a plain link over HTTP."""

from __future__ import annotations

import urllib.parse
import urllib.request

from tests.support.hosted_ui_client import fetch, sign_in


def test_banner_names_every_stand_in(local_stack):
    api, site, banner = local_stack
    for text in (api, site, "NOT Stripe", "NOT Cognito", "moto", "ada@example.com"):
        assert text in banner
    assert urllib.request.urlopen(f"{api}/health").read() == b'{"status": "ok"}'
    config = urllib.request.urlopen(site + "config.js").read().decode()
    assert api in config and "hostedUiUrl" in config


def test_plain_link_round_trip_for_two_users(local_stack):
    api, site, banner = local_stack
    password = banner.split("password: ")[1].split()[0]
    customers = []
    for username in ("ada@example.com", "grace@example.com"):
        status, authorize, _, cookies = fetch(f"{api}/portal", headers={"Accept": "text/html"})
        assert status == 302 and cookies and cookies[0].startswith("__Host-portal_login=")
        params = sign_in(authorize, username, password, callback=f"{api}/portal/callback")
        status, portal, _, _ = fetch(f"{api}/portal/callback?{urllib.parse.urlencode(params)}",
                                     headers={"Cookie": cookies[0].split(";")[0], "Accept": "text/html"})
        assert status == 302, portal
        page = urllib.request.urlopen(portal).read().decode()
        assert "Stripe stand-in" in page and f'href="{site}"' in page
        customers.append(page.split("<code id=customer>")[1].split("<")[0])
    assert customers[0] != customers[1]
