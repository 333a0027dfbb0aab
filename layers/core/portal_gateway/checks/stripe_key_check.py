"""Does this Stripe key do everything the service needs? Used by the rotation function (testSecret), the admin
`rotate-key` command and the `check` preflight, so all three refuse exactly the same keys.

Permission probes have no side effects: they address a customer id that cannot exist, so a permitted key
gets "no such customer" and a key without the permission gets 403.

Which Stripe account a key belongs to: a secret key may read GET /v1/account; a restricted key never may
(Stripe offers no permission for it: 403 whatever the key's permissions). So the account is also proven by
what only this deployment's account has: the customers it has mapped and the portal configuration recorded
with the account pin must exist for the key. A key of another account sees neither.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from portal_gateway.billing.stripe_client import StripeApiError, StripeHttp, path_of
from portal_gateway.billing.stripe_key import key_mode, parse_stripe_key
from portal_gateway.errors import StripeKeyUnavailable

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
                     portal_configuration_id: str | None = None, timeout: float = 10.0,
                     pins: AccountPins | None = None, checkout: bool = False,
                     write_pin: bool = True) -> list[Check]:
    """Run the checks in order; stop at the first one later checks depend on. Never echoes the key. With
    `pins` (the deployment's customers table), the key is also held to the deployment's Stripe account. The key
    must hold every permission the deployed features use: the portal's, the billing status's (always deployed),
    and with `checkout` (CheckoutPrices set) Subscribe's and the embedded components'."""
    checks: list[Check] = []
    try:
        key = parse_stripe_key(raw_secret_value)
    except StripeKeyUnavailable as exc:
        return [Check("key format", False, exc.log_detail or "", "Use a secret (sk_) or restricted (rk_) key")]
    restricted = key.startswith("rk_")
    checks.append(Check("key format", True, f"{'restricted' if restricted else 'secret'} key"))
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

    checks.append(_account(client, restricted))
    checks.append(probe_permission(
        "permission: Customers write", "Give the restricted key Customers: Write",
        lambda: client("POST", path_of("v1", "customers", PROBE_CUSTOMER), {"metadata": {"probe": ""}})))
    checks.append(probe_permission(
        "permission: Customer portal write", "Give the restricted key Customer portal: Write",
        lambda: client("POST", "/v1/billing_portal/sessions",
                       {"customer": PROBE_CUSTOMER, "return_url": PROBE_RETURN_URL})))
    checks += feature_permissions(client, checkout=checkout)
    checks.append(_portal_configuration(client, mode, portal_configuration_id))
    if pins is not None:
        checks.append(_account_pin(checks, pins, mode, client, write=write_pin))
    return checks


def _account(client, restricted: bool) -> Check:
    """Which Stripe account the key belongs to (GET /v1/account), so it can be held to the pinned one. A
    restricted key cannot be asked (Stripe refuses every restricted key there): its account is proven by the
    deployment's own customers and portal configuration instead (`same Stripe account as before`)."""
    if restricted:
        return Check(ACCOUNT_CHECK, True, "a restricted key cannot read its account id; proven by this "
                                          "deployment's customers and portal configuration")
    try:
        account_id = client("GET", "/v1/account")["id"]
    except StripeApiError as exc:
        if exc.kind == "PermissionError":
            return Check(ACCOUNT_CHECK, False, "403 reading the key's own account",
                         "Use the account's secret key, or a restricted key (rk_)")
        return Check(ACCOUNT_CHECK, False, f"{exc.kind} (http {exc.http_status})", "Try again; check Stripe status")
    return Check(ACCOUNT_CHECK, True, masked_account(account_id), value=account_id)


def key_account(checks: list[Check]) -> str | None:
    return next((c.value for c in checks if c.name == ACCOUNT_CHECK and c.ok), None)


PIN_CHECK = "same Stripe account as before"
SAMPLE_CUSTOMERS = 3  # mapped customers a new key must see: one would do; three survive a deleted one


def _account_pin(checks: list[Check], pins: AccountPins, mode: str, client, *, write: bool = True) -> Check:
    """Hold the key to the Stripe account this deployment's customers live in. The first key that passes every
    other check pins the account (its id when a secret key tells it, and the portal configuration); after that
    a key is refused if its account id differs, or if it cannot see the deployment's mapped customers or the
    pinned portal configuration (Stripe: no such customer / configuration, i.e. another account)."""
    account_id = key_account(checks)
    configuration_id = next((c.value for c in checks if c.name == CONFIGURATION_CHECK and c.ok), None)
    if not any(c.name == ACCOUNT_CHECK and c.ok for c in checks):
        return Check(PIN_CHECK, False, "the key's account is unknown (see above)", "Fix the check above first")
    try:
        pin = pins.get(mode)
        customers = pins.sample_customers(mode, SAMPLE_CUSTOMERS)
    except PinStoreError as exc:
        return Check(PIN_CHECK, False, f"could not read the account pin: {exc}",
                     "Check the customers table name and that your credentials may read it")
    pinned_account = pin.account_id if pin else None
    if pinned_account and account_id and pinned_account != account_id:
        return Check(PIN_CHECK, False,
                     f"this key belongs to Stripe account {masked_account(account_id)}, but this deployment's "
                     f"customers are in {masked_account(pinned_account)}",
                     f"Use a key of the account ending {pinned_account[-4:]}; moving to another account needs its "
                     f"own deployment (docs/runbook.md)")
    pinned_configuration = pin.configuration_id if pin else None
    # The portal configuration check above already found this one for the key: no need to ask Stripe again.
    unseen = _unseen(client, customers, None if pinned_configuration == configuration_id else pinned_configuration)
    if isinstance(unseen, Check):
        return unseen
    if unseen:
        where = f" (pinned to {masked_account(pinned_account)})" if pinned_account else ""
        return Check(PIN_CHECK, False,
                     f"this key cannot see {' and '.join(unseen)} of this deployment{where}: it belongs to "
                     "another Stripe account",
                     "Use a key of the Stripe account this deployment's customers are in; moving to another "
                     "account needs its own deployment (docs/runbook.md)")
    if pinned_account and not account_id and not customers and not pinned_configuration:
        # A restricted key cannot say its account, and this deployment has nothing yet it could be held to (a pin
        # of release 1.1.0 holds the account id only): it proves nothing, so it neither passes nor writes.
        return Check(PIN_CHECK, False,
                     f"this deployment is pinned to {masked_account(pinned_account)}, and a restricted key cannot "
                     "show its account while there is nothing of this deployment yet to compare it with",
                     f"Put a secret key of the account ending {pinned_account[-4:]} in once (it records the "
                     "portal configuration restricted keys are then held to), then the restricted key")
    if not write:
        if pin is None:
            return Check(PIN_CHECK, True, "not pinned yet (the first key that rotate-key puts in pins it)")
        return Check(PIN_CHECK, True, _evidence(account_id, customers, pin))
    try:
        if pin is None:
            if not passed(checks):
                return Check(PIN_CHECK, False, "not pinned yet, and this key has other failures",
                             "Fix the checks above")
            pin = pins.pin(mode, account_id, configuration_id)
            if pin.account_id == account_id and pin.configuration_id == configuration_id:
                return Check(PIN_CHECK, True, f"pinned to {_describe_pin(pin)} (first key of this deployment)")
            return _account_pin(checks, pins, mode, client)  # another check pinned first: hold this key to it
        # What an older pin, or one a restricted key wrote, lacks: added only by a key that proved the account
        # (a secret key whose id matched, or a key that saw this deployment's customers or configuration).
        proven = bool(account_id) or bool(customers) or bool(pin.configuration_id)
        if proven and ((pin.account_id is None and account_id) or (pin.configuration_id is None and configuration_id)):
            pins.complete(mode, account_id, configuration_id)
    except PinStoreError as exc:
        return Check(PIN_CHECK, False, f"could not write the account pin: {exc}",
                     "Check that your credentials may write the customers table")
    return Check(PIN_CHECK, True, _evidence(account_id, customers, pin))


def _evidence(account_id: str | None, customers: list[str], pin: Pin | None) -> str:
    evidence = [f"{len(customers)} mapped customer(s)"] if customers else []
    if pin is not None and pin.configuration_id:
        evidence.append("the pinned portal configuration")
    if account_id:
        evidence.insert(0, masked_account(account_id))
    return ", ".join(evidence) or "nothing to compare yet"


def _unseen(client, customers: list[str], configuration_id: str | None) -> list[str] | Check:
    """What of this deployment's account the key cannot see: a list of descriptions, or a failed Check when
    Stripe could not be asked."""
    try:
        missing = sum(1 for customer_id in customers if not _exists(client, "v1", "customers", customer_id))
        configuration_missing = bool(configuration_id and not _exists(
            client, "v1", "billing_portal", "configurations", configuration_id))
    except StripeApiError as exc:
        return Check(PIN_CHECK, False, f"{exc.kind} (http {exc.http_status}) reading this deployment's customers",
                     "Give the restricted key Customers: Write and Customer portal: Write; or try again")
    unseen = [f"{missing} of {len(customers)} mapped customers"] if missing else []
    if configuration_missing:
        unseen.append(f"the portal configuration {configuration_id}")
    return unseen


def _exists(client, *segments: str) -> bool:
    """Whether the object exists for this key (Stripe: no such object, for another account's ids)."""
    try:
        client("GET", path_of(*segments))
    except StripeApiError as exc:
        if exc.kind == "InvalidRequestError" and exc.code == "resource_missing":
            return False
        raise
    return True


def _describe_pin(pin: Pin) -> str:
    return masked_account(pin.account_id) if pin.account_id else f"the account of {pin.configuration_id}"


class PinStoreError(Exception):
    """The account pin could not be read or written; the message is an AWS error code, never a secret."""


@dataclass(frozen=True)
class Pin:
    account_id: str | None  # known when a secret key pinned it (restricted keys cannot read it)
    configuration_id: str | None  # a portal configuration only this account has


class AccountPins:
    """The pinned Stripe account per mode, one item in the customers table: pk "<mode>#stripe-account"."""

    def __init__(self, table: str, client):
        self.table = table
        self._client = client  # a boto3 DynamoDB client

    @staticmethod
    def key(mode: str) -> str:
        return f"{mode}#stripe-account"

    def get(self, mode: str) -> Pin | None:
        try:
            item = self._client.get_item(TableName=self.table, Key={"pk": {"S": self.key(mode)}},
                                         ConsistentRead=True).get("Item")
        except Exception as exc:  # noqa: BLE001 - botocore errors, reported by code
            raise PinStoreError(_aws_code(exc)) from None
        if not item:
            return None
        return Pin((item.get("account_id") or {}).get("S"), (item.get("configuration_id") or {}).get("S"))

    def pin(self, mode: str, account_id: str | None, configuration_id: str | None) -> Pin:
        """Record the account unless one is recorded; return whichever is recorded."""
        item = {"pk": {"S": self.key(mode)}, "pinned_at": {"N": str(int(time.time()))}}
        if account_id:
            item["account_id"] = {"S": account_id}
        if configuration_id:
            item["configuration_id"] = {"S": configuration_id}
        try:
            self._client.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
            return Pin(account_id, configuration_id)
        except Exception as exc:  # noqa: BLE001
            if _aws_code(exc) != "ConditionalCheckFailedException":
                raise PinStoreError(_aws_code(exc)) from None
        return self.get(mode) or Pin(account_id, configuration_id)

    def complete(self, mode: str, account_id: str | None, configuration_id: str | None) -> None:
        """Add what the pin lacks (never change what it has)."""
        for name, value in (("account_id", account_id), ("configuration_id", configuration_id)):
            if not value:
                continue
            try:
                self._client.update_item(TableName=self.table, Key={"pk": {"S": self.key(mode)}},
                                         UpdateExpression="SET #n = :v", ConditionExpression="attribute_not_exists(#n)",
                                         ExpressionAttributeNames={"#n": name},
                                         ExpressionAttributeValues={":v": {"S": value}})
            except Exception as exc:  # noqa: BLE001
                if _aws_code(exc) != "ConditionalCheckFailedException":
                    raise PinStoreError(_aws_code(exc)) from None

    def sample_customers(self, mode: str, count: int, max_pages: int = 5) -> list[str]:
        """Up to `count` customer ids this deployment has mapped in `mode` (a few scan pages at most)."""
        found: list[str] = []
        request = {"TableName": self.table, "ProjectionExpression": "customer_id", "Select": "SPECIFIC_ATTRIBUTES",
                   "FilterExpression": "begins_with(pk, :mode) AND attribute_exists(customer_id)",
                   "ExpressionAttributeValues": {":mode": {"S": f"{mode}#"}}}
        try:
            for _ in range(max_pages):
                page = self._client.scan(**request)
                found += [item["customer_id"]["S"] for item in page.get("Items", [])]
                if len(found) >= count or "LastEvaluatedKey" not in page:
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except Exception as exc:  # noqa: BLE001
            raise PinStoreError(_aws_code(exc)) from None
        return sorted(set(found))[:count]


def _aws_code(exc: Exception) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__


def feature_permissions(client, *, checkout: bool) -> list[Check]:
    """The permissions the billing status (the status route, the webhook function, backfill and the scheduled
    reconciliation read every customer's subscriptions and entitlements; the reconciliation also Stripe's events)
    and, with `checkout`, Subscribe and the embedded components need. A key without them would go live and answer
    503 on those routes."""
    probes = [
        ("permission: Subscriptions read", "Give the restricted key Subscriptions: Read (docs/deploy.md, step 2)",
         lambda: client("GET", "/v1/subscriptions", {"customer": PROBE_CUSTOMER, "limit": 1})),
        ("permission: Entitlements read", "Give the restricted key Entitlements: Read (docs/deploy.md, step 2)",
         lambda: client("GET", "/v1/entitlements/active_entitlements", {"customer": PROBE_CUSTOMER, "limit": 1})),
        ("permission: Events read", "Give the restricted key Events: Read (the scheduled catch-up reads missed "
                                    "events; docs/deploy.md, step 2)",
         lambda: client("GET", "/v1/events", {"limit": 1})),
    ]
    if checkout:
        probes += [
            ("permission: Prices read", "Give the restricted key Prices: Read (CheckoutPrices is set)",
             lambda: client("GET", "/v1/prices", {"lookup_keys": ["portal-gateway-probe"], "limit": 1})),
            ("permission: Checkout Sessions write", "Give the restricted key Checkout Sessions: Write "
                                                    "(CheckoutPrices is set)",
             lambda: client("POST", "/v1/checkout/sessions", {
                 "mode": "subscription", "customer": PROBE_CUSTOMER, "success_url": PROBE_RETURN_URL,
                 "line_items": [{"price": "price_portalgatewayprobe0", "quantity": 1}]})),
            ("permission: Customer Sessions write", "Give the restricted key Customer Sessions: Write "
                                                    "(CheckoutPrices is set)",
             lambda: client("POST", "/v1/customer_sessions", {
                 "customer": PROBE_CUSTOMER, "components": {"pricing_table": {"enabled": True}}})),
        ]
    return [probe_permission(name, fix, call) for name, fix, call in probes]


def probe_permission(name: str, fix: str, call) -> Check:
    """A call the key may or may not make: 403 is a missing permission; "no such customer" means it may."""
    try:
        call()
    except StripeApiError as exc:
        if exc.kind == "PermissionError":
            return Check(name, False, "403 from Stripe", fix)
        if exc.kind == "InvalidRequestError":
            return Check(name, True)  # "no such customer" (or "portal not configured"): the key may do it
        return Check(name, False, f"{exc.kind} (http {exc.http_status})", "Try again; check Stripe status")
    return Check(name, True)


CONFIGURATION_CHECK = "portal configuration"


def _portal_configuration(client, mode: str, configuration_id: str | None) -> Check:
    name = CONFIGURATION_CHECK
    fix = (f"Save the customer portal settings in the Stripe Dashboard in {mode} mode "
           "(Settings > Billing > Customer portal)")
    try:
        if configuration_id:
            config = client("GET", path_of("v1", "billing_portal", "configurations", configuration_id))
            if not config.get("active"):
                return Check(name, False, f"{configuration_id} is not active", "Activate it or set another id")
            return Check(name, True, configuration_id, value=configuration_id)
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
    return Check(name, True, "default configuration", value=page["data"][0].get("id"))


def passed(checks: list[Check]) -> bool:
    return bool(checks) and all(check.ok for check in checks)
