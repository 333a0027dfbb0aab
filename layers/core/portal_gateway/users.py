"""Is the caller still a user of the pool? Token verification is local, so a disabled or deleted user's token
keeps verifying until it expires (up to a day). With CHECK_USER_STATUS on, the user is confirmed with Cognito
(AdminGetUser) at most once a minute per user per execution environment; the same answer serves the profile
of an access token, which carries no email."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from .auth import Identity
from .aws import CognitoUser
from .errors import InvalidToken

USER_STATUS_MAX_AGE_SECONDS = 60


class UserDirectory(Protocol):
    def lookup(self, identity: Identity) -> CognitoUser: ...


class UserLookups:
    def __init__(self, directory: UserDirectory, *, max_age: float = USER_STATUS_MAX_AGE_SECONDS,
                 capacity: int = 4096, clock: Callable[[], float] = time.monotonic):
        self.directory = directory
        self.max_age = max_age
        self.capacity = capacity
        self._clock = clock
        self._seen: OrderedDict[str, tuple[float, CognitoUser]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, identity: Identity) -> CognitoUser:
        """The user as Cognito last said, asked again when that answer is older than `max_age`."""
        key = f"{identity.user_pool_id}#{identity.sub}"
        now = self._clock()
        with self._lock:
            found = self._seen.get(key)
            if found and now - found[0] < self.max_age:
                self._seen.move_to_end(key)
                return found[1]
        user = self.directory.lookup(identity)  # InvalidToken("user_not_found") for a deleted user
        with self._lock:
            self._seen[key] = (now, user)
            self._seen.move_to_end(key)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        return user

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()

    def confirm_active(self, identity: Identity) -> CognitoUser:
        user = self.get(identity)
        if not user.enabled:
            raise InvalidToken("user_disabled")
        return user
