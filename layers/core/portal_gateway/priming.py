"""Priming: the user-facing requests rehearsed whole at init, with nothing leaving the process.

On-demand Lambda runs init on a full vCPU and the first request at the memory size's share. Fetching and
connecting at init (PortalService.warm_up) leaves the first request only its caller's own work, but that work
runs code this Python process has never run, and a fresh interpreter runs code slower the first time (bytecode
not yet specialized, data not yet in the CPU's caches). Without a rehearsal, that first time is the first user's.

So init runs that code ahead of them: a throwaway service, built like the real one but for a pool and app client
of its own (priming_token.py: a token signed by a key no real verifier trusts), takes a whole portal request and
a billing status request through the handler, the verifier, the mapping and projection stores, the key provider
and the Stripe client, and every outbound request it makes is answered in memory by `PrimingWorld`
(http_pool.answered_in_memory: the same HTTP code both ways, over a socket pair). Nothing is sent anywhere, no
metric is counted, the real service's caches and connections are untouched, and the throwaway service is dropped
afterwards. `make bench` reports what it costs init and what the first request still costs
(docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import AbstractContextManager
from urllib.parse import urlsplit

from portal_gateway.billing.status_projection import project
from portal_gateway.config import Settings
from portal_gateway.http_pool import answered_in_memory
from portal_gateway.priming_token import PRIMING_CLIENT_ID, PRIMING_ISSUER, PRIMING_JWK, PRIMING_SUB, PRIMING_TOKEN
from portal_gateway.service import PortalService, build_service

__all__ = ["PRIMING_PORTAL_URL", "PRIMING_PROJECTION", "PRIMING_TOKEN", "PrimingWorld", "in_memory",
           "priming_service"]

PRIMING_JWKS_URL = "https://priming.invalid/.well-known/jwks.json"  # .invalid: a name that never resolves
PRIMING_STRIPE_API_BASE = "https://priming.invalid"
PRIMING_TABLE = "priming-not-a-table"
PRIMING_SECRET_ID = "priming-not-a-secret"
PRIMING_CUSTOMER_ID = "cus_Priming0000000"
PRIMING_PORTAL_URL = "https://priming.invalid/p/session/priming"  # not a portal: no real-looking URL here
PRIMING_CREATED = 1767225600  # the token's own iat: fixed, like everything else here


def priming_settings(settings: Settings) -> Settings:
    """The real settings but for whom tokens are accepted from (the priming pool and client), without plain-link
    sign-in (the rehearsal is a request with a token), and naming no real resource: should a request ever escape
    the in-memory answers, it would find no such host, table, secret or pool rather than touch a real one."""
    return dataclasses.replace(
        settings, user_pool_id=f"{settings.region}_Priming", issuer=PRIMING_ISSUER, client_ids=(PRIMING_CLIENT_ID,),
        jwks_url=PRIMING_JWKS_URL, stripe_api_base=PRIMING_STRIPE_API_BASE, customers_table=PRIMING_TABLE,
        stripe_secret_id=PRIMING_SECRET_ID, cognito_domain=None, oauth_client_id=None, callback_url=None,
        oauth_secret_id=None)


def priming_service(settings: Settings) -> PortalService:
    """A service built as build_service builds the real one, for the priming settings, counting nothing."""
    return build_service(priming_settings(settings))


# What the rehearsal's customer has: one active subscription with one entitlement, as the webhooks would store it.
PRIMING_PROJECTION = project(
    [{"status": "active", "created": PRIMING_CREATED, "cancel_at_period_end": False,
      "items": {"data": [{"quantity": 1, "current_period_end": PRIMING_CREATED + 30 * 86400,
                          "price": {"id": "price_Priming", "product": "prod_Priming", "lookup_key": "priming"}}]}}],
    [{"lookup_key": "priming"}])


class PrimingWorld:
    """Answers the throwaway service's outbound requests as the real services would answer a returning user's
    first requests: the JWKS, the Stripe key's secret, the user (AdminGetUser), the user's mapping and billing
    status projection (GetItem) and a portal session. Anything else is refused, as an unknown operation would be."""

    def __init__(self, settings: Settings):
        self.mode = settings.stripe_mode
        self.requests: list[str] = []  # what was asked: "GET /.well-known/jwks.json", "GetItem", ...

    def answer(self, method: str, url: str, headers: dict[str, str], body: bytes | None):
        target = headers.get("X-Amz-Target", "")
        operation = target.rsplit(".", 1)[-1] if target else f"{method} {urlsplit(url).path}"
        self.requests.append(operation)
        if url == PRIMING_JWKS_URL:
            return _json(200, {"keys": [PRIMING_JWK]})
        if target:
            return self._aws(operation, json.loads(body or b"{}"))
        if operation == "POST /v1/billing_portal/sessions":
            return _json(200, {"id": "bps_Priming", "object": "billing_portal.session", "created": PRIMING_CREATED,
                               "customer": PRIMING_CUSTOMER_ID, "livemode": self.mode == "live", "locale": None,
                               "configuration": "bpc_Priming", "flow": None, "on_behalf_of": None,
                               "return_url": "https://priming.invalid/", "url": PRIMING_PORTAL_URL},
                         {"Request-Id": "req_Priming", "Stripe-Version": headers.get("Stripe-Version", "")})
        return _json(404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                                     "message": "Not part of the rehearsal."}})

    def _aws(self, operation: str, request: dict):
        if operation == "GetSecretValue":
            return _json(200, {"ARN": f"arn:aws:secretsmanager:us-east-1:000000000000:secret:{PRIMING_SECRET_ID}",
                               "Name": PRIMING_SECRET_ID, "VersionId": "priming", "VersionStages": ["AWSCURRENT"],
                               "SecretString": f"sk_{self.mode}_{'0' * 24}", "CreatedDate": PRIMING_CREATED})
        if operation == "AdminGetUser":
            return _json(200, {"Username": "priming", "Enabled": True, "UserStatus": "CONFIRMED",
                               "UserAttributes": [{"Name": "sub", "Value": PRIMING_SUB},
                                                  {"Name": "email", "Value": "priming@example.invalid"},
                                                  {"Name": "email_verified", "Value": "true"}]})
        if operation == "GetItem":
            names = request.get("ExpressionAttributeNames", {})
            if names.get("#p") == "projection":
                return _json(200, {"Item": {"projection": {"S": json.dumps(PRIMING_PROJECTION)},
                                            "synced_at": {"N": str(PRIMING_CREATED * 1000)}}})
            if names.get("#a") == "key":  # the purchase reference key: a fixed one, no real key's
                return _json(200, {"Item": {"key": {"S": "00" * 32}}})
            return _json(200, {"Item": {names.get("#a", "customer_id"): {"S": PRIMING_CUSTOMER_ID}}})
        return _json(400, {"__type": "com.amazonaws#UnknownOperationException"})


def _json(status: int, document: dict, headers: dict[str, str] | None = None):
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(document).encode("utf-8")


def in_memory(world: PrimingWorld) -> AbstractContextManager[None]:
    """Inside, this thread's outbound requests are answered by `world`, never sent."""
    return answered_in_memory(world.answer)
