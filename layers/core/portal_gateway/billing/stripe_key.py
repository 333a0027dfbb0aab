"""The Stripe API key, read from Secrets Manager and kept in memory for a short TTL.

The secret holds either the bare key or JSON {"api_key": "..."}. The key's mode must match STRIPE_MODE.
A forced refresh (after Stripe rejects the key) picks up a rotated key at once. If Secrets Manager is down
when the TTL runs out, or the secret now holds something that is not a usable key (a typo, the wrong mode),
the last good key keeps serving (last-good) rather than failing every request; only Stripe rejecting that
key ends its use.
On a cold start the read can begin in the background (prefetch) while the token and the mapping are checked.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from portal_gateway.errors import StripeKeyUnavailable, StripeModeMismatch
from portal_gateway.http_pool import carried_to_thread

PLACEHOLDER = "REPLACE_WITH_STRIPE_KEY"  # what template.yaml puts in a secret it creates
# A prefetch failure this recent is the request's own answer; an older one (whose request was refused) is not.
PREFETCH_FAILURE_REUSE_SECONDS = 5
KEY_PATTERN = re.compile(r"^(?P<kind>sk|rk)_(?P<mode>test|live)_[0-9A-Za-z]{8,247}$")


class SecretUnreadable(StripeKeyUnavailable):
    """Secrets Manager could not be reached or refused; distinct from a secret with a bad value."""


def parse_stripe_key(raw: object) -> str:
    """Extract and check the key from a secret value. Errors never include the value itself."""
    if not isinstance(raw, str) or not raw.strip():
        raise StripeKeyUnavailable(log_detail="the Stripe secret is empty; put the key in it (docs/deploy.md, step 4)")
    value = raw.strip()
    if value.startswith("{"):
        try:
            value = json.loads(value)["api_key"]
        except (ValueError, KeyError, TypeError):
            raise StripeKeyUnavailable(
                log_detail="the Stripe secret is JSON but has no string field 'api_key'"
            ) from None
        if not isinstance(value, str):
            raise StripeKeyUnavailable(log_detail="the Stripe secret's 'api_key' field is not a string")
        value = value.strip()
    if value == PLACEHOLDER:
        raise StripeKeyUnavailable(
            log_detail="the Stripe secret still holds the placeholder the stack created; put the key in it"
        )
    if not KEY_PATTERN.fullmatch(value):
        raise StripeKeyUnavailable(log_detail=f"the Stripe secret holds {describe_key_problem(value)}")
    return value


def describe_key_problem(value: str) -> str:
    """What is wrong with a value that is not a usable Stripe key, without repeating the value."""
    prefix = re.match(r"^(?P<kind>[a-z]+)_(?:(?P<mode>test|live)_)?", value)
    kind = prefix.group("kind") if prefix else ""
    if kind == "pk":
        return "a publishable key (pk_): use a secret (sk_) or restricted (rk_) key"
    if kind == "whsec":
        return "a webhook signing secret (whsec_), not an API key"
    if prefix is None or kind not in ("sk", "rk") or not prefix.group("mode"):
        return "no Stripe API key: it must start with sk_test_, sk_live_, rk_test_ or rk_live_"
    body = value[prefix.end():]
    label = f"a {prefix.group('mode')}-mode {'secret' if kind == 'sk' else 'restricted'} key"
    if not re.fullmatch(r"[0-9A-Za-z]*", body):
        return f"{label} with characters Stripe keys never have (a space, a quote or a line break?)"
    if len(body) < 8:
        return f"{label} that is too short ({len(body)} characters after the prefix): copy it again whole"
    return f"{label} that is too long: copy it again, only the key"


def key_mode(key: str) -> str:
    match = KEY_PATTERN.fullmatch(key)
    if match is None:
        raise ValueError(f"not a Stripe API key: {describe_key_problem(key)}")
    return match.group("mode")


class StripeKeyProvider:
    def __init__(
        self,
        secret_id: str,
        *,
        expected_mode: str,
        ttl_seconds: float,
        read_secret: Callable[[str], str],
        clock: Callable[[], float] = time.monotonic,
        on_kept_last_good: Callable[[StripeKeyUnavailable], None] = lambda problem: None,
    ):
        self.secret_id = secret_id
        self._on_kept_last_good = on_kept_last_good
        self.expected_mode = expected_mode
        self.ttl = ttl_seconds
        self._read = read_secret
        self._clock = clock
        self._key: str | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._prefetch: threading.Thread | None = None
        self._prefetch_error: Exception | None = None
        self._prefetch_ended_at = 0.0
        self._prefetch_started_at: float | None = None
        self.reads = 0

    def prefetch(self) -> None:
        """With no key in memory yet (a cold start), start reading it in the background, so the Secrets
        Manager round trip overlaps the JWKS download and the mapping lookup instead of following them.
        At most one such read per TTL: it starts before the token is checked, so requests with forged
        tokens must not turn into one Secrets Manager read each while the secret cannot be read."""
        now = self._clock()
        if self._key is not None or (self._prefetch is not None and self._prefetch.is_alive()):
            return
        if self._prefetch_started_at is not None and now - self._prefetch_started_at < max(self.ttl, 1):
            return
        self._prefetch_started_at = now
        # The read belongs to this invocation: it gets the invocation's time budget in its own thread.
        self._prefetch = threading.Thread(target=self._run_prefetch, args=(carried_to_thread(),),
                                          name="stripe-key-prefetch", daemon=True)
        self._prefetch.start()

    def _run_prefetch(self, carried: Callable[[], AbstractContextManager[None]]) -> None:
        # A success sets the key (and an earlier error is then ignored); a failure replaces any earlier one.
        try:
            with self._lock, carried():
                if self._key is None:
                    self._load()
        except Exception as exc:  # noqa: BLE001 - handed to the request that waits for it, raised there
            self._prefetch_error = exc
        self._prefetch_ended_at = self._clock()

    def current(self) -> str:
        key = self._key
        if key is not None and self._clock() - self._loaded_at < self.ttl:
            return key
        in_flight = self._prefetch
        if in_flight is not None:
            # A read this request started (or overlapped): use its outcome rather than reading twice. A
            # failure from longer ago (e.g. a prefetch whose request was refused) is not reused.
            in_flight.join()
            self._prefetch = None
            error, self._prefetch_error = self._prefetch_error, None
            if (self._key is None and error is not None
                    and self._clock() - self._prefetch_ended_at < PREFETCH_FAILURE_REUSE_SECONDS):
                raise error
        with self._lock:
            if self._key is not None and self._clock() - self._loaded_at < self.ttl:
                return self._key
            try:
                return self._load()
            except StripeKeyUnavailable as problem:
                if self._key is None:
                    raise
                # Last-good: the secret cannot be read, or holds no usable key; the key in memory still works
                # (Stripe alone can say it does not). Keep it, and look again after a short pause.
                self._loaded_at = self._clock() - self.ttl + min(self.ttl, 10)
                self._on_kept_last_good(problem)
                return self._key

    def warm(self) -> bool:
        """Read the key ahead of the first request (at init). Fails soft: a failed read leaves no key and starts
        no prefetch window, so the first request reads again. True if a key is in memory."""
        try:
            self.current()
        except StripeKeyUnavailable:
            return False
        return True

    def forget(self) -> None:
        """Drop the key from memory, after any background read has ended (SnapStart: a key must never be part
        of a snapshot, and a thread does not survive one)."""
        prefetch = self._prefetch
        if prefetch is not None:
            prefetch.join()
        with self._lock:
            self._key, self._loaded_at = None, 0.0
            self._prefetch, self._prefetch_error, self._prefetch_started_at = None, None, None

    def refresh(self, rejected_key: str) -> str | None:
        """Re-read after Stripe rejected `rejected_key`. Returns the new key, or None if it did not change."""
        with self._lock:
            if self._key is not None and self._key != rejected_key:
                return self._key  # another thread already refreshed
            key = self._load()
            return None if key == rejected_key else key

    def _load(self) -> str:
        self.reads += 1
        key = parse_stripe_key(self._read(self.secret_id))
        mode = key_mode(key)
        if mode != self.expected_mode:
            raise StripeModeMismatch(
                log_detail=f"STRIPE_MODE is '{self.expected_mode}' but the secret holds a {mode}-mode key"
            )
        self._key = key
        self._loaded_at = self._clock()
        return key
