"""The pre-traffic check of a release, run against the local stack: the "new version" is the real handler with a
configuration, AWS is moto, Stripe is the stand-in. A failing check blocks the release."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from portal_gateway.checks.release_check import Invocation, check_release, outcome
from portal_gateway.checks.stripe_key_check import AccountPins, check_stripe_key

from devstack.http_api import load_handler_module, new_context
from devstack.stripe_standin import fake_key
from tests.functional.conftest import RETURN_URL, reset_logging
from tests.support.tokens import SigningKey, claims

ROOT = Path(__file__).resolve().parents[2]


class LocalVersion:
    """The portal function as a version CodeDeploy would invoke: started on first use with its configuration,
    answering API events, its log lines captured per invocation."""

    def __init__(self, capsys):
        self.capsys = capsys
        self.module = None
        self.start_error = None

    def __call__(self, event: dict) -> Invocation:
        self.capsys.readouterr()
        if self.module is None and self.start_error is None:
            try:
                reset_logging()
                self.module = load_handler_module()
            except Exception as exc:  # noqa: BLE001 - what Lambda reports as an init error
                self.start_error = f"Runtime.ImportModuleError ({type(exc).__name__})"
        if self.start_error:
            return Invocation(None, function_error=self.start_error, log=self.capsys.readouterr().out)
        result = self.module.lambda_handler(event, new_context())
        return Invocation(result["statusCode"], result.get("body") or "", result.get("headers") or {},
                          log=self.capsys.readouterr().out)


@pytest.fixture
def release(stack, stripe_standin, monkeypatch, capsys):
    """Factory: the checks of a release whose function runs with the given configuration overrides."""

    def run(**overrides: str):
        env = stack.service_env(stripe_api_base=stripe_standin.base_url, return_url=RETURN_URL)
        env.update(overrides)
        for name, value in env.items():
            monkeypatch.setenv(name, value)

        def key_checks():
            value = stack.moto.client("secretsmanager").get_secret_value(SecretId=stack.secret_id)["SecretString"]
            pins = AccountPins(stack.table_name, stack.moto.client("dynamodb"))
            return check_stripe_key(value, expected_mode="test", api_base=stripe_standin.base_url, pins=pins)

        checks = check_release(invoke=LocalVersion(capsys), key_checks=key_checks,
                               hosted_ui=bool(overrides.get("COGNITO_DOMAIN")))
        return checks, outcome(checks)

    return run


def failed(checks) -> dict[str, str]:
    return {c.name: c.detail for c in checks if not c.ok}


def test_a_healthy_release_passes_and_creates_nothing(release, stripe_standin):
    checks, verdict = release()
    assert verdict == "Succeeded", failed(checks)
    names = {c.name for c in checks}
    assert {"new version starts", "/health", "unauthenticated /portal (fetch)", "Stripe account",
            "same Stripe account as before", "logs hold no secrets",
            "signed-in requests (rehearsed in memory)"} <= names
    assert stripe_standin.customers() == []
    assert not [c for c in stripe_standin.calls("POST", "/v1/customers") if c["path"] == "/v1/customers"]
    assert not stripe_standin.calls("POST", "/v1/billing_portal/sessions")[1:]  # only the permission probe


def test_a_version_whose_signed_in_path_fails_blocks_the_release(release, monkeypatch, stripe_standin):
    """Every unauthenticated answer is as documented, but the first thing after the sign-in fails (a bug in
    resolving the customer): the rehearsed signed-in requests catch it before any user is shifted."""
    from portal_gateway.billing.customers import CustomerResolver

    def broken(self, *args, **kwargs):
        raise KeyError("a bug after sign-in")

    monkeypatch.setattr(CustomerResolver, "resolve", broken)
    checks, verdict = release()
    assert verdict == "Failed"
    assert failed(checks) == {"signed-in requests (rehearsed in memory)": "status 500: GET /portal answered 500"}
    assert stripe_standin.customers() == []


def test_a_version_that_cannot_start_blocks_the_release(release):
    checks, verdict = release(RETURN_URL="http://shop.example.com/")  # not https: the function refuses to start
    assert verdict == "Failed"
    assert "new version starts" in failed(checks) and "/health" in failed(checks)


def test_another_accounts_key_blocks_the_release(release, stack, stripe_standin):
    assert release()[1] == "Succeeded"  # pins this deployment's account
    other = stripe_standin.add_account()
    stripe_standin.create_default_portal_configuration("test", account=other)
    stack.put_stripe_key(stripe_standin.add_key(fake_key("sk", "test"), account=other))
    checks, verdict = release()
    assert verdict == "Failed" and "same Stripe account as before" in failed(checks)


def test_a_key_of_the_wrong_mode_blocks_the_release(release, stack, stripe_standin):
    stack.put_stripe_key(stripe_standin.add_key(fake_key("sk", "live")))
    checks, verdict = release()
    assert verdict == "Failed" and "key mode" in failed(checks)


def test_plain_link_sign_in_is_checked_when_configured(release, stack):
    from devstack.aws_standin import add_oauth_secret

    checks, verdict = release(COGNITO_DOMAIN="https://login.example.com", OAUTH_SECRET_ID=add_oauth_secret(stack),
                              CALLBACK_URL="https://api.example.com/portal/callback")
    assert verdict == "Succeeded", failed(checks)
    checks, verdict = release(COGNITO_DOMAIN="", OAUTH_SECRET_ID="", CALLBACK_URL="")
    assert verdict == "Succeeded"


def test_logs_with_a_token_key_email_or_portal_url_block_the_release():
    from portal_gateway.checks.release_check import _clean_logs

    token = SigningKey().sign(claims())
    for leaked in (token, fake_key("sk", "live"), "ada@example.com", "https://billing.stripe.com/p/session/test_x"):
        check = _clean_logs([Invocation(200, log=f'{{"message":"oops","detail":"{leaked}"}}')])
        assert not check.ok, leaked
    assert _clean_logs([Invocation(200, log='{"message":"Request refused","error_code":"invalid_token"}')]).ok


# --- the hook function's wiring: what it tells CodeDeploy ------------------------------------------------------
def test_hook_reports_the_verdict_to_codedeploy(stack, stripe_standin, monkeypatch):
    monkeypatch.setenv("NEW_VERSION", "arn:aws:lambda:us-east-1:123456789012:function:portal:7")
    monkeypatch.setenv("STRIPE_MODE", "test")
    monkeypatch.setenv("STRIPE_SECRET_ID", stack.secret_id)
    monkeypatch.setenv("CUSTOMERS_TABLE", stack.table_name)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_standin.base_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.moto.endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # botocore reads this one; Lambda sets both
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    boto3.setup_default_session()  # a session that reads the environment above, as a fresh Lambda one does
    reset_logging()
    hook = load_handler_module(ROOT / "functions" / "pre_traffic" / "app.py")

    def answer(status: int, body: dict) -> dict:
        payload = json.dumps({"statusCode": status, "body": json.dumps(body), "headers": {}}).encode()
        return {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(payload), len(payload)), "LogResult": ""}

    for broken, expected in ((False, "Succeeded"), (True, "Failed")):
        lam = boto3.client("lambda", region_name="us-east-1")
        codedeploy = boto3.client("codedeploy", region_name="us-east-1")
        with Stubber(lam) as lambdas, Stubber(codedeploy) as deploys:
            lambdas.add_response("invoke", answer(200, {"status": "ok"}))
            unauthenticated = {"error": "authentication_required"} if not broken else {"error": "internal_error"}
            lambdas.add_response("invoke", answer(401 if not broken else 500, unauthenticated))
            lambdas.add_response("invoke", answer(401, {"error": "authentication_required"}))
            lambdas.add_response("invoke", answer(401, {"error": "authentication_required"}))  # /billing/status
            lambdas.add_response("invoke", answer(401, {"error": "authentication_required"}))  # customer session
            lambdas.add_response("invoke", answer(200, {"rehearsed": ["GET /portal"], "unexpected": None}))
            deploys.add_response("put_lifecycle_event_hook_execution_status", {"lifecycleEventHookExecutionId": "h"},
                                 {"deploymentId": "d-1", "lifecycleEventHookExecutionId": "h", "status": expected})
            monkeypatch.setattr(hook, "lambda_client", lam)
            monkeypatch.setattr(hook, "codedeploy", codedeploy)
            result = hook.lambda_handler({"DeploymentId": "d-1", "LifecycleEventHookExecutionId": "h"}, new_context())
            assert result == {"status": expected}
            deploys.assert_no_pending_responses()
