"""Functional fixtures: moto server (Cognito, Secrets Manager, DynamoDB), the Stripe stand-in, and the real
lambda_handler loaded from functions/portal/app.py with its configuration in the environment."""

from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
from portal_gateway.billing.stripe_client import StripeHttp

from devstack.aws_standin import MotoServer, add_webhook_secret, provision
from devstack.http_api import build_event, load_handler_module, new_context, serve
from devstack.stripe_standin import StripeStandin, fake_key
from tests.deploy.readme_script import ROOT
from tests.support.local_stack import local_stack  # noqa: F401 - fixture (module-scoped: one stack per module)

RETURN_URL = "https://shop.example.com/account"
PASSWORD = "Correct-Horse-9"


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def stripe_standin():
    standin = StripeStandin().start()
    standin.key = standin.add_key(fake_key("sk", "test"))
    standin.create_default_portal_configuration("test")
    yield standin
    standin.close()


@pytest.fixture
def stack(moto_server, stripe_standin):
    moto_server.reset()
    return provision(moto_server, stripe_key=stripe_standin.key)


@dataclass
class Reply:
    status: int
    headers: dict
    body: str
    cookies: list = field(default_factory=list)

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def location(self) -> str | None:
        return self.headers.get("Location")


class Gateway:
    """The deployed function as API Gateway would call it."""

    def __init__(self, module, timeout_seconds: float = 15):
        self.module = module
        self.timeout_seconds = timeout_seconds  # the function's timeout: the Lambda context's remaining time

    def call(self, method: str, path: str, *, query: dict | str = "", headers: dict | None = None,
             body: bytes | str | None = None) -> Reply:
        query_string = query if isinstance(query, str) else urlencode(query)
        return self.invoke(build_event(method, path, query=query_string, headers=headers, body=body))

    def invoke(self, event: dict) -> Reply:
        result = self.module.lambda_handler(event, new_context(self.timeout_seconds))
        return Reply(result["statusCode"], result.get("headers") or {}, result.get("body") or "",
                     result.get("cookies") or [])

    def portal(self, token: str | None, *, accept: str = "*/*", query: dict | None = None, **headers) -> Reply:
        all_headers = {"accept": accept, **headers}
        if token is not None:
            all_headers["authorization"] = f"Bearer {token}"
        return self.call("GET", "/portal", query=query or {}, headers=all_headers)

    def form(self, fields: dict | list, *, accept: str = "text/html", query: dict | None = None) -> Reply:
        return self.call("POST", "/portal", query=query or {}, body=urlencode(fields),
                         headers={"content-type": "application/x-www-form-urlencoded", "accept": accept})


def aged(gw: Gateway, seconds: float = 61) -> Gateway:
    """The environment's view of time moved on: every token is now `seconds` older than when it was issued (a
    token under a minute old needs no status check: Cognito vouched for the user when it issued it)."""
    import time

    gw.module.portal_service().users._wall_clock = lambda: time.time() + seconds
    return gw


FUNCTION_LOGGERS = ("stripe-portal-gateway", "portal_gateway", "stripe-portal-gateway-rotation",
                    "stripe-portal-gateway-pre-traffic")


def reset_logging(names: tuple[str, ...] = FUNCTION_LOGGERS) -> None:
    """Each load of an app.py is a new execution environment; let its Logger bind to the current stdout
    (pytest's capture) instead of reusing the handler a previous test's load attached."""
    for name in names:
        existing = logging.getLogger(name)
        for handler in list(existing.handlers):
            existing.removeHandler(handler)
        for attribute in ("init", "powertools_handler"):
            if hasattr(existing, attribute):
                delattr(existing, attribute)


@pytest.fixture
def gateway(stack, stripe_standin, monkeypatch):
    """Factory: a freshly started execution environment with the given configuration overrides."""

    def start(**overrides: str) -> Gateway:
        reset_logging()
        env = stack.service_env(stripe_api_base=stripe_standin.base_url, return_url=RETURN_URL,
                                ALLOWED_RETURN_URLS="https://shop.example.com,https://docs.example.com/billing/")
        env.update(overrides)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return Gateway(load_handler_module())

    return start


@pytest.fixture
def portal_overrides() -> dict[str, str]:
    """The portal function's configuration beyond the defaults, for fixtures that start it (a module overrides it)."""
    return {}


@pytest.fixture
def user(stack):
    """Factory: a signed-up user; returns (sub, tokens from a real InitiateAuth against moto)."""

    def create(username: str = "ada", *, email: str | None = "ada@example.com", email_verified: bool = True,
               name: str | None = "Ada Lovelace"):
        sub = stack.add_user(username, PASSWORD, email=email, email_verified=email_verified, name=name)
        return sub, stack.sign_in(username, PASSWORD)

    return create


# --- the billing status: the portal and webhook functions, the stand-in delivering to the webhook function ---
@dataclass
class Billing:
    portal: object  # Gateway
    webhooks: object  # the webhook function's module
    url: str
    secret_id: str
    endpoint_id: str

    def status(self, token: str, **headers):
        return self.portal.call("GET", "/billing/status", headers={
            "authorization": f"Bearer {token}", "accept": "application/json", **headers})

    def portal_calls(self) -> int:
        return self.portal.module.portal_service().billing.calls


def deliver(webhooks, body: str, signature: str | None, *, base64_body: bool = False):
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["stripe-signature"] = signature
    event = build_event("POST", "/webhooks/stripe", headers=headers, body=body)
    if base64_body:
        import base64

        event["body"], event["isBase64Encoded"] = base64.b64encode(body.encode()).decode(), True
    result = webhooks.lambda_handler(event, new_context())
    return result["statusCode"], json.loads(result["body"] or "{}")


@pytest.fixture
def billing(gateway, stack, stripe_standin, portal_overrides):
    secret_id = add_webhook_secret(stack)
    portal = gateway(WEBHOOK_SECRET_ID=secret_id, **portal_overrides)
    reset_logging(("stripe-portal-gateway-webhooks",))
    webhooks = load_handler_module(ROOT / "functions" / "webhooks" / "app.py")
    server = serve(webhooks.lambda_handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe"
    from portal_admin.webhooks import setup

    setup(url=url, secret_id=secret_id, client=stack.moto.client, out=io.StringIO(),
          stripe=StripeHttp(api_base=stripe_standin.base_url, timeout_seconds=5).with_key(stripe_standin.key))
    (endpoint,) = stripe_standin.account.webhook_endpoints.values()
    stripe_standin.deliverer.retry_delays = (0.05, 0.1, 0.2, 0.4, 0.8)
    yield Billing(portal, webhooks, url, secret_id, endpoint["id"])
    server.shutdown()
    server.server_close()


def settle(standin) -> None:
    assert standin.deliverer.idle(20), "the stand-in's deliveries did not finish"
