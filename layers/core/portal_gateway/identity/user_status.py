"""Is the caller still a user of the pool? Token verification is local, so a disabled or deleted user's token
keeps verifying until it expires (up to a day). With CHECK_USER_STATUS on, the user is confirmed with Cognito
(AdminGetUser) at most once a minute per user per execution environment; the same answer serves the profile
of an access token, which carries no email."""

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
                 capacity: int = 4096, clock: Callable[[], float] = time.monotonic):
        self.directory = directory
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

    def confirm_active(self, identity: Identity) -> CognitoUser:
        user = self.get(identity)
        if not user.enabled:
            raise InvalidToken("user_disabled")
        return user
