"""The deploy rehearsal's shared parts: the deploy guide's guided deploy run once per samconfig environment (the
real SAM CLI), and the template as SAM's own translator expands it for a parameter set."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.deploy.readme_script import ROOT, guided_answers
from tests.deploy.sam_cli import SAM_PYTHON, run_sam, scratch_project

NO_AUTH = "PortalFunction has no authentication. Is this okay?"
WEBHOOK_NO_AUTH = "WebhookFunction has no authentication. Is this okay?"
AWS_BOUNDARY = "Unable to locate credentials"  # what SAM says when it first needs AWS


def stopped_at_aws(run, after: str) -> bool:
    """SAM ended with one error, and that error is the first call needing AWS credentials."""
    tail = run.output[run.output.rindex(after):]
    errors = [index for index, line in enumerate(tail.splitlines()) if line.startswith("Error")]
    if run.exit_code == 0 or len(errors) != 1 or "Traceback" in tail:
        return False
    return AWS_BOUNDARY in "\n".join(tail.splitlines()[errors[0]:])


@pytest.fixture(scope="session")
def guided_deploy(tmp_path_factory):
    """The the guide's first deploy of a samconfig environment, once per environment: (project, home, run)."""
    done: dict[str, tuple] = {}

    def deploy(environment: str = "dev"):
        if environment not in done:
            project = scratch_project(tmp_path_factory.mktemp(f"project-{environment}"))
            home = tmp_path_factory.mktemp(f"home-{environment}")
            run = run_sam(["deploy", "--guided", "--config-env", environment], cwd=project, home=home,
                          script=guided_answers(), managed_bucket_stand_in=True)
            done[environment] = (project, home, run)
        return done[environment]

    return deploy


@pytest.fixture(scope="session")
def moto_server():
    from devstack.aws_standin import MotoServer

    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def first_deploy(guided_deploy):
    return guided_deploy("dev")


def translate(parameter_sets: list[dict[str, str]], region: str) -> list[dict]:
    """template.yaml expanded by aws-sam-translator (in the SAM CLI's own virtualenv) for each parameter set."""
    answer = subprocess.run(  # noqa: S603 - our own script, run by the project's SAM virtualenv
        [str(SAM_PYTHON), str(ROOT / "tests" / "deploy" / "translate_template.py"), str(ROOT / "template.yaml")],
        input=json.dumps(parameter_sets), capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": region, "SAM_CLI_TELEMETRY": "0"}, timeout=120)
    return json.loads(answer.stdout)
