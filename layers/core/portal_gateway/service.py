"""The one core function the handler calls: a verified token in, a fresh portal session URL out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from portal_gateway.aws.client import forget_credentials
from portal_gateway.aws.mapping_store import CustomerMappingStore
from portal_gateway.aws.projection_store import ProjectionStore, StoredProjection
from portal_gateway.aws.secrets import SecretsManagerReader
from portal_gateway.aws.user_directory import CognitoUserDirectory, Profile, profile_from_identity
from portal_gateway.billing.customers import CustomerResolver, Resolution
from portal_gateway.billing.purchases import (
    CheckoutOptions,
    PriceCatalog,
    PurchaseReferences,
    checkout_idempotency_key,
)
from portal_gateway.billing.status_projection import answer, empty_answer, refresh
from portal_gateway.billing.stripe_adapter import StripeBilling
from portal_gateway.billing.stripe_key import StripeKeyProvider
from portal_gateway.config import ConfigError, Settings
from portal_gateway.errors import (
    CustomerMissing,
    IdentityUnavailable,
    PortalConfigurationInvalid,
    PriceUnavailable,
    StripeAccountMismatch,
    StripeKeyPermissions,
    StripeKeyUnavailable,
    StripeUnavailable,
)
from portal_gateway.http_pool import POOL
from portal_gateway.identity.tokens import CognitoJwtVerifier, Identity, JwksCache
from portal_gateway.identity.user_status import UserLookups
from portal_gateway.web.request_policy import (
    SUBSCRIPTION_FLOWS,
    FormOriginPolicy,
    ReturnUrlPolicy,
    choose_flow,
    choose_locale,
    flow_data,
)

if TYPE_CHECKING:
    from portal_gateway.web.sign_in import HostedUiLogin

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class PortalOptions:
    return_to: str | None = None
    locale: str | None = None
    accept_language: str | None = None
    flow: str | None = None


class PortalService:
    def __init__(
        self,
        *,
        settings: Settings,
        verifier: CognitoJwtVerifier,
        resolver: CustomerResolver,
        billing: StripeBilling,
        users: UserLookups,
        projections: ProjectionStore,
        count: Callable[[str], None] = lambda name: None,
        on_identity: Callable[[Identity], None] = lambda identity: None,
        login: HostedUiLogin | None = None,
        catalog: PriceCatalog | None = None,
        references: PurchaseReferences | None = None,
    ):
        self.catalog = catalog or PriceCatalog(settings.checkout_prices, billing.prices_by_lookup_key)
        self.references = references or PurchaseReferences(resolver.store.reference_key, settings.stripe_mode)
        self.settings = settings
        self.login = login  # None unless COGNITO_DOMAIN is configured
        self.verifier = verifier
        self.resolver = resolver
        self.billing = billing
        self.users = users
        self.projections = projections
        self.return_policy = ReturnUrlPolicy(settings.return_url, settings.allowed_return_urls)
        self.form_origins = FormOriginPolicy((settings.return_url, *settings.allowed_return_urls,
                                              *settings.allowed_origins))
        self._count = count
        self._on_identity = on_identity

    def forget_state(self) -> None:
        """Forget everything learned since start-up: the Stripe key, the OAuth secret, the purchase reference key
        and AWS credentials (never in a snapshot), the customer, user and price caches, the open connections. The
        JWKS (public keys) is kept. Used by the SnapStart hooks, before the snapshot and after each restore."""
        self.billing.forget_key()
        if self.login is not None:
            self.login.forget_secrets()
        self.resolver.clear()
        self.users.clear()
        self.references.clear()  # a signing key: never in a snapshot
        self.catalog.clear()
        forget_credentials()  # AWS credentials resolved at init (the rehearsal signs its requests)
        POOL.clear()

    def warm_up(self, *, with_secrets: bool) -> dict[str, bool]:
        """At init, where on-demand Lambda runs at full CPU: fetch what the first request needs (the JWKS, and
        the Stripe key unless a snapshot is about to be taken). Never raises; what failed is fetched again by
        the first request."""
        warmed = {"jwks": self.verifier.jwks.prefetch()}
        if with_secrets:
            warmed["stripe_key"] = self.billing.warm_key()
            warmed["purchase_reference_key"] = self.references.warm()
            # The first request's own hosts, connected (TLS included) now rather than on its clock. Not before a
            # snapshot: connections do not survive a restore.
            for name, url in (("stripe", self.billing.api_base), ("customers_table", self.resolver.store.endpoint()),
                              ("user_directory", self.users.endpoint())):
                warmed[f"connect_{name}"] = bool(url and POOL.preconnect(url))
        return warmed

    def setup_missing(self) -> tuple[str, ...]:
        """Deploy steps not done yet, by name (for /health): the Stripe key not put in."""
        return ("stripe_key",) if self.billing.key_missing() else ()

    def check_options(self, options: PortalOptions) -> None:
        """Refuse bad options before anything else happens (also before a sign-in round trip)."""
        self.return_policy.choose(options.return_to)
        choose_locale(options.locale, options.accept_language)
        choose_flow(options.flow)

    def _caller(self, token: str, *, nonce: str | None = None) -> Identity:
        """The verified caller: a valid token of the pool's clients, of a user still enabled."""
        identity = self.verifier.verify(token, nonce=nonce)
        self._on_identity(identity)
        if self.settings.check_user_status:
            self.users.confirm_active(identity)  # a disabled or deleted user is refused (401) before anything
        return identity

    def _profile_loader(self, identity: Identity) -> Callable[[], Profile]:
        def load_profile() -> Profile:
            # Only needed on a first visit. An access token carries no email: Cognito's answer has it (the one the
            # status check just got, when it is on). An ID token's address may have changed since it was issued:
            # an email match is confirmed with Cognito anyway (the address must be this user's, and only theirs).
            return profile_from_identity(identity) if identity.token_use == "id" else self.users.get(identity).profile

        return load_profile

    def billing_status(self, token: str) -> dict[str, Any]:
        """What the caller has: their subscriptions and active entitlements, from the projection the webhooks
        keep (one DynamoDB read). A caller without a customer gets the empty answer; none is ever created here.
        A customer with no projection yet (a deploy onto an existing account, a missed event) is read from
        Stripe once and the result stored."""
        identity = self._caller(token)
        load_profile = self._profile_loader(identity)
        found = self.resolver.find(identity, load_profile)
        if found is None:
            return {**empty_answer(), "client_reference_id": self.purchase_reference(identity)}
        stored = self._stored_status(found.customer_id)
        if stored.projection is None:  # deleted in Stripe
            self.resolver.forget(identity)  # its mapping goes with the customer; the next visit resolves again
            return {**empty_answer(), "client_reference_id": self.purchase_reference(identity)}
        if not stored.projection["subscriptions"]:
            # Nothing live on this customer: a purchase may have been bound to the user since (under another
            # customer), or they paid through a Payment Link that named no one. Looking is a bonus: while Stripe
            # or Cognito fail, the stored answer is served as it is.
            try:
                moved = self.resolver.recheck(identity, load_profile, current=found.customer_id)
                if moved is not None:
                    stored = self._stored_status(moved.customer_id)
            except (StripeUnavailable, StripeKeyUnavailable, IdentityUnavailable) as exc:
                logger.warning("Looking for a paying customer failed; serving the stored status",
                               extra={"error_code": exc.code, "detail": exc.log_detail})
                self._count("StatusRecheckFailed")
        return {**answer(stored.projection), "client_reference_id": self.purchase_reference(identity)}

    def purchase_reference(self, identity: Identity) -> str:
        """What a Payment Link URL carries as client_reference_id so the purchase is bound to this user."""
        return self.references.for_user(identity.user_pool_id, identity.sub)

    def _stored_status(self, customer_id: str) -> StoredProjection:
        return self.projections.get(customer_id) or self._fill_projection(customer_id)

    def _fill_projection(self, customer_id: str) -> StoredProjection:
        stored, _ = refresh(self.projections, customer_id, self.billing.billing_state)  # a webhook's later read wins
        self._count("StatusProjectionFilled")
        logger.info("Billing status read from Stripe and stored (no projection yet)",
                    extra={"customer_id": customer_id})
        return stored

    def open_portal(self, token: str, options: PortalOptions, *, nonce: str | None = None) -> str:
        self.billing.prefetch_key()  # cold start: overlap the Secrets Manager read with the checks below
        identity = self._caller(token, nonce=nonce)
        return_url = self.return_policy.choose(options.return_to)
        locale = choose_locale(options.locale, options.accept_language)
        flow = choose_flow(options.flow)
        load_profile = self._profile_loader(identity)

        url, resolution = self._with_own_customer(
            identity, load_profile, lambda customer_id: self._session(customer_id, return_url, locale, flow))
        logger.info("Portal session created", extra={"customer_source": resolution.source,
                                                      "customer_id": resolution.customer_id})
        self._count("PortalSessionCreated")
        return url

    def check_checkout_options(self, options: CheckoutOptions) -> str:
        """Refuse a plan the operator does not offer, or a bad return address, before anything else (also before
        a sign-in round trip); the offered lookup key."""
        lookup_key = self.catalog.check_offered(options.price)
        self.return_policy.choose(options.return_to)
        self.return_policy.choose(options.cancel_to)
        choose_locale(options.locale, options.accept_language)
        return lookup_key

    def start_checkout(self, token: str, options: CheckoutOptions, *, nonce: str | None = None) -> tuple[str, str]:
        """Subscribe the caller to an offered price: (URL, "checkout") for a Stripe Checkout Session for the
        caller's own customer (the one /portal opens), or (URL, "portal") when they already have a live
        subscription and the operator allows only one: the portal, to change that plan instead."""
        self.billing.prefetch_key()
        lookup_key = self.check_checkout_options(options)
        identity = self._caller(token, nonce=nonce)
        success_url = self.return_policy.choose(options.return_to)
        cancel_url = self.return_policy.choose(options.cancel_to or options.return_to)
        locale = choose_locale(options.locale, options.accept_language)
        (url, kind), resolution = self._with_own_customer(
            identity, self._profile_loader(identity),
            lambda customer_id: self._checkout_for(identity, customer_id, lookup_key, success_url, cancel_url,
                                                   locale))
        logger.info("Checkout answered", extra={"answer": kind, "customer_id": resolution.customer_id,
                                                "customer_source": resolution.source, "price": lookup_key})
        self._count("CheckoutSessionCreated" if kind == "checkout" else "CheckoutSentToPortal")
        return url, kind

    def _checkout_for(self, identity: Identity, customer_id: str, lookup_key: str, success_url: str,
                      cancel_url: str, locale: str) -> tuple[str, str]:
        one_only = not self.settings.allow_multiple_subscriptions
        metadata = {"cognito_sub": identity.sub, "cognito_user_pool": identity.user_pool_id}
        try:
            price_id = self.catalog.price_id(lookup_key)
            # One Stripe call: the session, and (expanded in its answer) the customer's subscriptions, so a
            # subscriber is told apart without asking Stripe first.
            created = self.billing.create_checkout_session(
                customer_id=customer_id, price_id=price_id, success_url=success_url, cancel_url=cancel_url,
                client_reference_id=self.purchase_reference(identity), metadata=metadata,
                with_live_subscriptions=one_only,
                idempotency_key=checkout_idempotency_key(
                    mode=self.settings.stripe_mode, user_pool_id=identity.user_pool_id, sub=identity.sub,
                    customer_id=customer_id, price_id=price_id, success_url=success_url, cancel_url=cancel_url,
                    now=time.time()))
        except PriceUnavailable:
            self.catalog.forget()  # archived since it was looked up: look again next time
            self._count("PriceUnavailable")
            raise
        if one_only:
            live = created.live_subscriptions
            if live is None:  # more than a page of subscriptions: every page, asked
                live = self.billing.active_subscriptions(customer_id)
            if live:
                # Already subscribed: a second subscription would charge twice. The portal's plan change instead
                # (the session just made is never shown, and expires unused).
                one = live[0] if len(live) == 1 else None
                flow = "subscription_update" if one else None
                return self.billing.create_portal_session(
                    customer_id=customer_id, return_url=success_url, locale=locale,
                    configuration=self.settings.portal_configuration_id,
                    flow_data=flow_data(flow, return_url=success_url, subscription_id=one)), "portal"
        return created.url, "checkout"

    def customer_session(self, token: str) -> dict[str, Any]:
        """A Stripe Customer Session for the caller's own customer (the one /portal opens, created when allowed),
        so a page's <stripe-pricing-table> or <stripe-buy-button> buys for them; with their purchase reference."""
        self.billing.prefetch_key()
        identity = self._caller(token)
        created, _ = self._with_own_customer(identity, self._profile_loader(identity),
                                             self.billing.create_customer_session)
        self._count("CustomerSessionCreated")
        return {**created, "client_reference_id": self.purchase_reference(identity)}

    def _with_own_customer(self, identity: Identity, load_profile: Callable[[], Profile],
                           act: Callable[[str], T]) -> tuple[T, Resolution]:
        """`act` on the caller's own customer (resolved as every route resolves it). A customer Stripe reports
        deleted is replaced once and `act` tried again on the new one; any other missing customer is refused
        (`_confirm_deleted`)."""
        resolution = self.resolver.resolve(identity, load_profile)
        try:
            return act(resolution.customer_id), resolution
        except CustomerMissing:
            self._confirm_deleted(resolution.customer_id)
        resolution = self.resolver.resolve(identity, load_profile, stale_customer_id=resolution.customer_id)
        try:
            return act(resolution.customer_id), resolution
        except CustomerMissing:
            raise StripeUnavailable(log_detail="customer missing again right after re-resolving") from None

    def _confirm_deleted(self, customer_id: str) -> None:
        """Stripe refused the mapped customer. Only a customer Stripe reports *deleted* is replaced. One that
        does not exist at all for this key belongs to another Stripe account (a wrong key in the secret):
        replacing it would create customers in that account and lose the mapping to the paid ones, so the
        request fails (503), the mapping stays, and the operator is alerted."""
        try:
            deleted = self.billing.customer_deleted(customer_id)
        except CustomerMissing:
            self._count("StripeAccountMismatch")
            raise StripeAccountMismatch(
                log_detail="the mapped Stripe customer does not exist for the current key: the secret most likely "
                           "holds another Stripe account's key; the mapping is left unchanged",
            ) from None
        if not deleted:
            raise StripeUnavailable(log_detail="Stripe refused a session for a customer that exists") from None
        logger.warning("Mapped Stripe customer was deleted in Stripe; resolving again",
                       extra={"customer_id": customer_id})

    def _session(self, customer_id: str, return_url: str, locale: str, flow: str | None) -> str:
        subscription_id = None
        if flow in SUBSCRIPTION_FLOWS:
            # Chosen server-side among THIS customer's subscriptions; never taken from the request.
            try:
                subscriptions = self.billing.active_subscriptions(customer_id)
            except StripeKeyPermissions:
                logger.warning("The Stripe key may not read subscriptions; opening the portal home",
                               extra={"flow": flow})
                subscriptions = []
            if len(subscriptions) == 1:
                subscription_id = subscriptions[0]
            else:
                logger.info("Deep link needs exactly one active subscription; opening the portal home",
                            extra={"flow": flow, "active_subscriptions": len(subscriptions)})
        try:
            return self.billing.create_portal_session(
                customer_id=customer_id,
                return_url=return_url,
                locale=locale,
                configuration=self.settings.portal_configuration_id,
                flow_data=flow_data(flow, return_url=return_url, subscription_id=subscription_id),
            )
        except PortalConfigurationInvalid:
            self._count("PortalConfigurationInvalid")  # alarmed: every user is refused until the operator acts
            raise


