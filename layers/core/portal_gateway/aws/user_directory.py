"""Cognito adapter: who a user is now (AdminGetUser, with the function's IAM role, scoped to the one pool)."""

from __future__ import annotations

from dataclasses import dataclass

from portal_gateway.aws.client import COGNITO_USER_POOLS, AwsError, AwsJsonClient, AwsUnreachable
from portal_gateway.errors import IdentityUnavailable, InvalidToken
from portal_gateway.identity.tokens import Identity, is_verified_flag


@dataclass(frozen=True)
class Profile:
    email: str | None
    email_verified: bool
    name: str | None


def profile_from_identity(identity: Identity) -> Profile:
    return Profile(identity.email, identity.email_verified, identity.name)


@dataclass(frozen=True)
class CognitoUser:
    """What AdminGetUser says of a user: whether they may sign in, and their profile."""

    enabled: bool
    status: str
    profile: Profile


class CognitoUserDirectory:
    """Looks a user up with AdminGetUser (signed with the function's IAM role, scoped to the one pool).

    Not GetUser with the caller's access token: real Cognito answers GetUser only for tokens with the
    `aws.cognito.signin.user.admin` scope, which Hosted UI tokens with `openid email` do not carry. AdminGetUser
    works for every valid token, and also tells whether the user is still enabled."""

    def __init__(self, user_pool_id: str, region: str, client: AwsJsonClient | None = None):
        self.user_pool_id = user_pool_id
        self._client = client or AwsJsonClient(COGNITO_USER_POOLS, region)  # the pool's region

    def endpoint(self) -> str | None:
        return self._client.endpoint()

    def lookup(self, identity: Identity) -> CognitoUser:
        # The username claim; a local user's sub is accepted as its username too (AdminGetUser's rule).
        username = identity.username or identity.sub
        try:
            response = self._client.call("AdminGetUser", {"UserPoolId": self.user_pool_id, "Username": username})
        except AwsUnreachable as exc:
            raise IdentityUnavailable(log_detail=f"Cognito AdminGetUser failed: {exc.code}") from None
        except AwsError as exc:
            if exc.code == "UserNotFoundException":
                raise InvalidToken("user_not_found") from None
            raise IdentityUnavailable(log_detail=f"Cognito AdminGetUser failed: {exc.code}") from None
        attributes = {a["Name"]: a.get("Value") for a in response.get("UserAttributes", [])}
        if attributes.get("sub") and attributes["sub"] != identity.sub:
            # A username now names another user (deleted and signed up again): this token's user is gone.
            raise InvalidToken("user_not_found")
        return CognitoUser(
            enabled=response.get("Enabled", True) is not False,
            status=str(response.get("UserStatus", "")),
            profile=Profile(
                email=attributes.get("email") or None,
                email_verified=is_verified_flag(attributes.get("email_verified")),
                name=attributes.get("name") or None,
            ),
        )
