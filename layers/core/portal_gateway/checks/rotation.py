"""Secrets Manager rotation for the Stripe key, with validation. Stripe keys cannot be minted by API, so an
admin stages the new key (AWSPENDING) and `stripe-portal-admin rotate-key` runs these steps by invoking the
rotation function (Secrets Manager's RotateSecret makes a version of its own and cannot take a value staged
beforehand); this function only checks and promotes the staged key.

  createSecret  keep the staged value (fail clearly when nothing is staged)
  setSecret     nothing to do: Stripe already knows the key
  testSecret    refuse a key that does not authenticate, is of the wrong mode, lacks a permission the
                service needs, or whose account has no portal configuration
  finishSecret  move AWSCURRENT to the new version
A refused key never becomes AWSCURRENT: the rotation stops at testSecret and AWSCURRENT stays where it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from portal_gateway.checks.stripe_key_check import Check, passed

logger = logging.getLogger(__name__)
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


class RotationError(Exception):
    """Rotation cannot go on; the message says why and what to do (never the key)."""


def rotate(step: str, secret_id: str, token: str, *, client: Any,
           validate: Callable[[str], list[Check]]) -> None:
    if step not in STEPS:
        raise RotationError(f"unknown rotation step {step!r}")
    versions = client.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {})
    if token not in versions:
        raise RotationError("the rotation token is not a version of this secret; stage the key with "
                            "`stripe-portal-admin rotate-key`")
    if "AWSCURRENT" in versions[token]:
        logger.info("Version is already AWSCURRENT; nothing to do", extra={"step": step})
        return
    if "AWSPENDING" not in versions[token]:
        raise RotationError("the rotation version is not AWSPENDING")
    if step == "createSecret":
        _create(client, secret_id, token)
    elif step == "testSecret":
        _test(client, secret_id, token, validate)
    elif step == "finishSecret":
        _finish(client, secret_id, token, versions)
    # setSecret: the key already exists at Stripe; there is nothing to set.


def _pending_value(client: Any, secret_id: str, token: str) -> str | None:
    try:
        return client.get_secret_value(SecretId=secret_id, VersionId=token, VersionStage="AWSPENDING")["SecretString"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return None
        raise
    except KeyError:
        return None


def _create(client: Any, secret_id: str, token: str) -> None:
    if _pending_value(client, secret_id, token) is None:
        raise RotationError("nothing is staged: Stripe keys cannot be generated here. Roll the key in the Stripe "
                            "Dashboard, then run `stripe-portal-admin rotate-key`, which stages it and starts rotation")
    logger.info("createSecret: keeping the staged key")


def _test(client: Any, secret_id: str, token: str, validate: Callable[[str], list[Check]]) -> None:
    value = _pending_value(client, secret_id, token)
    if value is None:
        raise RotationError("the staged version has no value")
    checks = validate(value)
    for check in checks:
        logger.info("testSecret check", extra={"check": check.name, "ok": check.ok, "detail": check.detail})
    if not passed(checks):
        failed = "; ".join(f"{c.name}: {c.detail} ({c.fix})" for c in checks if not c.ok)
        raise RotationError(f"the staged key was refused and will not go live: {failed}")


def _finish(client: Any, secret_id: str, token: str, versions: dict[str, list[str]]) -> None:
    current = next((version for version, stages in versions.items() if "AWSCURRENT" in stages), None)
    client.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSCURRENT", MoveToVersionId=token,
                                       **({"RemoveFromVersionId": current} if current else {}))
    # Done with it: AWSPENDING left on a version is what makes Secrets Manager refuse the next rotation.
    client.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSPENDING", RemoveFromVersionId=token)
    logger.info("finishSecret: the new key is AWSCURRENT; running functions pick it up within their cache TTL")
