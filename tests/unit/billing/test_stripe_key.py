"""Parsing the secret value and the key cache (TTL, forced refresh, stale-if-error)."""

from __future__ import annotations

import threading

import pytest
from portal_gateway.billing.stripe_key import (
    PLACEHOLDER,
    SecretUnreadable,
    StripeKeyProvider,
    key_mode,
    parse_stripe_key,
)
from portal_gateway.errors import StripeKeyUnavailable, StripeModeMismatch

KEY_A = "sk_test_" + "a" * 24
KEY_B = "rk_test_" + "b" * 24


@pytest.mark.parametrize("raw, expected", [
    (KEY_A, KEY_A), (f"  {KEY_A}\n", KEY_A), (f'{{"api_key": "{KEY_B}"}}', KEY_B),
    ("sk_live_" + "c" * 24, "sk_live_" + "c" * 24), ("rk_live_" + "d" * 24, "rk_live_" + "d" * 24),
])
def test_accepted_secret_values(raw, expected):
    assert parse_stripe_key(raw) == expected


@pytest.mark.parametrize("raw, hint", [
    ("", "empty"), ("   ", "empty"), (None, "empty"), ('{"api_key": 5}', "not a string"),
    ('{"apikey": "x"}', "api_key"), ("{not json", "api_key"), ("pk_test_" + "e" * 24, "publishable"),
    ("sk_prod_" + "f" * 24, "must start with sk_test_"), ("sk_test_short", "too short"), (PLACEHOLDER, "placeholder"),
    (f'{{"api_key": "{PLACEHOLDER}"}}', "placeholder"),
])
def test_refused_secret_values_say_why_without_echoing(raw, hint):
    with pytest.raises(StripeKeyUnavailable) as caught:
        parse_stripe_key(raw)
    assert hint in caught.value.log_detail
    if isinstance(raw, str) and len(raw) > 12:
        assert raw.strip() not in caught.value.log_detail


def test_key_mode():
    assert key_mode(KEY_A) == "test" and key_mode("sk_live_" + "c" * 24) == "live"


class Secret:
    def __init__(self, value):
        self.value = value
        self.reads = 0
        self.down = False

    def __call__(self, secret_id):
        self.reads += 1
        if self.down:
            raise SecretUnreadable(log_detail="down")
        return self.value


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def provider(secret, clock, mode="test", ttl=300):
    return StripeKeyProvider("sid", expected_mode=mode, ttl_seconds=ttl, read_secret=secret, clock=clock)


def test_key_is_cached_for_ttl_then_reread():
    secret, clock = Secret(KEY_A), Clock()
    keys = provider(secret, clock)
    assert keys.current() == KEY_A and keys.current() == KEY_A
    assert secret.reads == 1
    secret.value = KEY_B
    clock.now = 299
    assert keys.current() == KEY_A
    clock.now = 301
    assert keys.current() == KEY_B and secret.reads == 2


def test_mode_mismatch_names_both_modes():
    with pytest.raises(StripeModeMismatch) as caught:
        provider(Secret("sk_live_" + "c" * 24), Clock()).current()
    assert "STRIPE_MODE is 'test'" in caught.value.log_detail and "live-mode key" in caught.value.log_detail


def test_refresh_returns_new_key_or_none_when_unchanged():
    secret, clock = Secret(KEY_A), Clock()
    keys = provider(secret, clock)
    keys.current()
    assert keys.refresh(KEY_A) is None  # the secret still holds the rejected key
    secret.value = KEY_B
    assert keys.refresh(KEY_A) == KEY_B
    assert secret.reads == 3
    assert keys.refresh(KEY_A) == KEY_B  # another request already refreshed: no further read
    assert secret.reads == 3


def test_stale_key_keeps_serving_when_secrets_manager_is_down():
    secret, clock = Secret(KEY_A), Clock()
    keys = provider(secret, clock)
    keys.current()
    secret.down = True
    clock.now = 400
    assert keys.current() == KEY_A  # stale-if-error
    reads = secret.reads
    assert keys.current() == KEY_A and secret.reads == reads  # backs off instead of hammering
    clock.now = 411
    secret.down = False
    secret.value = KEY_B
    assert keys.current() == KEY_B


def test_no_key_at_all_and_secrets_manager_down_is_unavailable():
    secret = Secret(KEY_A)
    secret.down = True
    with pytest.raises(SecretUnreadable):
        provider(secret, Clock()).current()


class SlowSecret(Secret):
    """A secret whose read blocks until released, and says which thread read it."""

    def __init__(self, value):
        super().__init__(value)
        self.release = threading.Event()
        self.readers: list[str] = []

    def __call__(self, secret_id):
        self.readers.append(threading.current_thread().name)
        assert self.release.wait(5)
        return super().__call__(secret_id)


def test_prefetch_reads_in_the_background_and_the_request_uses_that_read():
    secret, clock = SlowSecret(KEY_A), Clock()
    keys = provider(secret, clock)
    keys.prefetch()
    keys.prefetch()  # already in flight: no second read
    threading.Timer(0.05, secret.release.set).start()
    assert keys.current() == KEY_A
    assert secret.reads == 1 and secret.readers == ["stripe-key-prefetch"]
    keys.prefetch()  # a key is in memory: nothing to do
    assert keys.current() == KEY_A and secret.reads == 1


def test_a_failed_prefetch_is_reported_by_the_request_without_reading_twice():
    secret, clock = Secret(KEY_A), Clock()
    secret.down = True
    keys = provider(secret, clock)
    keys.prefetch()
    with pytest.raises(SecretUnreadable):
        keys.current()
    assert secret.reads == 1
    secret.down = False  # the next request reads again
    keys.prefetch()
    assert keys.current() == KEY_A and secret.reads == 2


def test_an_old_prefetch_failure_is_not_reused():
    # A prefetch whose own request was refused (say, a bad token) and failed minutes ago must not fail a
    # later request that reads the key directly.
    secret, clock = Secret(KEY_A), Clock()
    secret.down = True
    keys = provider(secret, clock)
    keys.prefetch()
    keys._prefetch.join()
    secret.down = False
    clock.now = 120
    assert keys.current() == KEY_A and secret.reads == 2


def test_a_bad_secret_value_found_by_the_prefetch_is_the_requests_error():
    secret = Secret("sk_live_" + "c" * 24)
    keys = provider(secret, Clock())
    keys.prefetch()
    with pytest.raises(StripeModeMismatch):
        keys.current()
    assert secret.reads == 1
