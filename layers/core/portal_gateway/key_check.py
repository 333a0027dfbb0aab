"""Does this Stripe key do everything the service needs? Used by the rotation function (testSecret), the admin
`rotate-key` command and the `check` preflight, so all three refuse exactly the same keys.

Permission probes have no side effects: they address a customer id that cannot exist, so a permitted key
gets "no such customer" and a key without the permission gets 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import StripeKeyUnavailable
from .stripe_key import key_mode, parse_stripe_key
from .stripe_lib import stripe

PROBE_CUSTOMER = "cus_portalgatewayprobe0"
PROBE_RETURN_URL = "https://example.com/"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""


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

    client = stripe.StripeClient(
        key,
        base_addresses={"api": api_base} if api_base else None,
        max_network_retries=1,
        http_client=stripe.RequestsClient(timeout=timeout),
    )
    try:
        client.v1.customers.list(params={"limit": 1})
        checks.append(Check("Stripe accepts the key", True))
        checks.append(Check("permission: Customers read", True))
    except stripe.AuthenticationError:
        return checks + [Check("Stripe accepts the key", False, "Stripe rejected the key (revoked, expired or mistyped)",
                               "Copy the key again from the Stripe Dashboard")]
    except stripe.PermissionError:
        checks.append(Check("Stripe accepts the key", True))
        checks.append(Check("permission: Customers read", False, "403 listing customers",
                            "Give the restricted key Customers: Write"))
    except stripe.StripeError as exc:
        return checks + [Check("Stripe reachable", False, f"{type(exc).__name__} (http {exc.http_status})",
                               "Check network access to api.stripe.com and Stripe's status page")]

    checks.append(_probe("permission: Customers write", "Give the restricted key Customers: Write",
                         lambda: client.v1.customers.update(PROBE_CUSTOMER, params={"metadata": {"probe": ""}})))
    checks.append(_probe("permission: Customer portal write", "Give the restricted key Customer portal: Write",
                         lambda: client.v1.billing_portal.sessions.create(
                             params={"customer": PROBE_CUSTOMER, "return_url": PROBE_RETURN_URL})))
    checks.append(_portal_configuration(client, mode, portal_configuration_id))
    return checks


def _probe(name: str, fix: str, call) -> Check:
    try:
        call()
    except stripe.PermissionError:
        return Check(name, False, "403 from Stripe", fix)
    except stripe.InvalidRequestError:
        return Check(name, True)  # "no such customer" (or "portal not configured"): the key may do it
    except stripe.StripeError as exc:
        return Check(name, False, f"{type(exc).__name__} (http {exc.http_status})", "Try again; check Stripe status")
    return Check(name, True)


def _portal_configuration(client: stripe.StripeClient, mode: str, configuration_id: str | None) -> Check:
    name = "portal configuration"
    fix = f"Save the customer portal settings in the Stripe Dashboard in {mode} mode (Settings > Billing > Customer portal)"
    try:
        if configuration_id:
            config = client.v1.billing_portal.configurations.retrieve(configuration_id)
            if not config.active:
                return Check(name, False, f"{configuration_id} is not active", "Activate it or set another id")
            return Check(name, True, configuration_id)
        page = client.v1.billing_portal.configurations.list(params={"is_default": True, "limit": 1})
    except stripe.PermissionError:
        return Check(name, False, "403 reading portal configurations", "Give the restricted key Customer portal: Write")
    except stripe.InvalidRequestError:
        return Check(name, False, f"{configuration_id} does not exist in {mode} mode", "Fix PORTAL_CONFIGURATION_ID")
    except stripe.StripeError as exc:
        return Check(name, False, f"{type(exc).__name__} (http {exc.http_status})", "Try again; check Stripe status")
    if not page.data:
        return Check(name, False, f"no default portal configuration in {mode} mode", fix)
    return Check(name, True, "default configuration")


def passed(checks: list[Check]) -> bool:
    return bool(checks) and all(check.ok for check in checks)
