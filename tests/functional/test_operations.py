"""Operations: validated key rotation (steps driven directly, as moto does not run rotation functions) and the
stripe-portal-admin commands against moto and the Stripe stand-in."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pytest
from portal_admin import cli as admin
from portal_gateway.checks.rotation import RotationError

from devstack.http_api import load_handler_module, new_context
from devstack.stripe_standin import GUIDE_PERMISSIONS, fake_key

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


@pytest.fixture
def rotation(stack, stripe_standin, monkeypatch):
    env = stack.service_env(stripe_api_base=stripe_standin.base_url, return_url="https://shop.example.com/")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    module = load_handler_module(ROOT / "functions" / "rotation" / "app.py")

    def run(token, steps=STEPS):
        for step in steps:
            module.lambda_handler({"Step": step, "SecretId": stack.secret_id, "ClientRequestToken": token},
                                  new_context())

    return run


def stage(stack, key: str) -> str:
    token = str(uuid.uuid4())
    stack.moto.client("secretsmanager").put_secret_value(
        SecretId=stack.secret_id, ClientRequestToken=token, SecretString=json.dumps({"api_key": key}),
        VersionStages=["AWSPENDING"])
    return token


def stages(stack) -> dict:
    return stack.moto.client("secretsmanager").describe_secret(SecretId=stack.secret_id)["VersionIdsToStages"]


def current_version(stack) -> str:
    return next(v for v, s in stages(stack).items() if "AWSCURRENT" in s)


# --- rotation -------------------------------------------------------------------------------------------------
def test_valid_staged_key_goes_live(rotation, stack, stripe_standin):
    # A restricted key with exactly the permissions the deploy guide lists: Stripe refuses it GET /v1/account.
    new_key = stripe_standin.add_key(fake_key("rk", "test"), GUIDE_PERMISSIONS)
    old_version = current_version(stack)
    token = stage(stack, new_key)
    rotation(token)
    assert current_version(stack) == token
    assert "AWSCURRENT" not in stages(stack)[old_version]
    value = stack.moto.client("secretsmanager").get_secret_value(SecretId=stack.secret_id, VersionId=token)
    assert json.loads(value["SecretString"]) == {"api_key": new_key}
    rotation(token, ("finishSecret",))  # a retried step is harmless
    assert current_version(stack) == token


@pytest.mark.parametrize("make_key, reason", [
    (lambda s: s.add_key(fake_key("sk", "live")), "live-mode key"),
    (lambda s: fake_key("sk", "test"), "rejected the key"),  # unknown to Stripe: revoked or mistyped
    (lambda s: s.add_key(fake_key("rk", "test"), frozenset({"customers_write"})),
     "Customer portal write"),
    (lambda s: s.add_key(fake_key("rk", "test"), frozenset({"customers_read", "portal_write"})),
     "Customers write"),
    (lambda s: s.add_key(fake_key("rk", "test"), GUIDE_PERMISSIONS - {"subscriptions_read"}),
     "Subscriptions read"),  # the status route would answer 503, the webhook function 502
    (lambda s: s.add_key(fake_key("rk", "test"), GUIDE_PERMISSIONS - {"entitlements_read"}), "Entitlements read"),
    (lambda s: s.add_key(fake_key("rk", "test"), GUIDE_PERMISSIONS - {"events_read"}), "Events read"),
    (lambda s: "pk_test_" + "x" * 24, "publishable"),
])
def test_refused_key_never_goes_live(rotation, stack, stripe_standin, make_key, reason, capsys):
    before = current_version(stack)
    key = make_key(stripe_standin)
    token = stage(stack, key)
    with pytest.raises(RotationError, match=reason):
        rotation(token)
    assert current_version(stack) == before
    assert key not in capsys.readouterr().out


def test_key_of_account_without_portal_configuration_is_refused(rotation, stack, stripe_standin):
    stripe_standin.remove_default_portal_configuration("test")
    before = current_version(stack)
    token = stage(stack, stripe_standin.add_key(fake_key("sk", "test")))
    with pytest.raises(RotationError, match="portal configuration"):
        rotation(token)
    assert current_version(stack) == before


def test_rotation_without_a_staged_key_fails_clearly(stack):
    """Rotation started with nothing staged ("Rotate now" in the console): real Secrets Manager then lists the
    new token as AWSPENDING with no value. moto completes such rotations itself, so that one state is added
    on top of moto's answers here."""
    from portal_gateway.checks.rotation import rotate

    token = str(uuid.uuid4())
    real = stack.moto.client("secretsmanager")

    class StartedWithoutValue:
        def describe_secret(self, **kwargs):
            answer = real.describe_secret(**kwargs)
            answer["VersionIdsToStages"][token] = ["AWSPENDING"]
            return answer

        def get_secret_value(self, **kwargs):
            return real.get_secret_value(**kwargs)  # moto: ResourceNotFound for the unknown version

    before = current_version(stack)
    with pytest.raises(RotationError, match="nothing is staged"):
        rotate("createSecret", stack.secret_id, token, client=StartedWithoutValue(), validate=lambda v: [])
    assert current_version(stack) == before


