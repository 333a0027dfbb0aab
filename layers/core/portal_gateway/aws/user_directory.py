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
        attributes = _attributes(response.get("UserAttributes", []))
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

    def only_user_with_verified_email(self, email: str) -> str | None:
        """The sub of the one user holding this address verified; None when none or several do."""
        subs = self.subs_with_verified_email(email)
        return next(iter(subs)) if len(subs) == 1 else None

    def subs_with_verified_email(self, email: str, *, enough: int = 2) -> set[str]:
        """The subs of users holding this address verified, up to `enough` of them (ListUsers, filtered on the
        address as given and in lower case; Cognito's filter is exact)."""
        subs: set[str] = set()
        for value in dict.fromkeys([email, email.lower()]):
            quoted = value.replace("\\", "\\\\").replace('"', '\\"')
            token = None
            for _ in range(5):  # ListUsers pages hold at most 60 users; unverified holders may come first
                request = {"UserPoolId": self.user_pool_id, "Filter": f'email = "{quoted}"', "Limit": 60}
                if token:
                    request["PaginationToken"] = token
                try:
                    response = self._client.call("ListUsers", request)
                except AwsError as exc:
                    raise IdentityUnavailable(log_detail=f"Cognito ListUsers failed: {exc.code}") from None
                for user in response.get("Users", []):
                    attributes = _attributes(user.get("Attributes", []))
                    if is_verified_flag(attributes.get("email_verified")) and attributes.get("sub"):
                        subs.add(attributes["sub"])
                token = response.get("PaginationToken")
                if len(subs) >= enough or not token:
                    break
            if len(subs) >= enough:
                break
        return subs


def _attributes(listed: list) -> dict:
    return {a["Name"]: a.get("Value") for a in listed if isinstance(a, dict) and "Name" in a}
