"""Run by the SAM CLI's own interpreter (.venv-sam): the real `sam` command, with the two steps of a guided
deploy that reach AWS before the answers are saved stood in: the lookup (or creation) of SAM's managed S3
bucket stack, and the companion stack manager (it reads the account id with STS to make ECR repositories for
image functions; this template has none). SAM then saves samconfig.toml with its own code, as after a real
first deploy, and the next call that needs AWS (uploading the code) fails as it does without credentials."""

from __future__ import annotations

import sys

from samcli.commands.deploy import guided_context

MANAGED_BUCKET = "aws-sam-cli-managed-default-samclisourcebucket-rehearsal"


def managed_bucket_stand_in(profile=None, region=None):
    print(f"\t(rehearsal) SAM's managed bucket stands in as {MANAGED_BUCKET}; nothing was created in AWS")
    return MANAGED_BUCKET


class NoImageFunctions:
    """The companion stack manager without AWS: it manages ECR repositories for image functions only."""

    def __init__(self, *args, **kwargs):
        pass

    def set_functions(self, function_logical_ids, image_repositories):
        if function_logical_ids:
            raise SystemExit("the rehearsal stands in for no ECR repositories: this template has image functions")

    def get_repository_mapping(self):
        return {}

    def get_unreferenced_repos(self):
        return []

    def get_repo_uri(self, repo):
        raise AssertionError("no repositories without image functions")

    def sync_repos(self):
        pass


guided_context.manage_stack = managed_bucket_stand_in
guided_context.CompanionStackManager = NoImageFunctions

if __name__ == "__main__":
    from samcli.cli.main import cli

    sys.exit(cli(prog_name="sam"))