def test_unknown_token_is_refused(rotation):
    with pytest.raises(RotationError, match="not a version"):
        rotation(str(uuid.uuid4()), ("createSecret",))


# --- stripe-portal-admin check ---------------------------------------------------------------------------------
def run_admin(stack, argv, stdin_text="", monkeypatch=None):
    out = io.StringIO()
    code = admin.main(argv, stdin=io.StringIO(stdin_text), out=out, err=out, client=stack.moto.client)
    return code, out.getvalue()


@pytest.fixture
def admin_env(stripe_standin, monkeypatch):
    monkeypatch.setenv("STRIPE_API_BASE", stripe_standin.base_url)


def explicit(stack, **overrides):
    args = {"--secret-id": stack.secret_id, "--mode": "test", "--user-pool-id": stack.user_pool_id,
            "--client-ids": stack.client_id, "--table": stack.table_name, "--jwks-url": stack.jwks_url}
    args.update(overrides)
    return [item for pair in args.items() for item in pair]


def test_check_passes_on_a_healthy_deployment(stack, admin_env):
    code, out = run_admin(stack, ["check", *explicit(stack)])
    assert code == 0, out
    for name in ("secret readable", "key mode", "Stripe accepts the key", "permission: Customers write",
                 "permission: Customer portal write", "portal configuration", "JWKS reachable",
                 f"app client {stack.client_id}", "customers table"):
        assert f"PASS  {name}" in out
    assert "All checks passed." in out


def test_check_reports_each_failure_with_its_fix(stack, stripe_standin, admin_env):
    stripe_standin.remove_default_portal_configuration("test")
    code, out = run_admin(stack, ["check", *explicit(stack, **{
        "--client-ids": f"{stack.client_id},nosuchclient1", "--table": "missing-table",
        "--jwks-url": "http://127.0.0.1:9/jwks.json"})])
    assert code == 1
    assert "FAIL  portal configuration" in out and "Customer portal" in out
    assert "FAIL  app client nosuchclient1" in out and f"PASS  app client {stack.client_id}" in out
    assert "FAIL  customers table" in out and "FAIL  JWKS reachable" in out
    assert "FAIL  same Stripe account as before" in out  # its pin lives in the missing table
    assert out.count("fix:") == 5
    assert "Some checks failed." in out


def test_check_wrong_mode_and_unreadable_secret(stack, stripe_standin, admin_env):
    code, out = run_admin(stack, ["check", *explicit(stack, **{"--mode": "live"})])
    assert code == 1 and "FAIL  key mode" in out and "STRIPE_MODE is 'live'" in out
    assert stripe_standin.key not in out
    code, out = run_admin(stack, ["check", *explicit(stack, **{"--secret-id": "nope"})])
    assert code == 1 and "FAIL  secret readable" in out and "ResourceNotFoundException" in out


