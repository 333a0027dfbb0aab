"""One frozen Settings object, read from the environment once per execution environment.

Every problem names the variable, so a bad deployment fails at start-up with a line an operator can act on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from portal_gateway.aws.endpoints import (
    COGNITO_USER_POOLS,
    DYNAMODB,
    LOOPBACK_HOSTS,
    SECRETS_MANAGER,
    EndpointError,
    cognito_issuer,
    endpoint_for,
)

STRIPE_MODES = ("test", "live")
_POOL_ID = re.compile(r"^(?P<region>[a-z]{2,4}(?:-[a-z]+)+-\d+)_[0-9A-Za-z]+$")


def _pool_region(user_pool_id: str) -> str:
    match = _POOL_ID.fullmatch(user_pool_id)
    if match is None:  # from_env refuses such an id; a Settings built by hand may not
        raise ConfigError("COGNITO_USER_POOL_ID must look like '<region>_<id>', e.g. 'eu-west-1_AbCdEf123'")
    return match.group("region")
_CLIENT_ID = re.compile(r"^[0-9A-Za-z]{1,128}$")
# A Stripe price lookup key as the operator writes it in a parameter: no commas (the list's separator), no spaces.
_LOOKUP_KEY = re.compile(r"[0-9A-Za-z_.:/-]{1,200}")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ConfigError(ValueError):
    """A configuration variable is missing or invalid; the message names it."""


@dataclass(frozen=True)
class Settings:
    stripe_secret_id: str
    stripe_mode: str
    user_pool_id: str
    client_ids: tuple[str, ...]
    customers_table: str
    return_url: str
    allowed_return_urls: tuple[str, ...] = ()
    jwks_url: str = ""
    issuer: str = ""
    stripe_api_base: str | None = None
    allow_customer_creation: bool = True
    match_existing_by_email: bool = True
    portal_configuration_id: str | None = None
    stripe_key_ttl_seconds: int = 300
    stripe_timeout_seconds: float = 4.0
    stripe_max_network_retries: int = 1
    jwt_leeway_seconds: int = 30
    jwks_timeout_seconds: float = 3.0
    allowed_origins: tuple[str, ...] = ()
    check_user_status: bool = True
    init_rehearsal: bool = True  # init rehearses the first requests (priming.py); false is the escape hatch
    always_ask_to_sign_in: bool = False  # plain links: the Hosted UI asks for credentials even with its session
    alarms_notify: bool = False  # an alarm topic is configured: error pages may say the owner was notified
    cognito_domain: str | None = None
    oauth_client_id: str | None = None
    callback_url: str | None = None
    oauth_secret_id: str | None = None
    checkout_prices: tuple[str, ...] = ()  # lookup keys of the prices the checkout route may sell
    allow_multiple_subscriptions: bool = False  # else a subscriber's Subscribe opens the portal instead

    @property
    def region(self) -> str:
        return _pool_region(self.user_pool_id)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        mode = _choice(env, "STRIPE_MODE", STRIPE_MODES)
        pool_id = _required(env, "COGNITO_USER_POOL_ID")
        match = _POOL_ID.fullmatch(pool_id)
        if not match:
            raise ConfigError("COGNITO_USER_POOL_ID must look like '<region>_<id>', e.g. 'eu-west-1_AbCdEf123'")
        _check_endpoints(env, match.group("region"))
        issuer = cognito_issuer(pool_id, match.group("region"))
        client_ids = _csv(env, "COGNITO_CLIENT_IDS")
        if not client_ids:
            raise ConfigError("COGNITO_CLIENT_IDS is required: the app client id(s) allowed to call the portal")
        for client_id in client_ids:
            if not _CLIENT_ID.fullmatch(client_id):
                raise ConfigError(f"COGNITO_CLIENT_IDS has an invalid app client id: {client_id[:40]!r}")
        default_jwks_url = f"{issuer}/.well-known/jwks.json"
        jwks_url = env.get("COGNITO_JWKS_URL", "").strip() or default_jwks_url
        _check_url("COGNITO_JWKS_URL", jwks_url, prefix_ok=False)
        if (jwks_url != default_jwks_url and urlsplit(jwks_url).hostname not in LOOPBACK_HOSTS
                and not _bool(env, "ALLOW_CUSTOM_JWKS_URL", False)):
            # Whoever serves the JWKS can sign tokens for any user: only the pool's own, or a local stand-in.
            raise ConfigError("COGNITO_JWKS_URL may only point at the user pool's own JWKS or at loopback "
                              "(a local stand-in); set ALLOW_CUSTOM_JWKS_URL=true to use another host on purpose")
        return_url = _required(env, "RETURN_URL")
        _check_url("RETURN_URL", return_url, prefix_ok=False)
        allowed = _csv(env, "ALLOWED_RETURN_URLS")
        for entry in allowed:
            _check_url("ALLOWED_RETURN_URLS", entry, prefix_ok=True)
        api_base = env.get("STRIPE_API_BASE", "").strip().rstrip("/") or None
        if api_base:
            _check_url("STRIPE_API_BASE", api_base, prefix_ok=False)
        config_id = env.get("PORTAL_CONFIGURATION_ID", "").strip() or None
        if config_id and not re.fullmatch(r"bpc_[0-9A-Za-z]+", config_id):
            raise ConfigError("PORTAL_CONFIGURATION_ID must be a Stripe portal configuration id (bpc_...)")
        origins = _csv(env, "ALLOWED_ORIGINS")
        for origin in origins:
            _check_url("ALLOWED_ORIGINS", origin, prefix_ok=True)
            if urlsplit(origin).path not in ("", "/"):
                raise ConfigError(f"ALLOWED_ORIGINS entries are origins, without a path: {origin[:80]!r}")
        domain = env.get("COGNITO_DOMAIN", "").strip().rstrip("/") or None
        oauth_client_id = callback_url = oauth_secret_id = None
        if domain:
            if not domain.startswith(("https://", "http://")):
                domain = "https://" + domain
            _check_url("COGNITO_DOMAIN", domain, prefix_ok=False)
            oauth_client_id = env.get("OAUTH_CLIENT_ID", "").strip() or client_ids[0]
            if oauth_client_id not in client_ids:
                raise ConfigError("OAUTH_CLIENT_ID must be one of COGNITO_CLIENT_IDS")
            # Optional: without it the callback is this API's own address (the domain API Gateway was called
            # on) + /portal/callback, so a first deploy needs no value it cannot know yet. Set it only when
            # the API is reached through a path-mapped custom domain.
            callback_url = env.get("CALLBACK_URL", "").strip() or None
            if callback_url:
                _check_url("CALLBACK_URL", callback_url, prefix_ok=False)
                if not urlsplit(callback_url).path.endswith("/portal/callback"):
                    raise ConfigError("CALLBACK_URL must be this API's /portal/callback URL")
            oauth_secret_id = _required(env, "OAUTH_SECRET_ID")
        checkout_prices = _csv(env, "CHECKOUT_PRICES")
        if len(checkout_prices) > 10:
            raise ConfigError("CHECKOUT_PRICES takes at most 10 lookup keys (Stripe looks up 10 at a time)")
        for lookup_key in checkout_prices:
            if not _LOOKUP_KEY.fullmatch(lookup_key):
                raise ConfigError(f"CHECKOUT_PRICES has an invalid price lookup key: {lookup_key[:40]!r}")
        return cls(
            checkout_prices=tuple(dict.fromkeys(checkout_prices)),
            allow_multiple_subscriptions=_bool(env, "ALLOW_MULTIPLE_SUBSCRIPTIONS", False),
            allowed_origins=tuple(o.rstrip("/") for o in origins),
            cognito_domain=domain,
            oauth_client_id=oauth_client_id,
            callback_url=callback_url,
            oauth_secret_id=oauth_secret_id,
            stripe_secret_id=_required(env, "STRIPE_SECRET_ID"),
            stripe_mode=mode,
            user_pool_id=pool_id,
            client_ids=client_ids,
            customers_table=_required(env, "CUSTOMERS_TABLE"),
            return_url=return_url,
            allowed_return_urls=allowed,
            jwks_url=jwks_url,
            issuer=issuer,
            stripe_api_base=api_base,
            allow_customer_creation=_bool(env, "ALLOW_CUSTOMER_CREATION", True),
            match_existing_by_email=_bool(env, "MATCH_EXISTING_BY_EMAIL", True),
            check_user_status=_bool(env, "CHECK_USER_STATUS", True),
            init_rehearsal=_bool(env, "INIT_REHEARSAL", True),
            always_ask_to_sign_in=_bool(env, "ALWAYS_ASK_TO_SIGN_IN", False),
            alarms_notify=_bool(env, "ALARMS_NOTIFY", False),
            portal_configuration_id=config_id,
            stripe_key_ttl_seconds=_number(env, "STRIPE_KEY_TTL_SECONDS", 300, int, 0, 3600),
            stripe_timeout_seconds=_number(env, "STRIPE_TIMEOUT_SECONDS", 4.0, float, 0.5, 30),
            stripe_max_network_retries=_number(env, "STRIPE_MAX_NETWORK_RETRIES", 1, int, 0, 3),
            jwt_leeway_seconds=_number(env, "JWT_LEEWAY_SECONDS", 30, int, 0, 300),
            jwks_timeout_seconds=_number(env, "JWKS_TIMEOUT_SECONDS", 3.0, float, 0.2, 10),
        )


@dataclass(frozen=True)
class WebhookSettings:
    """The webhook function's configuration: where the signing secrets, the Stripe key and the table are."""

    webhook_secret_id: str | None  # None: the stack's webhook endpoint is off (StripeWebhookEndpoint=disabled)
    stripe_secret_id: str
    stripe_mode: str
    customers_table: str
    user_pool_id: str
    stripe_api_base: str | None = None
    signature_tolerance_seconds: int = 300  # stripe-python's default: older signatures are replays
    stripe_key_ttl_seconds: int = 300
    match_existing_by_email: bool = True  # a purchase naming no user goes to the one user with its email
    reconcile_max_age_seconds: int = 24 * 3600  # the scheduled reconciliation re-reads statuses older than this
    reconcile_rate: float = 10.0  # Stripe calls per second the reconciliation may make

    @property
    def region(self) -> str:
        return _pool_region(self.user_pool_id)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebhookSettings:
        env = os.environ if environ is None else environ
        api_base = env.get("STRIPE_API_BASE", "").strip().rstrip("/") or None
        if api_base:
            _check_url("STRIPE_API_BASE", api_base, prefix_ok=False)
        pool_id = _required(env, "COGNITO_USER_POOL_ID")
        if not _POOL_ID.fullmatch(pool_id):
            raise ConfigError("COGNITO_USER_POOL_ID must look like '<region>_<id>', e.g. 'eu-west-1_AbCdEf123'")
        return cls(
            webhook_secret_id=env.get("WEBHOOK_SECRET_ID", "").strip() or None,
            stripe_secret_id=_required(env, "STRIPE_SECRET_ID"),
            stripe_mode=_choice(env, "STRIPE_MODE", STRIPE_MODES),
            customers_table=_required(env, "CUSTOMERS_TABLE"),
            user_pool_id=pool_id,
            stripe_api_base=api_base,
            signature_tolerance_seconds=_number(env, "SIGNATURE_TOLERANCE_SECONDS", 300, int, 30, 600),
            stripe_key_ttl_seconds=_number(env, "STRIPE_KEY_TTL_SECONDS", 300, int, 0, 3600),
            match_existing_by_email=_bool(env, "MATCH_EXISTING_BY_EMAIL", True),
            reconcile_max_age_seconds=_number(env, "RECONCILE_MAX_AGE_HOURS", 24, int, 1, 24 * 30) * 3600,
            reconcile_rate=_number(env, "RECONCILE_RATE", 10.0, float, 0.5, 50),
        )


