"""stripe-portal-admin for day two: readable failures with exit codes, the plain-link preflight, the support
commands with audit lines, and the post-deploy smoke test; against moto and the Stripe stand-in."""

from __future__ import annotations

import io
import json
import threading

import pytest
from portal_admin import cli as admin

from devstack.aws_standin import add_oauth_secret
from devstack.http_api import serve


def run(argv, *, stack=None, stdin_text="", client=None):
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(argv, stdin=io.StringIO(stdin_text), out=out, err=err,
                      client=client or (stack.moto.client if stack else None))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def admin_env(stripe_standin, monkeypatch):
    monkeypatch.setenv("STRIPE_API_BASE", stripe_standin.base_url)


def ids(stack, **extra):
    args = {"--secret-id": stack.secret_id, "--mode": "test", "--user-pool-id": stack.user_pool_id,
            "--table": stack.table_name, **extra}
    return [item for pair in args.items() for item in pair]


# --- failures say what is wrong and the fix, on stderr, with documented exit codes ---------------------------
def test_no_region_is_a_sentence_with_the_fix(monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    code, out, err = run(["check", "--stack", "portal-prod"])
    assert code == admin.EXIT_USAGE
    assert "no AWS region" in err and "fix: Pass --region, or set AWS_REGION" in err
    assert "Error" not in err.replace("error:", "") and "Traceback" not in err and out == ""


def test_aws_region_is_honoured_although_botocore_reads_only_aws_default_region(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    assert admin.boto_factory()("sts").meta.region_name == "eu-central-1"
    assert admin.boto_factory("ap-south-1")("sts").meta.region_name == "ap-south-1"  # --region wins


def test_missing_credentials_and_unknown_profile(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, _, err = run(["check", "--stack", "portal-prod", "--region", "eu-west-1"])
    assert code == admin.EXIT_UNREACHABLE and "no usable AWS credentials" in err and "--profile" in err
    code, _, err = run(["check", "--stack", "portal-prod", "--region", "eu-west-1", "--profile", "nope"])
    assert code == admin.EXIT_UNREACHABLE and "the profile does not exist" in err


def test_access_denied_and_other_aws_answers_read_as_sentences():
    from botocore.exceptions import ClientError

    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "x"}}, "GetSecretValue")
    problem = admin.aws_problem(denied, "check")
    assert problem.code == admin.EXIT_UNREACHABLE and "not allowed" in problem.what and problem.fix
    expired = ClientError({"Error": {"Code": "ExpiredTokenException", "Message": "x"}}, "DescribeStacks")
    assert "refused the credentials" in admin.aws_problem(expired, "check").what


def test_version_and_help_for_every_command_and_option(capsys):
    from portal_gateway import __version__

    code, _, _ = run(["--version"])
    assert code == 0 and __version__ in capsys.readouterr().out
    root = admin.parser()
    subcommands = next(a for a in root._actions if a.dest == "command").choices
    assert set(subcommands) == set(admin.COMMANDS)
    for name, sub in subcommands.items():
        assert sub.description and len(sub.description) > 40, name
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest}"


@pytest.mark.parametrize("key, said", [
    ("sk_live_abc", "a live-mode secret key that is too short"),
    ("pk_test_" + "a" * 24, "publishable key"),
    ("whsec_" + "a" * 24, "webhook signing secret"),
    ("sk_test_abc def ghijklmnop", "characters Stripe keys never have"),
    ("hello", "must start with sk_test_, sk_live_, rk_test_ or rk_live_"),
])
def test_rotate_key_says_what_is_wrong_with_the_key(stack, admin_env, key, said):
    code, out, _ = run(["rotate-key", "--secret-id", stack.secret_id, "--mode", "test"], stack=stack,
                       stdin_text=key)
    assert code == admin.EXIT_FAILED and said in out
    assert key not in out


