"""The small, typed error tree of the service.

Every error carries a stable machine-readable `code` and a short message safe to show a user. Which HTTP
status each code gets is decided in one place: `responses.STATUS_BY_CODE`.
"""

from __future__ import annotations


class GatewayError(Exception):
    code = "internal_error"
    message = "Something went wrong on our side. Please try again in a moment."
    title = "Billing is not available"  # the heading of the HTML error page: what happened, in a few words
    # An operator must act (not a moment's wait): the page says the owner was notified, but only when an alarm
    # topic is configured (ALARMS_NOTIFY); otherwise it says nothing it cannot keep.
    needs_operator = False

    def __init__(self, message: str | None = None, *, log_detail: str | None = None):
        super().__init__(message or self.message)
        if message:
            self.message = message
        # For the operator's log only: never shown to the caller, never contains secrets or emails.
        self.log_detail = log_detail


# --- request problems (4xx) ---
class BadRequest(GatewayError):
    code = "invalid_request"
    message = "The request could not be understood."


class TokenInQueryString(BadRequest):
    code = "token_in_query_string"
    message = "Tokens are not accepted in the URL. Send them in the Authorization header or a form post."


class ReturnUrlNotAllowed(BadRequest):
    code = "return_url_not_allowed"
    message = "The return address is not on this site's allowlist."
    title = "This return address is not allowed"


class PriceNotOffered(BadRequest):
    code = "price_not_offered"
    message = "This plan is not offered here."
    title = "This plan is not offered"


class CheckoutNotOffered(GatewayError):
    code = "checkout_not_offered"
    message = "Subscribing is not offered here."
    title = "Subscribing is not offered"


class PriceUnavailable(GatewayError):
    """An offered price is missing, archived or not recurring in Stripe: the operator must fix the catalog."""

    code = "price_unavailable"
    message = "This plan cannot be bought right now. Please try again later."
    title = "This plan is not available"
    needs_operator = True


class CrossSiteForm(GatewayError):
    """A form post sent by a page of another site (login CSRF: it would sign the browser in as the sender's user,
    whose portal or checkout the victim might then put their card into)."""

    code = "cross_site_form"
    message = "This form was sent from another site. Please use the billing link on the site itself."
    title = "This form came from another site"


class PayloadTooLarge(GatewayError):
    code = "payload_too_large"
    message = "The request body is too large."


class UnsupportedMediaType(GatewayError):
    code = "unsupported_media_type"
    message = "Send the form as application/x-www-form-urlencoded."


class NoBillingAccount(GatewayError):
    code = "no_billing_account"
    message = "There is no billing account for your user yet. Please contact support if you expected one."
    title = "No billing account yet"


# --- authentication ---
class AuthenticationRequired(GatewayError):
    code = "authentication_required"
    message = "Please sign in to manage your billing."
    title = "Please sign in"


class InvalidToken(GatewayError):
    """Token rejected. `reason` is a short stable tag for logs and metrics (never the token)."""

    code = "invalid_token"
    message = "Your sign-in is not valid or has expired. Please sign in again."
    title = "Your sign-in has expired"

    def __init__(self, reason: str, log_detail: str | None = None):
        super().__init__(log_detail=log_detail or reason)
        self.reason = reason


class AuthUnavailable(GatewayError):
    code = "auth_unavailable"
    message = "Sign-in cannot be checked right now. Please try again in a moment."


# --- dependencies and configuration (5xx) ---
class StripeKeyUnavailable(GatewayError):
    code = "stripe_key_unavailable"
    message = "Billing is temporarily unavailable. Please try again later."
    needs_operator = True


class StripeModeMismatch(StripeKeyUnavailable):
    code = "stripe_mode_mismatch"


class StripeKeyRejected(StripeKeyUnavailable):
    code = "stripe_key_rejected"


class PortalNotConfigured(GatewayError):
    code = "portal_not_configured"
    message = (
        "The billing portal is not set up yet. The site owner must save the customer portal settings "
        "in the Stripe Dashboard (Settings > Billing > Customer portal)."
    )
    needs_operator = True


class StripeUnavailable(GatewayError):
    code = "billing_provider_error"
    message = "The billing provider did not answer as expected. Please try again in a moment."

    def __init__(self, message: str | None = None, *, log_detail: str | None = None, http_status: int | None = None):
        super().__init__(message, log_detail=log_detail)
        self.http_status = http_status  # Stripe's, when it answered


class StripeTimeout(StripeUnavailable):
    """Stripe did not answer within what was left of the request's time budget."""

    code = "billing_provider_timeout"
    message = "The billing provider is taking too long to answer. Please try again in a moment."


class PortalConfigurationInvalid(GatewayError):
    """PORTAL_CONFIGURATION_ID names a configuration Stripe refuses (unknown to the key's account, or inactive)."""

    code = "portal_configuration_invalid"
    message = "Billing is temporarily unavailable. The billing portal is not set up correctly for this site."
    needs_operator = True


class MappingStoreUnavailable(GatewayError):
    code = "customer_store_unavailable"
    message = "Billing is temporarily unavailable. Please try again in a moment."


class IdentityUnavailable(GatewayError):
    code = "identity_unavailable"
    message = "Your profile could not be read right now. Please try again in a moment."


class StripeKeyPermissions(StripeKeyUnavailable):
    code = "stripe_key_missing_permission"


class StripeAccountMismatch(StripeKeyUnavailable):
    """A mapped customer does not exist for the current key (Stripe: resource_missing, not deleted): the key
    is most likely another Stripe account's. The mapping is left as it is; the operator must fix the key."""

    code = "stripe_account_mismatch"


class CustomerMissing(GatewayError):
    """Stripe says the mapped customer is gone (deleted or never existed): re-resolve, never a 500."""

    code = StripeUnavailable.code  # if it ever escapes the re-resolution, the caller sees a 502
    message = StripeUnavailable.message


NOTIFIED = "The site owner has been notified."


def user_message(error: GatewayError, *, owner_alerted: bool) -> str:
    """The message shown to the caller: "notified" only when an alarm topic really notifies someone."""
    if error.needs_operator and owner_alerted:
        return f"{error.message} {NOTIFIED}"
    return error.message


# --- the webhook function (answers go to Stripe, which retries anything but a 2xx) ---
class WebhookSignatureInvalid(GatewayError):
    code = "webhook_signature_invalid"
    message = "The Stripe-Signature header does not match this endpoint's signing secret."


class WebhookPayloadInvalid(BadRequest):
    code = "webhook_payload_invalid"
    message = "The event could not be read."


class WebhookNotConfigured(GatewayError):
    code = "webhook_not_configured"
    message = "This endpoint has no signing secret yet (stripe-portal-admin webhooks setup)."
    needs_operator = True