def _check_endpoints(env: Mapping[str, str], pool_region: str) -> None:
    """Every AWS endpoint the function will call must be resolvable now, not at the first click: the pool's
    region (Cognito) and the function's own (Secrets Manager, DynamoDB; Lambda sets AWS_REGION)."""
    own_region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    checks = [(COGNITO_USER_POOLS, pool_region)]
    if own_region:
        checks += [(SECRETS_MANAGER, own_region), (DYNAMODB, own_region)]
    try:
        for service, region in checks:
            endpoint_for(service, region, env)
    except EndpointError as exc:
        raise ConfigError(str(exc)) from None


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    value = _required(env, name).lower()
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}")
    return value


def _csv(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false")


def _number(env, name, default, kind, low, high):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number between {low} and {high}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be a number between {low} and {high}")
    return value


def _check_url(name: str, url: str, *, prefix_ok: bool) -> None:
    parts = urlsplit(url)
    local = parts.hostname in LOOPBACK_HOSTS
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise ConfigError(f"{name} must use https (http is accepted only for localhost): {url[:80]!r}")
    if not parts.hostname or parts.username or parts.password or "\\" in url:
        raise ConfigError(f"{name} must be an absolute URL without credentials: {url[:80]!r}")
    if parts.fragment or (parts.query and prefix_ok):
        raise ConfigError(f"{name} entries must not carry a query or fragment: {url[:80]!r}")
