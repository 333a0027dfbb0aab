"""botocore as the reference for AWS endpoints: what URL it would send a request to, for every region of every
partition it ships (botocore/data/partitions.json), with and without FIPS. Nothing is sent: a before-send
hook captures the URL and answers locally."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import botocore
import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import BotoCoreError

# Service -> (botocore client name, an operation and its minimal parameters)
OPERATIONS = {
    "secretsmanager": ("secretsmanager", "get_secret_value", {"SecretId": "x"}),
    "dynamodb": ("dynamodb", "get_item", {"TableName": "t", "Key": {"pk": {"S": "x"}}}),
    "cognito-idp": ("cognito-idp", "admin_get_user", {"UserPoolId": "p", "Username": "u"}),
}


def partitions() -> list[dict]:
    return json.loads((Path(botocore.__file__).parent / "data" / "partitions.json").read_text())["partitions"]


def every_region() -> list[tuple[str, str]]:
    """(partition id, region) for every region botocore ships, global pseudo-regions excluded."""
    return [(p["id"], region) for p in partitions() for region in p["regions"] if not region.endswith("-global")]


@lru_cache(maxsize=1)
def _session():
    return botocore.session.get_session()


class _Captured(Exception):
    pass


def botocore_endpoint(service: str, region: str, *, fips: bool = False) -> str | None:
    """The scheme://host/ botocore would call, or None where botocore cannot resolve an endpoint."""
    name, operation, params = OPERATIONS[service]
    client = _session().create_client(name, region_name=region, aws_access_key_id="AKID", aws_secret_access_key="s",
                                      config=Config(use_fips_endpoint=fips, retries={"max_attempts": 0}))
    seen: dict[str, str] = {}

    def capture(request, **_):
        seen["url"] = request.url
        return AWSResponse(request.url, 200, {}, _Body(b"{}"))

    client.meta.events.register("before-send", capture)
    try:
        getattr(client, operation)(**params)
    except BotoCoreError:
        return None
    url = seen["url"]
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/"


class _Body:
    def __init__(self, data: bytes):
        self._data = data

    def read(self, *args):
        data, self._data = self._data, b""
        return data

    def stream(self, **_):
        yield self.read()