# --- check: the plain-link sign-in ----------------------------------------------------------------------------
@pytest.fixture
def sign_in(stack):
    cognito = stack.moto.client("cognito-idp")
    cognito.create_user_pool_domain(Domain="myshop", UserPoolId=stack.user_pool_id)
    callback = "https://api.example.com/portal/callback"
    cognito.update_user_pool_client(UserPoolId=stack.user_pool_id, ClientId=stack.client_id,
                                    CallbackURLs=[callback], AllowedOAuthFlows=["code"],
                                    AllowedOAuthScopes=["openid", "email"], AllowedOAuthFlowsUserPoolClient=True)
    secret = add_oauth_secret(stack)
    return ["--client-ids", stack.client_id], callback, secret


def sign_in_target(stack, callback, secret, **overrides):
    target = admin.Target(secret_id=stack.secret_id, mode="test", user_pool_id=stack.user_pool_id,
                          client_ids=(stack.client_id,), table=stack.table_name, jwks_url=stack.jwks_url,
                          cognito_domain="https://myshop.auth.us-east-1.amazoncognito.com", callback_url=callback,
                          oauth_secret_id=secret)
    for name, value in overrides.items():
        setattr(target, name, value)
    return target


def test_check_covers_the_plain_link_sign_in(stack, admin_env, sign_in):
    _, callback, secret = sign_in
    checks = {c.name: c for c in admin.run_check(sign_in_target(stack, callback, secret), stack.moto.client)}
    for name in ("sign-in domain", "callback URL registered", "authorization code flow", "sign-in scopes",
                 "OAuth secret"):
        assert checks[name].ok, (name, checks[name].detail)


def test_check_names_each_sign_in_problem_with_its_fix(stack, admin_env, sign_in):
    _, callback, secret = sign_in
    cognito = stack.moto.client("cognito-idp")
    cognito.update_user_pool_client(UserPoolId=stack.user_pool_id, ClientId=stack.client_id,
                                    CallbackURLs=["https://other.example.com/portal/callback"],
                                    AllowedOAuthFlows=["implicit"], AllowedOAuthScopes=["openid"],
                                    AllowedOAuthFlowsUserPoolClient=True)
    target = sign_in_target(stack, callback, None, cognito_domain="https://nosuch.auth.us-east-1.amazoncognito.com")
    failed = {c.name: c for c in admin.run_check(target, stack.moto.client) if not c.ok}
    assert {"sign-in domain", "callback URL registered", "authorization code flow", "sign-in scopes",
            "OAuth secret"} <= set(failed)
    assert "CallbackUrlToRegister" in failed["callback URL registered"].fix
    assert "missing: email" in failed["sign-in scopes"].detail
    assert all(c.fix for c in failed.values())


# --- support: whois, link, unlink, forget ------------------------------------------------------------------
@pytest.fixture
def mapped(gateway, user, stripe_standin):
    """A user who opened the portal once (mapping, stamped customer)."""
    sub, tokens = user()
    reply = gateway().portal(tokens["IdToken"])
    customer = stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]["customer"]
    return sub, customer, tokens


def test_whois_by_sub_username_and_customer_prints_ids_only(stack, admin_env, mapped):
    sub, customer, _ = mapped
    for who in (["--sub", sub], ["--username", "ada"], ["--customer", customer]):
        code, out, err = run(["whois", *ids(stack), *who], stack=stack)
        assert code == 0, err
        assert customer in out and sub in out
        assert "@" not in out and "Ada" not in out  # no email, no name
    code, out, _ = run(["whois", *ids(stack), "--sub", sub], stack=stack)
    assert "exists, stamped as this user's" in out
    code, _, err = run(["whois", *ids(stack), "--username", "nobody"], stack=stack)
    assert code == admin.EXIT_NOT_FOUND and "no such user" in err


