"""Right with real Cognito: Hosted UI access tokens (no admin scope), and disabled or deleted users."""

from __future__ import annotations

import pytest

from devstack.fault_proxy import FaultProxy
from tests.functional.conftest import PASSWORD, aged
from tests.support.tokens import hosted_ui_access_token


@pytest.fixture
def cognito(moto_server):
    """moto behind a proxy that checks GetUser's scope as real Cognito does; it also counts the calls."""
    proxy = FaultProxy(moto_server.endpoint)
    proxy.enforce_cognito_scopes = True
    yield proxy
    proxy.close()


def issuer(stack) -> str:
    return f"https://cognito-idp.us-east-1.amazonaws.com/{stack.user_pool_id}"


def session_customer(stripe_standin, reply) -> str:
    return stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]["customer"]


def test_hosted_ui_access_token_without_the_admin_scope_opens_the_portal(gateway, stack, stripe_standin, cognito):
    sub = stack.add_user("ada", PASSWORD, email="ada@example.com", email_verified=True, name="Ada")
    legacy = stripe_standin.add_customer(email="ada@example.com")
    token = hosted_ui_access_token(issuer=issuer(stack), client_id=stack.client_id, sub=sub, username="ada")
    reply = gateway(AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=cognito.url).portal(token)
    assert reply.status == 302, reply.body
    assert session_customer(stripe_standin, reply) == legacy  # the profile (verified email) was read
    assert cognito.count("GetUser") == cognito.count("AdminGetUser") == 1  # AdminGetUser, never GetUser


def test_the_scope_checking_stand_in_refuses_getuser_like_cognito(stack, cognito):
    """The stand-in itself: GetUser with a Hosted UI token is refused, with the admin scope it is answered."""
    import boto3

    sub = stack.add_user("ada", PASSWORD, email="ada@example.com")
    client = boto3.client("cognito-idp", region_name="us-east-1", endpoint_url=cognito.url,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    hosted = hosted_ui_access_token(issuer=issuer(stack), client_id=stack.client_id, sub=sub, username="ada")
    with pytest.raises(client.exceptions.NotAuthorizedException):
        client.get_user(AccessToken=hosted)
    assert client.get_user(AccessToken=stack.sign_in("ada", PASSWORD)["AccessToken"])["Username"] == "ada"


def test_disabled_user_is_refused_within_a_minute_and_nothing_is_created(gateway, user, stack, stripe_standin):
    sub, tokens = user("ada")
    gw = gateway()
    assert gw.portal(tokens["IdToken"]).status == 302
    stack.moto.client("cognito-idp").admin_disable_user(UserPoolId=stack.user_pool_id, Username="ada")
    fresh = aged(gateway())  # another execution environment, the token over a minute old
    reply = fresh.portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 401 and reply.json["error"] == "invalid_token"
    assert len(stripe_standin.customers()) == 1


@pytest.mark.parametrize("kind", ["IdToken", "AccessToken"])
def test_deleted_user_is_refused(gateway, user, stack, stripe_standin, kind):
    _, tokens = user("ada")
    stack.moto.client("cognito-idp").admin_delete_user(UserPoolId=stack.user_pool_id, Username="ada")
    reply = aged(gateway()).portal(tokens[kind], accept="application/json")
    assert reply.status == 401 and reply.json["error"] == "invalid_token"
    assert stripe_standin.customers() == []


def test_user_status_is_asked_at_most_once_a_minute_per_user(gateway, user, stack, cognito, monkeypatch):
    _, ada = user("ada")
    _, grace = user("grace", email="grace@example.com")
    gw = aged(gateway(AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=cognito.url))
    for _ in range(5):
        assert gw.portal(ada["IdToken"]).status == 302
        assert gw.portal(grace["AccessToken"]).status == 302
    assert cognito.count("AdminGetUser") == 2  # one per user, not one per request
    service = gw.module.portal_service()
    clock = {"now": 1000.0}
    service.users.cache._clock = lambda: clock["now"]
    service.users.clear()
    gw.portal(ada["IdToken"])
    clock["now"] += 59
    gw.portal(ada["IdToken"])
    assert cognito.count("AdminGetUser") == 3
    clock["now"] += 2  # more than a minute after the last answer
    gw.portal(ada["IdToken"])
    assert cognito.count("AdminGetUser") == 4


def test_a_token_issued_in_the_last_minute_needs_no_status_check(gateway, user, stack, stripe_standin, cognito):
    """A plain link's sign-in arrives with a token seconds old: Cognito issued it to an enabled user, as recently
    as a cached answer would say, so the first request makes no AdminGetUser. Once the token is a minute old, the
    user's status is asked, and a user disabled meanwhile is refused."""
    _, tokens = user("ada")
    gw = gateway(AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=cognito.url)
    assert gw.portal(tokens["IdToken"]).status == 302
    assert cognito.count("AdminGetUser") == 0
    stack.moto.client("cognito-idp").admin_disable_user(UserPoolId=stack.user_pool_id, Username="ada")
    aged(gw, 45)  # (not 59: "iat" is whole seconds and the test's own steps take time)
    assert gw.portal(tokens["IdToken"]).status == 302  # within the minute a cached answer would also allow
    aged(gw, 61)
    reply = gw.portal(tokens["IdToken"], accept="application/json")
    assert reply.status == 401 and reply.json["error"] == "invalid_token"
    assert cognito.count("AdminGetUser") == 1 and len(stripe_standin.customers()) == 1
    aged(gw, -120)  # a clock behind the token's: no shortcut, the status is asked
    assert gw.portal(tokens["IdToken"], accept="application/json").status == 401


def test_status_check_can_be_switched_off(gateway, user, stack, cognito):
    _, tokens = user("ada")
    gw = gateway(AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER=cognito.url, CHECK_USER_STATUS="false")
    assert gw.portal(tokens["IdToken"]).status == 302
    stack.moto.client("cognito-idp").admin_disable_user(UserPoolId=stack.user_pool_id, Username="ada")
    assert gw.portal(tokens["IdToken"]).status == 302  # off: the token alone decides, until it expires
    assert cognito.count("AdminGetUser") == 0
