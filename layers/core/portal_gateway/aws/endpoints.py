"""Where the function's AWS calls go: the services it uses and the partitions it serves, as botocore resolves
them. Kept apart from the HTTP client (http_pool) so that configuration can check endpoints at start-up
without loading it."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Service:
    signing_name: str  # also the endpoint prefix for the services here
    target_prefix: str  # X-Amz-Target is "<prefix>.<Operation>"
    json_version: str
    endpoint_variable: str  # AWS_ENDPOINT_URL_<this>, as botocore names it
    fips_built_in: frozenset[str] = frozenset()  # partitions whose plain endpoint is already the FIPS one


SECRETS_MANAGER = Service("secretsmanager", "secretsmanager", "1.1", "SECRETS_MANAGER")
DYNAMODB = Service("dynamodb", "DynamoDB_20120810", "1.0", "DYNAMODB", fips_built_in=frozenset({"aws-us-gov"}))
COGNITO_USER_POOLS = Service("cognito-idp", "AWSCognitoIdentityProviderService", "1.1",
                             "COGNITO_IDENTITY_PROVIDER")


@dataclass(frozen=True)
class Partition:
    id: str
    region_pattern: re.Pattern
    dns_suffix: str


# As botocore's data/partitions.json has them (a test compares this table and every endpoint it gives, for
# every region of every partition botocore ships, with botocore's own resolver). A region in none of them is
# refused: the function does not guess a host name for a partition it does not know.
PARTITIONS = tuple(Partition(pid, re.compile(pattern), suffix) for pid, pattern, suffix in (
    ("aws", r"^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$", "amazonaws.com"),
    ("aws-cn", r"^cn\-\w+\-\d+$", "amazonaws.com.cn"),
    ("aws-eusc", r"^eusc\-(de)\-\w+\-\d+$", "amazonaws.eu"),
    ("aws-iso", r"^us\-iso\-\w+\-\d+$", "c2s.ic.gov"),
    ("aws-iso-b", r"^us\-isob\-\w+\-\d+$", "sc2s.sgov.gov"),
    ("aws-iso-e", r"^eu\-isoe\-\w+\-\d+$", "cloud.adc-e.uk"),
    ("aws-iso-f", r"^us\-isof\-\w+\-\d+$", "csp.hci.ic.gov"),
    ("aws-us-gov", r"^us\-gov\-\w+\-\d+$", "amazonaws.com"),
))
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class EndpointError(ValueError):
    """No endpoint can be used for this service and region; the message says what to set instead."""


def partition_of(region: str) -> Partition | None:
    return next((p for p in PARTITIONS if p.region_pattern.match(region)), None)


def endpoint_for(service: Service, region: str, environ: Mapping[str, str] | None = None) -> str:
    """The endpoint botocore would use: AWS_ENDPOINT_URL_<SERVICE> / AWS_ENDPOINT_URL, else the region's
    partition (FIPS with AWS_USE_FIPS_ENDPOINT). Raises EndpointError when there is none to use."""
    env = os.environ if environ is None else environ
    variable = f"AWS_ENDPOINT_URL_{service.endpoint_variable}"
    configured = env.get(variable) or env.get("AWS_ENDPOINT_URL")
    if configured and env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() != "true":
        parts = urlsplit(configured)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS):
            raise EndpointError(f"{variable} (or AWS_ENDPOINT_URL) must use https; http only for loopback")
        return configured.rstrip("/") + "/"
    partition = partition_of(region)
    if partition is None:
        raise EndpointError(f"region {region[:40]!r} is in no AWS partition this function knows; set {variable} "
                            f"to the service's endpoint")
    fips = env.get("AWS_USE_FIPS_ENDPOINT", "").lower() == "true" and partition.id not in service.fips_built_in
    return f"https://{service.signing_name}{'-fips' if fips else ''}.{region}.{partition.dns_suffix}/"


def cognito_issuer(user_pool_id: str, region: str) -> str:
    """The `iss` of the pool's tokens: the Cognito host of the region's partition (never FIPS)."""
    partition = partition_of(region)
    if partition is None:
        raise EndpointError(f"region {region[:40]!r} is in no AWS partition this function knows")
    return f"https://cognito-idp.{region}.{partition.dns_suffix}/{user_pool_id}"