def test_link_moves_a_user_to_the_right_customer_with_an_audit_line(stack, admin_env, mapped, stripe_standin,
                                                                   gateway):
    sub, wrong, tokens = mapped
    right = stripe_standin.add_customer(email="ada@example.com", subscription_status="active")
    code, out, err = run(["link", *ids(stack), sub, right, "--reason", "ticket 42: sees an empty portal"],
                         stack=stack)
    assert code == 0, err
    audit = json.loads(next(line for line in out.splitlines() if line.startswith("AUDIT "))[6:])
    assert audit["command"] == "link" and audit["sub"] == sub and audit["customer"] == right
    assert audit["reason"] == "ticket 42: sees an empty portal" and audit["who"].startswith("arn:aws:")
    assert stripe_standin.account.customers[right]["metadata"]["cognito_sub"] == sub
    item = stack.moto.client("dynamodb").get_item(
        TableName=stack.table_name, Key={"pk": {"S": f"test#{stack.user_pool_id}#{sub}"}})["Item"]
    assert item["customer_id"]["S"] == right and item["change_reason"]["S"].startswith("ticket 42")
    reply = gateway().portal(tokens["IdToken"])  # a fresh environment lands on the right one
    assert stripe_standin.account.sessions[reply.location.rsplit("/", 1)[-1]]["customer"] == right


def test_link_refuses_another_users_customer(stack, admin_env, mapped, stripe_standin, user, gateway):
    sub, customer, _ = mapped
    other_sub, other_tokens = user("grace", email="grace@example.com")
    gateway().portal(other_tokens["IdToken"])
    code, out, err = run(["link", *ids(stack), other_sub, customer, "--reason", "mistake"], stack=stack)
    assert code == admin.EXIT_FAILED and "stamped as another user's" in err and "unlink" in err
    assert "AUDIT" not in out
    code, _, err = run(["link", *ids(stack), sub, "cus_doesnotexist", "--reason", "x"], stack=stack)
    assert code == admin.EXIT_NOT_FOUND and "no such customer" in err
    code, _, err = run(["link", *ids(stack), sub, "acct_123", "--reason", "x"], stack=stack)
    assert code == admin.EXIT_USAGE and "cus_" in err
    code, _, _ = run(["link", *ids(stack), sub, customer], stack=stack)  # no --reason
    assert code == admin.EXIT_USAGE


def test_unlink_removes_mapping_claim_and_stamp(stack, admin_env, mapped, stripe_standin):
    sub, customer, _ = mapped
    code, out, err = run(["unlink", *ids(stack), sub, "--reason", "ticket 43"], stack=stack)
    assert code == 0, err
    assert '"command": "unlink"' in out
    assert "cognito_sub" not in stripe_standin.account.customers[customer]["metadata"]
    assert stack.moto.client("dynamodb").get_item(
        TableName=stack.table_name, Key={"pk": {"S": f"test#{stack.user_pool_id}#{sub}"}}).get("Item") is None
    code, _, err = run(["unlink", *ids(stack), sub, "--reason", "again"], stack=stack)
    assert code == admin.EXIT_NOT_FOUND and "no mapping" in err


def test_forget_removes_mapping_and_says_what_stays_in_stripe(stack, admin_env, mapped, stripe_standin):
    sub, customer, _ = mapped
    code, out, err = run(["forget", *ids(stack), sub, "--reason", "erasure request 7"], stack=stack)
    assert code == 0, err
    assert '"command": "forget"' in out and f"Stripe still holds customer {customer}" in out
    assert customer in {c["id"] for c in stripe_standin.customers()}  # Stripe is not touched
    items = stack.moto.client("dynamodb").scan(TableName=stack.table_name)["Items"]
    # Mapping, claim and creation ticket are gone; what stays is the audit record of the erasure (ids only).
    (record,) = items
    assert record["pk"]["S"].startswith(f"test#audit#{sub}#") and record["command"]["S"] == "forget"
    assert record["before"]["S"] == customer and record["after"]["S"] == "none"
    assert "ada@example.com" not in str(record)


# --- smoke ------------------------------------------------------------------------------------------------------
@pytest.fixture
def deployed(gateway, stack):
    """The functions behind a loopback HTTP server, routed as the deployed API routes them."""
    from devstack.aws_standin import add_webhook_secret
    from devstack.http_api import load_handler_module
    from tests.deploy.readme_script import ROOT

    def start(webhook_set_up: bool = True, **overrides):
        secret_id = add_webhook_secret(stack)
        if webhook_set_up:  # as `webhooks setup` leaves it
            stack.moto.client("secretsmanager").put_secret_value(SecretId=secret_id, SecretString=json.dumps(
                {"endpoint_id": "we_smoke", "signing_secrets": ["whsec_" + "5" * 48]}))
        module = gateway(WEBHOOK_SECRET_ID=secret_id, **overrides).module
        webhooks = load_handler_module(ROOT / "functions" / "webhooks" / "app.py")
        server = serve(module.lambda_handler, routes={"/webhooks/": webhooks.lambda_handler})
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/portal"
    started = []
    yield start
    for server in started:
        server.shutdown()