def test_check_reads_ids_from_a_stack(stack, admin_env):
    template = {
        "Parameters": {name: {"Type": "String"} for name in
                       ("StripeMode", "CognitoUserPoolId", "CognitoClientIds", "CognitoJwksUrl", "SecretArn", "Table")},
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"StripeSecretArn": {"Value": {"Ref": "SecretArn"}},
                    "CustomersTableName": {"Value": {"Ref": "Table"}}},
    }
    values = {"StripeMode": "test", "CognitoUserPoolId": stack.user_pool_id, "CognitoClientIds": stack.client_id,
              "CognitoJwksUrl": stack.jwks_url, "SecretArn": stack.secret_id, "Table": stack.table_name}
    stack.moto.client("cloudformation").create_stack(
        StackName="portal-dev", TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()])
    code, out = run_admin(stack, ["check", "--stack", "portal-dev"])
    assert code == 0, out
    code, out = run_admin(stack, ["check", "--stack", "no-such-stack"])
    assert code == admin.EXIT_NOT_FOUND
    assert "error: could not read the stack 'no-such-stack': no such stack in this region" in out
    assert "fix: Check the stack name and --region" in out and "Traceback" not in out


# --- stripe-portal-admin rotate-key -------------------------------------------------------------------------------
def test_rotate_key_validates_and_stages_from_stdin(stack, stripe_standin, admin_env, rotation):
    new_key = stripe_standin.add_key(fake_key("sk", "test"))
    before = current_version(stack)
    code, out = run_admin(stack, ["rotate-key", "--secret-id", stack.secret_id, "--mode", "test", "--stage-only"],
                          stdin_text=new_key + "\n")
    assert code == 0, out
    assert new_key not in out
    [token] = [v for v, s in stages(stack).items() if "AWSPENDING" in s]
    assert current_version(stack) == before  # staged, not live
    rotation(token)  # what rotate-key then has the rotation function run
    assert current_version(stack) == token
    # AWSPENDING goes with it (moto's real stage moves): left on a version, it would make Secrets Manager refuse
    # the next rotation, and make the next rotate-key's staging ambiguous.
    assert [v for v, s in stages(stack).items() if "AWSPENDING" in s] == []
    again = stripe_standin.add_key(fake_key("sk", "test"))
    assert run_admin(stack, ["rotate-key", "--secret-id", stack.secret_id, "--mode", "test", "--stage-only"],
                     stdin_text=again + "\n")[0] == 0
    [second] = [v for v, s in stages(stack).items() if "AWSPENDING" in s]
    rotation(second)
    assert current_version(stack) == second


def test_rotate_key_refuses_a_bad_key_and_changes_nothing(stack, stripe_standin, admin_env):
    before = stages(stack)
    bad = fake_key("sk", "test")  # Stripe does not know it
    code, out = run_admin(stack, ["rotate-key", "--secret-id", stack.secret_id, "--mode", "test"], stdin_text=bad)
    assert code == 1
    assert "FAIL  Stripe accepts the key" in out and "nothing was changed" in out
    assert bad not in out
    assert stages(stack) == before


def test_rotate_key_reports_a_rotation_that_cannot_start(stack, stripe_standin, admin_env):
    new_key = stripe_standin.add_key(fake_key("sk", "test"))
    code, out = run_admin(stack, ["rotate-key", "--secret-id", stack.secret_id, "--mode", "test",
                                  "--rotation-function-arn",
                                  "arn:aws:lambda:us-east-1:123456789012:function:missing"], stdin_text=new_key)
    assert code == 1
    assert "PASS  staged as AWSPENDING" in out and "FAIL  createSecret" in out
    assert "live key is unchanged" in out


def test_rotate_key_needs_a_key(stack, admin_env):
    code, out = run_admin(stack, ["rotate-key", "--secret-id", stack.secret_id, "--mode", "test"], stdin_text="\n")
    assert code == 2 and "no key given" in out


def test_the_key_is_never_accepted_on_the_command_line():
    with pytest.raises(SystemExit):
        admin.parser().parse_args(["rotate-key", "--secret-id", "x", "--key", "sk_test_abc"])


# --- the Stripe account is pinned ---------------------------------------------------------------------------------
def other_account_key(stripe_standin) -> tuple[str, str]:
    other = stripe_standin.add_account()
    stripe_standin.create_default_portal_configuration("test", account=other)  # fully set up, just not ours
    return stripe_standin.add_key(fake_key("sk", "test"), account=other), other.id


