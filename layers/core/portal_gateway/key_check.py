"""Does this Stripe key do everything the service needs? Used by the rotation function (testSecret), the admin
`rotate-key` command and the `check` preflight, so all three refuse exactly the same keys.

Permission probes have no side effects: they address a customer id that cannot exist, so a permitted key
gets "no such customer" and a key without the permission gets 403.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import StripeKeyUnavailable
from .stripe_http import StripeApiError, StripeHttp, path_of
from .stripe_key import key_mode, parse_stripe_key

PROBE_CUSTOMER = "cus_portalgatewayprobe0"
PROBE_RETURN_URL = "https://example.com/"


ACCOUNT_CHECK = "Stripe account"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""
    value: str | None = None  # what the check found, for the next step (the account id); never printed whole


def masked_account(account_id: str) -> str:
    """An account id as shown to people: its last 4 characters only."""
    return "acct_…" + account_id[-4:]


def check_stripe_key(raw_secret_value: str, *, expected_mode: str, api_base: str | None = None,
                     portal_configuration_id: str | None = None, timeout: float = 10.0) -> list[Check]:
    """Run the checks in order; stop at the first one later checks depend on. Never echoes the key."""
    checks: list[Check] = []
    try:
        key = parse_stripe_key(raw_secret_value)
    except StripeKeyUnavailable as exc:
        return [Check("key format", False, exc.log_detail or "", "Use a secret (sk_) or restricted (rk_) key")]
    kind = "restricted" if key.startswith("rk_") else "secret"
    checks.append(Check("key format", True, f"{kind} key"))
    mode = key_mode(key)
    if mode != expected_mode:
        checks.append(Check("key mode", False, f"STRIPE_MODE is '{expected_mode}' but this is a {mode}-mode key",
                            f"Use a {expected_mode}-mode key, or deploy with StripeMode={mode}"))
        return checks
    checks.append(Check("key mode", True, f"{mode} mode"))

    client = StripeHttp(api_base=api_base, timeout_seconds=timeout, max_network_retries=1).with_key(key)

    try:
        client("GET", "/v1/customers", {"limit": 1})
        checks.append(Check("Stripe accepts the key", True))
        checks.append(Check("permission: Customers read", True))
    except StripeApiError as exc:
        if exc.kind == "AuthenticationError":
            return checks + [Check("Stripe accepts the key", False,
                                   "Stripe rejected the key (revoked, expired or mistyped)",
                                   "Copy the key again from the Stripe Dashboard")]
        if exc.kind != "PermissionError":
            return checks + [Check("Stripe reachable", False, f"{exc.kind} (http {exc.http_status})",
                                   "Check network access to api.stripe.com and Stripe's status page")]
        checks.append(Check("Stripe accepts the key", True))
        checks.append(Check("permission: Customers read", False, "403 listing customers",
                            "Give the restricted key Customers: Write"))

    checks.append(_account(client))
    checks.append(_probe("permission: Customers write", "Give the restricted key Customers: Write",
                         lambda: client("POST", path_of("v1", "customers", PROBE_CUSTOMER),
                                        {"metadata": {"probe": ""}})))
    checks.append(_probe("permission: Customer portal write", "Give the restricted key Customer portal: Write",
                         lambda: client("POST", "/v1/billing_portal/sessions",
                                        {"customer": PROBE_CUSTOMER, "return_url": PROBE_RETURN_URL})))
    checks.append(_portal_configuration(client, mode, portal_configuration_id))
    return checks


def _account(client) -> Check:
    """Which Stripe account the key belongs to (GET /v1/account), so it can be held to the pinned one."""
    try:
        account_id = client("GET", "/v1/account")["id"]
    except StripeApiError as exc:
        if exc.kind == "PermissionError":
            return Check(ACCOUNT_CHECK, False, "403 reading the key's own account",
                         "Give the restricted key read access to the account (GET /v1/account)")
        return Check(ACCOUNT_CHECK, False, f"{exc.kind} (http {exc.http_status})", "Try again; check Stripe status")
    return Check(ACCOUNT_CHECK, True, masked_account(account_id), value=account_id)


def key_account(checks: list[Check]) -> str | None:
    return next((c.value for c in checks if c.name == ACCOUNT_CHECK and c.ok), None)


def check_account_pin(checks: list[Check], pins: AccountPins, mode: str) -> Check:
    """Hold the key's account to the one this deployment is pinned to. The first key that passes every other
    check pins its account (set-up); after that a key of any other account is refused."""
    name = "same Stripe account as before"
    account_id = key_account(checks)
    if account_id is None:
        return Check(name, False, "the key's account is unknown (see above)", "Fix the check above first")
    try:
        pinned = pins.get(mode)
        if pinned is None and passed(checks):
            pinned = pins.pin(mode, account_id)
            if pinned == account_id:
                return Check(name, True, f"pinned to {masked_account(account_id)} (first key of this deployment)")
    except PinStoreError as exc:
        return Check(name, False, f"could not read the account pin: {exc}",
                     "Check the customers table name and that your credentials may read it")
    if pinned is None:
        return Check(name, False, "not pinned yet, and this key has other failures", "Fix the checks above")
    if pinned != account_id:
        return Check(name, False,
                     f"this key belongs to Stripe account {masked_account(account_id)}, but this deployment's "
                     f"customers are in {masked_account(pinned)}",
                     f"Use a key of the account ending {pinned[-4:]}; moving to another account needs its own "
                     f"deployment (docs/runbook.md)")
    return Check(name, True, masked_account(account_id))


class PinStoreError(Exception):
    """The account pin could not be read or written; the message is an AWS error code, never a secret."""


class AccountPins:
    """The pinned Stripe account per mode, one item in the customers table: pk "<mode>#stripe-account"."""

    def __init__(self, table: str, client):
        self.table = table
        self._client = client  # a boto3 DynamoDB client

    @staticmethod
    def key(mode: str) -> str:
        return f"{mode}#stripe-account"

    def get(self, mode: str) -> str | None:
        try:
            item = self._client.get_item(TableName=self.table, Key={"pk": {"S": self.key(mode)}},
                                         ConsistentRead=True).get("Item")
        except Exception as exc:  # noqa: BLE001 - botocore errors, reported by code
            raise PinStoreError(_aws_code(exc)) from None
        return item["account_id"]["S"] if item else None

    def pin(self, mode: str, account_id: str) -> str:
        """Record the account unless one is recorded; return whichever is recorded."""
        try:
            self._client.put_item(TableName=self.table, Item={
                "pk": {"S": self.key(mode)}, "account_id": {"S": account_id},
                "pinned_at": {"N": str(int(time.time()))}}, ConditionExpression="attribute_not_exists(pk)")
            return account_id
        except Exception as exc:  # noqa: BLE001
            if _aws_code(exc) != "ConditionalCheckFailedException":
                raise PinStoreError(_aws_code(exc)) from None
        return self.get(mode) or account_id


def _aws_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__


def _probe(name: str, fix: str, call) -> Check:
    try:
        call()
    except StripeApiError as exc:
        if exc.kind == "PermissionError":
            return Check(name, False, "403 from Stripe", fix)
        if exc.kind == "InvalidRequestError":
            return Check(name, True)  # "no such customer" (or "portal not configured"): the key may do it
        return Check(name, False, f"{exc.kind} (http {exc.http_status})", "Try again; check Stripe status")
    return Check(name, True)


def _portal_configuration(client, mode: str, configuration_id: str | None) -> Check:
    name = "portal configuration"
    fix = (f"Save the customer portal settings in the Stripe Dashboard in {mode} mode "
           "(Settings > Billing > Customer portal)")
    try:
        if configuration_id:
            config = client("GET", path_of("v1", "billing_portal", "configurations", configuration_id))
            if not config.get("active"):
                return Check(name, False, f"{configuration_id} is not active", "Activate it or set another id")
            return Check(name, True, configuration_id)
        page = client("GET", "/v1/billing_portal/configurations", {"is_default": True, "limit": 1})
    except StripeApiError as exc:
        if exc.kind == "PermissionError":
            return Check(name, False, "403 reading portal configurations",
                         "Give the restricted key Customer portal: Write")
        if exc.kind == "InvalidRequestError":
            return Check(name, False, f"{configuration_id} does not exist in {mode} mode",
                         "Fix PORTAL_CONFIGURATION_ID")
        return Check(name, False, f"{exc.kind} (http {exc.http_status})", "Try again; check Stripe status")
    if not page.get("data"):
        return Check(name, False, f"no default portal configuration in {mode} mode", fix)
    return Check(name, True, "default configuration")


def passed(checks: list[Check]) -> bool:
    return bool(checks) and all(check.ok for check in checks)