def test_smoke_passes_on_a_healthy_deployment_and_never_prints_the_portal_url(deployed, stack, user,
                                                                               stripe_standin):
    url = deployed()
    _, tokens = user()
    code, out, err = run(["smoke", "--url", url], stack=stack)
    assert code == 0, out + err
    assert "PASS  /health" in out and "PASS  unauthenticated /portal (fetch)" in out
    code, out, _ = run(["smoke", "--url", url, "--token-stdin"], stack=stack, stdin_text=tokens["IdToken"])
    assert code == 0 and "PASS  portal session with the token" in out and "(not shown)" in out
    assert "PASS  billing status with the token" in out and "PASS  unsigned webhook delivery refused" in out
    assert "PASS  unauthenticated /billing/status" in out
    assert "/p/session/" not in out and tokens["IdToken"] not in out


def test_smoke_says_when_the_webhook_is_not_set_up_yet(deployed, stack):
    code, out, _ = run(["smoke", "--url", deployed(webhook_set_up=False)], stack=stack)
    assert code == 1 and "FAIL  unsigned webhook delivery refused" in out
    assert "error webhook_not_configured" in out and "webhooks setup" in out


def test_smoke_reads_the_portal_url_and_sign_in_from_the_stack(deployed, stack):
    """docs/operations.md's `smoke --stack …`: the PortalUrl output and the CognitoDomain parameter come from the
    stack, as CloudFormation's describe-stacks reports them."""
    url = deployed()
    body = {"Parameters": {"CognitoDomain": {"Type": "String", "Default": ""}},
            "Resources": {"Record": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {"PortalUrl": {"Value": url}}}
    stack.moto.client("cloudformation").create_stack(StackName="portal-smoke", TemplateBody=json.dumps(body))
    code, out, err = run(["smoke", "--stack", "portal-smoke"], stack=stack)
    assert code == 0, out + err
    assert "PASS  /health" in out and "PASS  unauthenticated /portal (plain link)" in out


def test_smoke_fails_with_a_bad_token_or_an_api_that_does_not_answer(deployed, stack):
    url = deployed()
    code, out, _ = run(["smoke", "--url", url, "--token-stdin"], stack=stack, stdin_text="not.a.token")
    assert code == admin.EXIT_FAILED and "FAIL  portal session with the token" in out and "invalid_token" in out
    code, out, _ = run(["smoke", "--url", "http://127.0.0.1:9/portal"], stack=stack)
    assert code == admin.EXIT_FAILED and "FAIL  /health" in out and "no answer" in out


def test_smoke_checks_cors_when_origins_are_set(deployed, stack, monkeypatch):
    url = deployed(ALLOWED_ORIGINS="https://shop.example.com")
    target = admin.Target(portal_url=url, allowed_origins=("https://shop.example.com",))
    monkeypatch.setattr(admin, "resolve_target", lambda args, client: target)
    code, out, _ = run(["smoke"], stack=stack)
    assert code == 0 and "PASS  CORS preflight from https://shop.example.com" in out


def test_support_commands_need_ids(stack):
    code, _, err = run(["whois", "--sub", "x"], stack=stack)
    assert code == admin.EXIT_USAGE and "missing --table, --mode, --user-pool-id" in err


# --- audited support: inputs checked, every change recorded where it outlives the items it changed -------------
def test_link_refuses_a_user_who_does_not_exist(stack, admin_env, stripe_standin):
    customer = stripe_standin.add_customer(email="someone@example.com")
    nobody = "0b0b0b0b-1111-4222-8333-944444444444"
    code, out, err = run(["link", *ids(stack), nobody, customer, "--reason", "ticket 9"], stack=stack)
    assert code == admin.EXIT_NOT_FOUND and "no user with this sub" in err
    assert "cognito_sub" not in stripe_standin.account.customers[customer]["metadata"]  # nothing stamped


def test_link_refuses_a_disabled_user(stack, admin_env, stripe_standin, user):
    sub, _ = user("grace", email="grace@example.com")
    stack.moto.client("cognito-idp").admin_disable_user(UserPoolId=stack.user_pool_id, Username="grace")
    customer = stripe_standin.add_customer(email="grace@example.com")
    code, _, err = run(["link", *ids(stack), sub, customer, "--reason", "ticket 9"], stack=stack)
    assert code == admin.EXIT_FAILED and "disabled" in err


@pytest.mark.parametrize("argv_tail, message", [
    (["--reason", ""], "--reason is empty"),
    (["--reason", "   "], "--reason is empty"),
    (["--reason", "as asked by ada@example.com"], "contains an email address"),
])
def test_a_reason_must_say_something_and_hold_no_personal_data(stack, admin_env, mapped, argv_tail, message):
    sub, customer, _ = mapped
    code, out, err = run(["unlink", *ids(stack), sub, *argv_tail], stack=stack)
    assert code == admin.EXIT_USAGE and message in err and "AUDIT" not in out


@pytest.mark.parametrize("customer", ["cus_", "cus_1/../..", "ada@example.com", "CUS_12345678"])
def test_customer_ids_must_have_their_exact_shape(stack, admin_env, mapped, customer):
    sub, _, _ = mapped
    code, _, err = run(["link", *ids(stack), sub, customer, "--reason", "ticket 9"], stack=stack)
    assert code == admin.EXIT_USAGE and "not a Stripe customer id" in err
    code, _, err = run(["whois", *ids(stack), "--customer", customer], stack=stack)
    assert code == admin.EXIT_USAGE and "not a Stripe customer id" in err  # not "another Stripe account"


def test_whois_of_an_unknown_customer_is_not_found(stack, admin_env):
    code, out, _ = run(["whois", *ids(stack), "--customer", "cus_NoSuchCustomer1"], stack=stack)
    assert code == admin.EXIT_NOT_FOUND and "mapped users    none" in out


def test_every_change_is_recorded_and_whois_shows_the_history(stack, admin_env, mapped, stripe_standin):
    sub, first, _ = mapped
    right = stripe_standin.add_customer(email="ada@example.com")
    assert run(["link", *ids(stack), sub, right, "--reason", "ticket 42"], stack=stack)[0] == 0
    assert run(["unlink", *ids(stack), sub, "--reason", "ticket 43"], stack=stack)[0] == 0
    code, out, _ = run(["whois", *ids(stack), "--sub", sub], stack=stack)
    assert code == admin.EXIT_NOT_FOUND  # no mapping now; the history stays
    lines = [line for line in out.splitlines() if line.startswith("history")]
    assert len(lines) == 2
    assert f"link {first} -> {right}" in lines[0] and "ticket 42" in lines[0]
    assert f"unlink {right} -> none" in lines[1] and "ticket 43" in lines[1]
    records = [i for i in stack.moto.client("dynamodb").scan(TableName=stack.table_name)["Items"]
               if "#audit#" in i["pk"]["S"]]
    assert len(records) == 2 and all(int(r["expires_at"]["N"]) > 0 for r in records)  # the retention applies


def test_an_audit_record_is_appended_never_written_over(stack, admin_env):
    from portal_admin import support

    ctx = support.Context(table=stack.table_name, mode="test", user_pool_id=stack.user_pool_id,
                          client=stack.moto.client, stripe=None, out=io.StringIO())
    record = support.Audit(ctx, "arn:aws:iam::123456789012:user/ops", "unlink", "ticket 1", subject="s",
                           before="cus_a", after=None)
    for _ in range(2):  # the same change recorded twice in the same second: two records, none replaced
        with record.recorded():
            pass
    items = stack.moto.client("dynamodb").scan(TableName=stack.table_name)["Items"]
    assert len(items) == 2 and len({i["pk"]["S"] for i in items}) == 2


def test_the_audit_record_comes_before_the_change_and_a_failed_change_is_recorded_without_a_traceback(
        stack, admin_env, mapped, stripe_standin):
    """Stripe fails while the customer is being stamped (the last step of `link`): the change was audited before
    it began, its failure is recorded too, and the operator reads one line, not a traceback."""
    from devstack.stripe_standin import Fault

    sub, _, _ = mapped
    right = stripe_standin.add_customer(email="ada@example.com")
    stripe_standin.inject(Fault(status=500, times=5, method="POST", path_prefix=f"/v1/customers/{right}"))
    code, out, err = run(["link", *ids(stack), sub, right, "--reason", "ticket 43"], stack=stack)
    assert code == 3 and "Traceback" not in out + err
    assert "the change failed (Stripe APIError) after its audit record was written" in err
    records = [i for i in stack.moto.client("dynamodb").scan(TableName=stack.table_name)["Items"]
               if "#audit#" in i["pk"]["S"]]
    outcomes = sorted(r.get("outcome", {}).get("S", "recorded before the change") for r in records)
    assert outcomes == ["failed", "recorded before the change"]
    assert all(r["customer"]["S"] == right and r["command"]["S"] == "link" for r in records)


# --- the CLI keeps its word: exit codes and streams as README's table says -------------------------------------
def test_check_with_nothing_to_check_is_a_usage_error():
    code, out, err = run(["check"], client=lambda service: None)
    assert code == admin.EXIT_USAGE and "nothing to check" in err and out == ""


def test_rotate_key_without_ids_says_so_on_stderr(stack):
    code, out, err = run(["rotate-key"], stack=stack, stdin_text="sk_test_" + "a" * 24)
    assert code == admin.EXIT_USAGE and err.startswith("error: ") and "fix: " in err and "FAIL" not in out


@pytest.mark.parametrize("url, problem", [
    ("not-a-url", "not a URL"),
    ("http://api.example.com/portal", "clear text"),
    ("https://api.example.com/", "must end in /portal"),
])
def test_smoke_refuses_urls_it_must_not_send_a_token_to(url, problem):
    code, out, err = run(["smoke", "--url", url], client=lambda service: None)
    assert code == admin.EXIT_USAGE and problem in err and out == ""


def test_smoke_can_be_told_that_plain_links_sign_in(deployed, stack):
    secret_arn = add_oauth_secret(stack)
    url = deployed(COGNITO_DOMAIN="https://login.example.com", CALLBACK_URL="https://api.example.com/portal/callback",
                   OAUTH_SECRET_ID=secret_arn)
    code, out, _ = run(["smoke", "--url", url], client=lambda service: None)
    assert code == admin.EXIT_FAILED and "FAIL  unauthenticated /portal (plain link)" in out
    code, out, err = run(["smoke", "--url", url, "--sign-in", "hosted-ui"], client=lambda service: None)
    assert code == 0, out + err


def test_the_installed_command_keeps_the_documented_exit_codes(tmp_path):
    import os
    import subprocess
    import sys

    command = os.path.join(os.path.dirname(sys.executable), "stripe-portal-admin")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_REGION": "eu-west-1",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    for argv, code in ((["--version"], 0), (["check"], 2), (["smoke", "--url", "http://x.example/portal"], 2),
                       (["no-such-command"], 2)):
        done = subprocess.run([command, *argv], capture_output=True, text=True, env=env, timeout=60)  # noqa: S603
        assert done.returncode == code, (argv, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("pool, host", [("eu-west-1_AbCdEf123", "cognito-idp.eu-west-1.amazonaws.com"),
                                        ("cn-north-1_AbCdEf123", "cognito-idp.cn-north-1.amazonaws.com.cn")])
def test_the_cli_finds_the_jwks_where_the_function_does(pool, host):
    from portal_gateway.config import Settings

    settings = Settings.from_env({"STRIPE_SECRET_ID": "s", "STRIPE_MODE": "test", "COGNITO_USER_POOL_ID": pool,
                                  "COGNITO_CLIENT_IDS": "abc123", "CUSTOMERS_TABLE": "t",
                                  "RETURN_URL": "https://shop.example.com/"})
    assert admin.default_jwks_url(pool) == settings.jwks_url == f"https://{host}/{pool}/.well-known/jwks.json"
