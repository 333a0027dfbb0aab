"""What CloudFormation needs to create, read, update and delete a template's resources, from the resource provider
schemas CloudFormation publishes (each handler lists its IAM permissions). cfn-lint ships them, per region, in the
SAM CLI's virtualenv; the SAM CLI's own managed stack (the artifact bucket of `--resolve-s3`) is read from the
SAM CLI itself. Nothing here is written by hand but the few schema entries that are not IAM actions."""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path

from tests.deploy.sam_cli import SAM_PYTHON

HANDLERS = ("create", "read", "update", "delete")  # "list" serves drift detection and the registry, not a deploy
# Schema entries that are not IAM actions (IAM would reject them in a policy), with where they come from.
NOT_IAM_ACTIONS = {
    "s3:REST.PUT.OBJECT": "an S3 REST operation's log name in a handler's permissions, not an IAM action",
}


def _schemas() -> Path:
    (found,) = SAM_PYTHON.parent.parent.glob("lib/python3*/site-packages/cfnlint/data/schemas")
    return found


@cache
def _provider(region: str) -> dict[str, str]:
    return json.loads((_schemas() / "providers" / f"{region}.json").read_text())


def handler_permissions(resource_type: str, region: str) -> set[str]:
    """Every permission the type's create/read/update/delete handlers list, as IAM spells it (case-insensitive:
    one spelling per action)."""
    schema = json.loads((_schemas() / "resources" / f"{_provider(region)[resource_type]}.json").read_text())
    found = set()
    for handler in HANDLERS:
        found |= set(schema.get("handlers", {}).get(handler, {}).get("permissions", []))
    return found


def needed(resource_types: set[str], region: str) -> set[str]:
    """The IAM actions CloudFormation calls for these types (one spelling each, schema oddities left out)."""
    by_lower: dict[str, str] = {}
    for resource_type in sorted(resource_types):
        for permission in sorted(handler_permissions(resource_type, region)):
            if permission not in NOT_IAM_ACTIONS:
                service, _, action = permission.partition(":")
                by_lower.setdefault(permission.lower(), f"{service}:{action[:1].upper()}{action[1:]}")
    return set(by_lower.values())


def managed_stack_types() -> set[str]:
    """The resource types of the SAM CLI's managed stack (`--resolve-s3` creates it once per account and region)."""
    code = ("import json; from samcli.lib.bootstrap.bootstrap import _get_stack_template as t; "
            "print(json.dumps(sorted({r['Type'] for r in json.loads(t())['Resources'].values()})))")
    answer = subprocess.run([str(SAM_PYTHON), "-c", code], capture_output=True, text=True, check=True,  # noqa: S603
                            timeout=60, env={"PATH": "/usr/bin:/bin", "SAM_CLI_TELEMETRY": "0", "HOME": "/tmp"})
    return set(json.loads(answer.stdout))
