"""Is the caller still a user of the pool? Token verification is local, so a disabled or deleted user's token
keeps verifying until it expires (up to a day). With CHECK_USER_STATUS on, the user is confirmed with Cognito
(AdminGetUser) at most once a minute per user per execution environment, and not at all while the token itself
is less than a minute old; the same answer serves the profile of an access token, which carries no email."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from portal_gateway.aws.user_directory import CognitoUser
from portal_gateway.caching import BoundedCache
from portal_gateway.errors import InvalidToken
from portal_gateway.identity.tokens import Identity

USER_STATUS_MAX_AGE_SECONDS = 60


class UserDirectory(Protocol):
    def lookup(self, identity: Identity) -> CognitoUser: ...
    def endpoint(self) -> str | None: ...


class UserLookups:
    def __init__(self, directory: UserDirectory, *, max_age: float = USER_STATUS_MAX_AGE_SECONDS,
                 capacity: int = 4096, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time):
        self.directory = directory
        self.max_age = max_age
        self._wall_clock = wall_clock  # tokens' "iat" is Unix time
        self.cache = BoundedCache(capacity, ttl_seconds=max_age, clock=clock)

    def endpoint(self) -> str | None:
        return self.directory.endpoint()

    def get(self, identity: Identity) -> CognitoUser:
        """The user as Cognito last said, asked again when that answer is older than `max_age`."""
        key = f"{identity.user_pool_id}#{identity.sub}"
        user = self.cache.get(key)
        if user is None:
            user = self.directory.lookup(identity)  # InvalidToken("user_not_found") for a deleted user
            self.cache.put(key, user)
        return user

    def clear(self) -> None:
        self.cache.clear()

    def confirm_active(self, identity: Identity) -> None:
        """Refuse a user Cognito says is disabled or deleted. A token Cognito issued less than `max_age` ago needs
        no asking: Cognito issues (and refreshes) tokens only for enabled users, so it vouched for this one as
        recently as a cached answer would. That is every plain link's sign-in, which arrives with a token
        seconds old, and it spares the first request after a cold start one call."""
        if identity.issued_at is not None and 0 <= self._wall_clock() - identity.issued_at < self.max_age:
            return
        if not self.get(identity).enabled:
            raise InvalidToken("user_disabled")
