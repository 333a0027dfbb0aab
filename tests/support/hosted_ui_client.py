"""What a browser does on the Hosted UI (stand-in), without a browser: open the form, submit it, stop at the
redirect back to the callback."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class HiddenInputs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.values = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("type") == "hidden":
            self.values[attrs["name"]] = attrs["value"]


def fetch(url: str, data: dict | None = None, headers: dict | None = None) -> tuple[int, str, str, list[str]]:
    """(status, Location, body, Set-Cookie values) without following redirects."""
    encoded = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=encoded, headers=headers or {})
    try:
        response = urllib.request.build_opener(NoRedirect).open(request)
        return response.status, "", response.read().decode(), response.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as answer:
        return (answer.code, answer.headers.get("Location", ""), answer.read().decode(),
                answer.headers.get_all("Set-Cookie") or [])


def sign_in(authorize_url: str, username: str, password: str, *, callback: str) -> dict:
    """Returns the query the Hosted UI sends back to `callback` (code and state)."""
    status, _, page, _ = fetch(authorize_url)
    assert status == 200, page
    form = HiddenInputs()
    form.feed(page)
    login_url = urllib.parse.urljoin(authorize_url, "/login")
    status, location, _, _ = fetch(login_url, {**form.values, "username": username, "password": password})
    assert status == 302 and location.startswith(callback + "?"), (status, location)
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
