"""Secrets Manager adapter: one secret's string (the Stripe key, the OAuth secret), AWS failures turned into the
service's own errors; never a raw AWS message, never the value in an error."""

from __future__ import annotations

from portal_gateway.aws.client import SECRETS_MANAGER, AwsError, AwsJsonClient, AwsUnreachable
from portal_gateway.billing.stripe_key import SecretUnreadable
from portal_gateway.errors import GatewayError, StripeKeyUnavailable


class SecretsManagerReader:
    """Reads one secret's string. `unavailable` is the error raised for a missing or unusable secret, `label`
    names it in log lines (the Stripe key secret, or the OAuth secret)."""

    def __init__(self, client: AwsJsonClient | None = None, *,
                 unavailable: type[GatewayError] = StripeKeyUnavailable,
                 transient: type[GatewayError] = SecretUnreadable,
                 label: str = "the Stripe secret", variable: str = "STRIPE_SECRET_ID"):
        # `transient` is raised when Secrets Manager cannot be reached: for the Stripe key, SecretUnreadable
        # lets the key provider keep serving its last good key.
        self._client = client or AwsJsonClient(SECRETS_MANAGER)  # the function's own region
        self._unavailable, self._transient = unavailable, transient
        self._label, self._variable = label, variable

    def __call__(self, secret_id: str) -> str:
        try:
            # AWSCURRENT named, not implied: the same answer from AWS, and moto too answers it right after a
            # rotation moved the stage (its plain read may still return the previous value).
            response = self._client.call("GetSecretValue", {"SecretId": secret_id, "VersionStage": "AWSCURRENT"})
        except AwsUnreachable as exc:
            raise self._transient(log_detail=f"Secrets Manager unreachable: {exc.code}") from None
        except AwsError as exc:
            code = exc.code
            if code == "ResourceNotFoundException":
                # Also what a stack-created secret with no value yet answers.
                raise self._unavailable(
                    log_detail=f"{self._label} does not exist or has no value yet ({self._variable})"
                ) from None
            if code in ("AccessDeniedException", "AccessDenied"):
                raise self._unavailable(log_detail=f"not allowed to read {self._label} (IAM policy)") from None
            raise self._transient(log_detail=f"Secrets Manager error {code}") from None
        if "SecretString" not in response:
            raise self._unavailable(log_detail=f"{self._label} is binary; store it as a string")
        return response["SecretString"]
