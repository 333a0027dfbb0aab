"""The deploy guide's way into AWS, driven through the real SAM CLI with exactly the guide's answers and no AWS
credentials: every prompt must be one the guide lists, in its order and number, and SAM must stop only where
it has to reach AWS."""

from __future__ import annotations

import pytest

from devstack.cfn import load_template
from tests.deploy.conftest import NO_AUTH, WEBHOOK_NO_AUTH, stopped_at_aws
from tests.deploy.readme_script import (
    ROOT,
    Answer,
    guided_answers,
    promised_question_count,
    redeploy_answers,
    shell_commands,
)
from tests.deploy.sam_cli import run_sam, saved_parameters, scratch_project


def test_the_readmes_answers_get_through_every_prompt_in_order(first_deploy):
    _, _, run = first_deploy
    assert run.unexpected == [], "prompts the deploy guide does not list"
    expected = [answer.prompt for answer in guided_answers() for _ in range(answer.times)]
    assert [prompt for prompt, _, _ in run.asked] == expected
    assert len(run.asked) == promised_question_count()
    resources = load_template(ROOT / "template.yaml")["Resources"]
    for function, prompt in (("PortalFunction", NO_AUTH), ("WebhookFunction", WEBHOOK_NO_AUTH)):
        events = resources[function]["Properties"]["Events"]
        routes = sum(1 for event in events.values() if event["Type"] == "HttpApi")
        assert sum(1 for asked, _, _ in run.asked if asked == prompt) == routes  # SAM asks once per route


def test_the_guided_deploy_stops_only_where_it_must_reach_aws(first_deploy):
    _, _, run = first_deploy
    assert "Security Constraints Not Satisfied" not in run.output
    assert "Looking for resources needed for deployment" in run.output
    assert stopped_at_aws(run, "SAM configuration environment")


def test_what_the_readme_says_to_type_is_what_gets_saved(first_deploy):
    project, _, run = first_deploy
    parameters, deploy = saved_parameters(project / "samconfig.toml", "dev")
    typed = {a.prompt.removeprefix("Parameter "): a.typed for a in guided_answers()
             if a.prompt.startswith("Parameter ")}
    for name, value in typed.items():
        if value:
            assert parameters[name] == value, name
    assert deploy["region"] == next(a.typed for a in guided_answers() if a.prompt == "AWS Region")
    assert deploy["stack_name"] == "stripe-portal-gateway-dev"
    assert deploy["capabilities"] == "CAPABILITY_IAM" and deploy["confirm_changeset"] is True


def test_answering_no_to_one_unauthenticated_route_stops_the_deploy_as_the_readme_warns(tmp_path):
    project = scratch_project(tmp_path / "project")
    script = [Answer(a.prompt, a.typed, a.times) for a in guided_answers() if a.prompt != NO_AUTH]
    script.append(Answer(NO_AUTH, "y", 2))
    (tmp_path / "home").mkdir()
    run = run_sam(["deploy", "--guided", "--config-env", "dev"], cwd=project, home=tmp_path / "home", script=script)
    assert [p for p, _, typed in run.asked if p == NO_AUTH][2:3] == [NO_AUTH]  # the third one got Enter: N
    assert "Security Constraints Not Satisfied!" in run.output


@pytest.mark.parametrize("environment", ["dev", "prod", "default"])
def test_later_deploys_of_every_samconfig_environment_ask_nothing_and_stop_only_at_aws(guided_deploy, environment):
    project, home, first = guided_deploy(environment)
    assert first.unexpected == [] and stopped_at_aws(first, "SAM configuration environment")
    parameters, deploy = saved_parameters(project / "samconfig.toml", environment)
    assert parameters["StripeMode"] == {"prod": "live"}.get(environment, "test")  # Enter kept samconfig's mode
    run = run_sam(["deploy", "--config-env", environment], cwd=project, home=home)
    assert run.asked == [], "a later deploy must not ask anything"
    assert stopped_at_aws(run, run.output[:1])


def test_teardown_then_redeploy_takes_the_kept_table_and_secret_back(first_deploy, tmp_path):
    project, home, _ = first_deploy
    delete = run_sam(["delete", "--config-env", "dev"], cwd=project, home=home, script=[Answer(
        "Are you sure you want to delete the stack stripe-portal-gateway-dev in the region eu-west-1 ?", "y", 1)])
    assert delete.unexpected == [], delete.output
    assert stopped_at_aws(delete, delete.output[:1]), delete.output
    kept = {a.prompt: a.typed for a in redeploy_answers()}
    # The guide: Enter keeps every saved answer; the two kept resources are typed in; the questions about
    # unauthenticated routes still want `y`.
    script = [Answer(a.prompt, kept.get(a.prompt, "y" if a.prompt in (NO_AUTH, WEBHOOK_NO_AUTH) else ""), a.times)
              for a in guided_answers()]
    run = run_sam(["deploy", "--guided", "--config-env", "dev"], cwd=project, home=home, script=script,
                  managed_bucket_stand_in=True)
    assert run.unexpected == []
    assert stopped_at_aws(run, "SAM configuration environment")
    parameters, _ = saved_parameters(project / "samconfig.toml", "dev")
    assert parameters["ExistingCustomersTableName"] == kept["Parameter ExistingCustomersTableName"]
    assert parameters["ExistingStripeSecretArn"] == kept["Parameter ExistingStripeSecretArn"]
    first = {a.prompt.removeprefix("Parameter "): a.typed for a in guided_answers() if a.typed}
    assert parameters["CognitoUserPoolId"] == first["CognitoUserPoolId"]  # Enter kept the saved answer


def test_every_command_of_the_deploy_section_is_one_the_rehearsal_runs():
    rehearsed = {
        ".venv-sam/bin/sam build": "make build (part of make test) runs `sam build` on this template",
        ".venv-sam/bin/sam deploy --guided --config-env dev": "test_the_readmes_answers_get_through_every_prompt",
        ".venv/bin/stripe-portal-admin rotate-key --stack stripe-portal-gateway-dev": "test_deploy_steps",
        ".venv/bin/stripe-portal-admin webhooks setup --stack stripe-portal-gateway-dev": "walk_the_readme, step 6",
        ".venv/bin/stripe-portal-admin backfill --stack stripe-portal-gateway-dev": "walk_the_readme, step 6",
        ".venv-sam/bin/sam build && .venv-sam/bin/sam deploy --config-env dev": "test_later_deploys",
    }
    assert shell_commands() == list(rehearsed)
    assert "$(SAM) build --template template.yaml" in (ROOT / "Makefile").read_text()