def _kept_last_good_key(problem: Exception, count: Callable[..., None]) -> None:
    logger.error("The Stripe secret has no usable key now; still using the last good key",
                 extra={"detail": getattr(problem, "log_detail", None), "error_code": getattr(problem, "code", None)})
    count("StripeSecretUnusable")


def build_service(
    settings: Settings,
    *,
    count: Callable[..., None] = lambda name, **dimensions: None,
    on_identity: Callable[[Identity], None] = lambda identity: None,
) -> PortalService:
    """Wire the real adapters. Called once per execution environment; clients are created on first use."""
    keys = StripeKeyProvider(
        settings.stripe_secret_id,
        expected_mode=settings.stripe_mode,
        ttl_seconds=settings.stripe_key_ttl_seconds,
        read_secret=SecretsManagerReader(),
        on_kept_last_good=lambda problem: _kept_last_good_key(problem, count),
    )
    billing = StripeBilling(
        keys,
        api_base=settings.stripe_api_base,
        timeout_seconds=settings.stripe_timeout_seconds,
        max_network_retries=settings.stripe_max_network_retries,
        on_key_refresh=lambda: count("StripeKeyRefreshed"),
        on_error=lambda error_type: count("StripeErrors", type=error_type),
    )
    verifier = CognitoJwtVerifier(
        issuer=settings.issuer,
        user_pool_id=settings.user_pool_id,
        client_ids=settings.client_ids,
        jwks=JwksCache(settings.jwks_url, timeout=settings.jwks_timeout_seconds),
        leeway_seconds=settings.jwt_leeway_seconds,
    )
    directory = CognitoUserDirectory(settings.user_pool_id, settings.region)  # the pool's region
    users = UserLookups(directory)
    resolver = CustomerResolver(
        store=CustomerMappingStore(settings.customers_table, stripe_mode=settings.stripe_mode),
        billing=billing,
        stripe_mode=settings.stripe_mode,
        allow_creation=settings.allow_customer_creation,
        match_by_email=settings.match_existing_by_email,
        count=count,
        holders_of_email=directory.subs_with_verified_email,
        current_profile=lambda identity: users.get(identity).profile,
    )
    login = None
    if settings.cognito_domain:
        from portal_gateway.web.sign_in import (  # only when plain-link sign-in is configured
            HostedUiLogin,
            OAuthSecretUnavailable,
        )

        client_id, secret_id = settings.oauth_client_id, settings.oauth_secret_id
        if client_id is None or secret_id is None:  # from_env sets both with the domain; a hand-built one may not
            raise ConfigError("COGNITO_DOMAIN needs OAUTH_CLIENT_ID (or COGNITO_CLIENT_IDS) and OAUTH_SECRET_ID")
        oauth_secret = SecretsManagerReader(unavailable=OAuthSecretUnavailable, transient=OAuthSecretUnavailable,
                                            label="the OAuth secret", variable="OAUTH_SECRET_ID")
        login = HostedUiLogin(domain=settings.cognito_domain, client_id=client_id,
                              callback_url=settings.callback_url, always_ask=settings.always_ask_to_sign_in,
                              read_secret=lambda: oauth_secret(secret_id))
    return PortalService(
        login=login,
        settings=settings,
        verifier=verifier,
        resolver=resolver,
        billing=billing,
        users=users,
        projections=ProjectionStore(settings.customers_table, stripe_mode=settings.stripe_mode),
        count=count,
        on_identity=on_identity,
    )