def pinned(stack) -> str | None:
    item = stack.moto.client("dynamodb").get_item(
        TableName=stack.table_name, Key={"pk": {"S": "test#stripe-account"}}).get("Item")
    return item["account_id"]["S"] if item else None


def test_first_good_key_pins_its_account_and_another_accounts_key_never_goes_live(rotation, stack, stripe_standin):
    assert pinned(stack) is None
    same_account_key = stripe_standin.add_key(fake_key("sk", "test"))
    rotation(stage(stack, same_account_key))  # set-up: the first good key pins the account
    assert pinned(stack) == stripe_standin.account.id

    foreign, foreign_id = other_account_key(stripe_standin)
    before = current_version(stack)
    with pytest.raises(RotationError) as refused:
        rotation(stage(stack, foreign))
    message = str(refused.value)
    assert f"acct_…{foreign_id[-4:]}" in message and f"acct_…{stripe_standin.account.id[-4:]}" in message
    assert foreign_id not in message and stripe_standin.account.id not in message  # last 4 characters at most
    assert foreign not in message
    assert current_version(stack) == before
    assert pinned(stack) == stripe_standin.account.id


def test_check_is_a_preflight_and_writes_nothing(stack, admin_env):
    code, out = run_admin(stack, ["check", *explicit(stack)])
    assert code == 0, out
    assert "PASS  same Stripe account as before" in out and "not pinned yet" in out
    assert pinned(stack) is None and stack.moto.client("dynamodb").get_item(
        TableName=stack.table_name, Key={"pk": {"S": "test#stripe-account"}}).get("Item") is None


def test_rotate_key_refuses_another_accounts_key_before_staging(stack, stripe_standin, admin_env, rotation):
    rotation(stage(stack, stripe_standin.add_key(fake_key("sk", "test"))))  # the first key put in pins the account
    assert pinned(stack) == stripe_standin.account.id
    foreign, foreign_id = other_account_key(stripe_standin)
    before = stages(stack)
    code, out = run_admin(stack, ["rotate-key", "--secret-id", stack.secret_id, "--mode", "test",
                                  "--table", stack.table_name], stdin_text=foreign)
    assert code == 1
    assert "FAIL  same Stripe account as before" in out and f"acct_…{foreign_id[-4:]}" in out
    assert foreign_id not in out and foreign not in out
    assert "nothing was changed" in out and stages(stack) == before


def test_check_fails_when_the_secret_holds_another_accounts_key(stack, stripe_standin, admin_env, rotation):
    rotation(stage(stack, stripe_standin.add_key(fake_key("sk", "test"))))  # pins the account
    assert run_admin(stack, ["check", *explicit(stack)])[0] == 0
    foreign, _ = other_account_key(stripe_standin)
    stack.put_stripe_key(foreign)
    code, out = run_admin(stack, ["check", *explicit(stack)])
    assert code == 1 and "FAIL  same Stripe account as before" in out, out
    assert "fix: Use a key of the account ending" in out


# --- restricted keys: their account is proven by what only this deployment's account has ---------------------------
RESTRICTED = GUIDE_PERMISSIONS  # the deploy guide's permissions, and nothing else


def map_customers(stack, stripe_standin, count: int = 2, account=None) -> list[str]:
    """Customers of `account` mapped to users of this deployment, as first visits would leave them."""
    ids = []
    for index in range(count):
        customer = stripe_standin.add_customer(email=f"user{index}@example.com", account=account)
        stack.moto.client("dynamodb").put_item(TableName=stack.table_name, Item={
            "pk": {"S": f"test#{stack.user_pool_id}#sub-{index}"}, "customer_id": {"S": customer}})
        ids.append(customer)
    return ids


