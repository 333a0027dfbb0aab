"""The template's Rules, evaluated as CloudFormation evaluates them when a change set is made, against the
parameter sets each one guards (and the ones it must let through); and the names that must not collide."""

from __future__ import annotations

import pytest

from devstack.cfn import load_template
from tests.deploy.cloudformation import Stack, TemplateError
from tests.deploy.readme_script import ROOT

BASE = {"CognitoUserPoolId": "eu-west-1_AbCdEf123", "CognitoClientIds": "abc123",
        "ReturnUrl": "https://www.example.com/account"}
DOMAIN = "https://myshop.auth.eu-west-1.amazoncognito.com"


@pytest.fixture(scope="module")
def template():
    return load_template(ROOT / "template.yaml")


def failures(template, **parameters) -> list[str]:
    return Stack(template, {**BASE, **parameters}, stack_name="s", region="eu-west-1").rule_failures()


@pytest.mark.parametrize("parameters, refused", [
    ({"CallbackUrl": "https://billing.example.com/api/portal/callback"}, "CallbackUrl is used only"),
    ({"OAuthClientId": "abc123"}, "OAuthClientId is used only"),
    ({"AllowCustomJwksUrl": "true"}, "AllowCustomJwksUrl=true"),
])
def test_each_rule_refuses_the_combination_it_guards_and_says_what_to_set(template, parameters, refused):
    (message,) = failures(template, **parameters)
    assert message.startswith(refused) and ("Set " in message)


@pytest.mark.parametrize("parameters", [
    {},
    {"CognitoDomain": DOMAIN},  # the the guide's first deploy: no CallbackUrl needed any more
    {"CognitoDomain": DOMAIN, "CallbackUrl": "https://billing.example.com/api/portal/callback",
     "OAuthClientId": "abc123"},
    {"AllowCustomJwksUrl": "true", "CognitoJwksUrl": "https://keys.example.com/jwks.json"},
])
def test_the_rules_let_every_working_combination_through(template, parameters):
    assert failures(template, **parameters) == []


def test_a_required_parameter_left_empty_is_refused_before_anything_is_created(template):
    with pytest.raises(TemplateError, match="CognitoUserPoolId"):
        Stack(template, {**BASE, "CognitoUserPoolId": ""}, stack_name="s", region="eu-west-1")


def test_a_stack_created_again_under_the_same_name_gets_a_new_secret_name(template):
    """The created secret is kept when the stack is deleted; a new stack of the same name must not collide."""
    names = set()
    for stack_id in ("1a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d", "9f8e7d6c-5b4a-4c3d-8e2f-1a0b9c8d7e6f"):
        stack = Stack(template, BASE, stack_name="stripe-portal-gateway-dev", region="eu-west-1")
        stack.pseudo["AWS::StackId"] = f"arn:aws:cloudformation:eu-west-1:123456789012:stack/x/{stack_id}"
        names.add(stack.resolve(template["Resources"]["StripeApiKeySecret"]["Properties"]["Name"]))
    assert len(names) == 2
    assert all(name.startswith("stripe-portal-gateway-dev/stripe-api-key-") for name in names)


def test_a_long_stack_name_still_gives_the_pre_traffic_hook_a_name_lambda_takes(template):
    """CloudFormation allows 128-character stack names, Lambda 64-character function names: the hook is named
    after the stack's id, so no stack name fails the create halfway."""
    long_name = "stripe-portal-gateway-" + "x" * 100
    stack = Stack(template, BASE, stack_name=long_name, region="eu-west-1")
    stack.pseudo["AWS::StackId"] = ("arn:aws:cloudformation:eu-west-1:123456789012:stack/"
                                    f"{long_name}/1a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d")
    name = stack.resolve(template["Resources"]["PreTrafficHookFunction"]["Properties"]["FunctionName"])
    assert name == "CodeDeployHook_1a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d" and len(name) <= 64
