"""SnapStart: with AWS_LAMBDA_INITIALIZATION_TYPE=snap-start the service is built during init; the hooks make
sure nothing learned at run time (the Stripe key, the OAuth secret, caches, connections, a background read)
is in a snapshot or served after a restore."""

from __future__ import annotations

import pytest
from portal_gateway.http_pool import POOL

from devstack.fault_proxy import FaultProxy
from tests.functional.conftest import aged


@pytest.fixture
def secrets_proxy(moto_server):
    proxy = FaultProxy(moto_server.endpoint)
    yield proxy
    proxy.close()


def pooled_connections() -> int:
    return POOL.idle_count()


def test_service_is_built_during_init_under_snapstart(gateway, monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    gw = gateway()
    assert gw.module._service is not None  # imports and clients are part of the snapshot
    assert gw.module._service.billing._keys._key is None  # but never the key
    assert gw.module._service.verifier.jwks._keys  # the JWKS (public keys) may be
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    on_demand = gateway().module._service
    assert on_demand is not None and on_demand.billing._keys._key is not None  # at init, at full CPU


def test_nothing_cached_before_the_snapshot_is_served_after_restore(gateway, user, stack, stripe_standin,
                                                                    secrets_proxy):
    _, tokens = user()
    gw = aged(gateway(AWS_ENDPOINT_URL_SECRETS_MANAGER=secrets_proxy.url))  # a token old enough to ask Cognito
    assert gw.portal(tokens["IdToken"]).status == 302  # key, mapping, user status cached; connections open
    service = gw.module.portal_service()
    keys = service.billing._keys
    assert keys._key is not None and service.resolver.cache._items and service.users.cache._items
    assert pooled_connections() > 0

    gw.module.before_snapshot()
    assert keys._key is None and keys._prefetch is None
    assert not service.resolver.cache._items and not service.users.cache._items
    assert pooled_connections() == 0

    # The key is rotated while the snapshot sleeps: a restored copy must use the new one, read afresh.
    from devstack.stripe_standin import fake_key

    new_key = stripe_standin.add_key(fake_key("sk", "test"))
    stack.put_stripe_key(new_key)
    stripe_standin.revoke_key(stripe_standin.key)
    reads_before = secrets_proxy.count("GetSecretValue")
    gw.module.after_restore()
    assert gw.portal(tokens["IdToken"]).status == 302
    assert secrets_proxy.count("GetSecretValue") == reads_before + 1
    assert not [r for r in stripe_standin.requests if r["status"] == 401]  # the old key was never sent again


def test_before_snapshot_waits_for_a_background_key_read(gateway, user, secrets_proxy):
    import threading

    _, tokens = user()
    gw = gateway(AWS_ENDPOINT_URL_SECRETS_MANAGER=secrets_proxy.url, AWS_LAMBDA_INITIALIZATION_TYPE="snap-start")
    service = gw.module.portal_service()
    secrets_proxy.latency = 0.3
    service.billing.prefetch_key()
    assert any(t.name == "stripe-key-prefetch" and t.is_alive() for t in threading.enumerate())
    gw.module.before_snapshot()
    assert not any(t.name == "stripe-key-prefetch" and t.is_alive() for t in threading.enumerate())
    assert service.billing._keys._key is None


def test_the_snapshot_holds_no_aws_credentials_resolved_during_init(gateway, monkeypatch):
    """Under SnapStart, Lambda gives the function its credentials through the container endpoint, which botocore's
    chain reads (not the environment): the chain init resolved (the rehearsal signs its requests) is dropped
    before the snapshot, and resolved afresh after a restore."""
    from portal_gateway.aws import client as aws_client

    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    gw = gateway()
    monkeypatch.setattr(aws_client, "_botocore_chain", object())  # what init resolved
    gw.module.before_snapshot()
    assert aws_client._botocore_chain is None
    monkeypatch.setattr(aws_client, "_botocore_chain", object())
    gw.module.after_restore()
    assert aws_client._botocore_chain is None