def test_a_restricted_key_of_the_same_account_is_checked_and_goes_live(rotation, stack, stripe_standin):
    rotation(stage(stack, stripe_standin.add_key(fake_key("sk", "test"))))  # set-up pins the account
    map_customers(stack, stripe_standin)
    restricted = stripe_standin.add_key(fake_key("rk", "test"), RESTRICTED)
    token = stage(stack, restricted)
    rotation(token)
    assert current_version(stack) == token
    # Stripe was never asked GET /v1/account with it (it always refuses restricted keys there).
    assert not [c for c in stripe_standin.calls("GET", "/v1/account") if c["status"] == 403]


def test_a_restricted_key_of_another_account_never_goes_live(rotation, stack, stripe_standin):
    rotation(stage(stack, stripe_standin.add_key(fake_key("sk", "test"))))
    map_customers(stack, stripe_standin)
    other = stripe_standin.add_account()
    stripe_standin.create_default_portal_configuration("test", account=other)
    foreign = stripe_standin.add_key(fake_key("rk", "test"), RESTRICTED, account=other)
    before = current_version(stack)
    with pytest.raises(RotationError, match="cannot see 2 of 2 mapped customers"):
        rotation(stage(stack, foreign))
    assert current_version(stack) == before


def test_a_restricted_first_key_pins_the_configuration_that_later_keys_must_see(rotation, stack, stripe_standin):
    # No customers yet, no secret key ever: the portal configuration is the account's evidence.
    first = stripe_standin.add_key(fake_key("rk", "test"), RESTRICTED)
    rotation(stage(stack, first))
    item = stack.moto.client("dynamodb").get_item(
        TableName=stack.table_name, Key={"pk": {"S": "test#stripe-account"}})["Item"]
    assert "account_id" not in item and item["configuration_id"]["S"].startswith("bpc_")
    other = stripe_standin.add_account()
    stripe_standin.create_default_portal_configuration("test", account=other)
    foreign = stripe_standin.add_key(fake_key("rk", "test"), RESTRICTED, account=other)
    with pytest.raises(RotationError, match="the portal configuration bpc_"):
        rotation(stage(stack, foreign))
    # A secret key of the right account later fills in the account id the restricted key could not read.
    rotation(stage(stack, stripe_standin.add_key(fake_key("sk", "test"))))
    assert pinned(stack) == stripe_standin.account.id


def test_a_restricted_key_cannot_pass_against_an_account_only_pin_with_nothing_to_compare(rotation, stack,
                                                                                          stripe_standin):
    """A pin of release 1.1.0 holds the account id only, and no customer is mapped yet: a restricted key (which
    cannot say its account) of another account used to pass, go live and write its own configuration into the
    pin, after which the right account's keys were refused."""
    stack.moto.client("dynamodb").put_item(TableName=stack.table_name, Item={
        "pk": {"S": "test#stripe-account"}, "account_id": {"S": stripe_standin.account.id}})
    other = stripe_standin.add_account()
    stripe_standin.create_default_portal_configuration("test", account=other)
    foreign = stripe_standin.add_key(fake_key("rk", "test"), RESTRICTED, account=other)
    before = current_version(stack)
    with pytest.raises(RotationError, match="a restricted key cannot show its account"):
        rotation(stage(stack, foreign))
    assert current_version(stack) == before
    item = stack.moto.client("dynamodb").get_item(TableName=stack.table_name,
                                                   Key={"pk": {"S": "test#stripe-account"}})["Item"]
    assert "configuration_id" not in item  # nothing written by a key that proved nothing
    # A secret key of the pinned account records the configuration; then the restricted keys of that account pass.
    rotation(stage(stack, stripe_standin.add_key(fake_key("sk", "test"))))
    rotation(stage(stack, stripe_standin.add_key(fake_key("rk", "test"), RESTRICTED)))
    with pytest.raises(RotationError, match="the portal configuration bpc_"):
        rotation(stage(stack, foreign))


def test_check_passes_with_a_restricted_key_in_the_secret(stack, stripe_standin, admin_env):
    map_customers(stack, stripe_standin, 1)
    stack.put_stripe_key(stripe_standin.add_key(fake_key("rk", "test"), RESTRICTED))
    code, out = run_admin(stack, ["check", *explicit(stack)])
    assert code == 0, out
    assert "PASS  Stripe account" in out and "restricted key" in out
    assert "PASS  same Stripe account as before" in out
