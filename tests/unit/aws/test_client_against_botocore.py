"""The function's own AWS client held to botocore: endpoints for every region of every partition botocore ships
(with and without FIPS), the Cognito issuer host, error codes as botocore's JSON parser reads them, and the
signed path as botocore's signer normalises it."""

from __future__ import annotations

import json

import botocore.session
import pytest
from botocore.model import ServiceModel
from botocore.parsers import create_parser
from portal_gateway.aws import client as aws_json
from portal_gateway.aws.endpoints import (
    COGNITO_USER_POOLS,
    DYNAMODB,
    PARTITIONS,
    SECRETS_MANAGER,
    EndpointError,
    cognito_issuer,
    endpoint_for,
)
from portal_gateway.config import ConfigError, Settings

from tests.support.botocore_endpoints import botocore_endpoint, every_region, partitions
from tests.unit.aws.test_client import NOW, botocore_authorization

SERVICES = {"secretsmanager": SECRETS_MANAGER, "dynamodb": DYNAMODB, "cognito-idp": COGNITO_USER_POOLS}
REGIONS = every_region()


def test_our_partition_table_is_botocores():
    """Upgrading botocore with a new or changed partition fails here, before it can fail in production."""
    ours = {(p.id, p.region_pattern.pattern, p.dns_suffix) for p in PARTITIONS}
    theirs = {(p["id"], p["regionRegex"], p["outputs"]["dnsSuffix"]) for p in partitions()}
    assert ours == theirs


def test_every_partition_botocore_ships_is_covered():
    assert {partition for partition, _ in REGIONS} == {p["id"] for p in partitions()}
    assert len(REGIONS) >= 40


@pytest.mark.parametrize("fips", [False, True], ids=["standard", "fips"])
@pytest.mark.parametrize("service", sorted(SERVICES))
def test_endpoints_equal_botocores_in_every_region(service, fips):
    env = {"AWS_USE_FIPS_ENDPOINT": "true" if fips else "false"}
    differences = []
    for partition, region in REGIONS:
        expected = botocore_endpoint(service, region, fips=fips)
        try:
            ours = endpoint_for(SERVICES[service], region, env)
        except EndpointError:
            ours = None
        if ours != expected:
            differences.append((partition, region, expected, ours))
    assert differences == []


@pytest.mark.parametrize("region", ["us-west-9", "cn-south-7", "us-gov-south-1", "eusc-de-north-2", "us-isof-west-3"])
def test_regions_botocore_does_not_list_yet_follow_its_partition_rules(region):
    for service, ours in SERVICES.items():
        assert endpoint_for(ours, region, {}) == botocore_endpoint(service, region)


def test_cognito_issuer_host_is_the_pools_partition_host():
    for _, region in REGIONS:
        host = botocore_endpoint("cognito-idp", region)
        assert cognito_issuer(f"{region}_Pool1", region) == f"{host}{region}_Pool1"
    assert cognito_issuer("cn-north-1_Pool1", "cn-north-1").startswith("https://cognito-idp.cn-north-1.amazonaws.com.cn/")


def _settings_env(**extra):
    return {"STRIPE_SECRET_ID": "s", "STRIPE_MODE": "test", "CUSTOMERS_TABLE": "t", "COGNITO_CLIENT_IDS": "abc123",
            "RETURN_URL": "https://shop.example.com/", **extra}


def test_an_unknown_partition_is_refused_at_start_up_naming_the_way_out():
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER"):
        Settings.from_env(_settings_env(COGNITO_USER_POOL_ID="xx-mars-1_Pool1"))
    with pytest.raises(ConfigError, match="AWS_ENDPOINT_URL_DYNAMODB"):
        Settings.from_env(_settings_env(COGNITO_USER_POOL_ID="eu-west-1_Pool1", AWS_REGION="zz-moon-1",
                                        AWS_ENDPOINT_URL_SECRETS_MANAGER="https://secrets.internal.example"))
    # ... and with the endpoints given, it starts (the issuer still needs a known partition for the pool).
    Settings.from_env(_settings_env(COGNITO_USER_POOL_ID="eu-west-1_Pool1", AWS_REGION="zz-moon-1",
                                    AWS_ENDPOINT_URL="https://aws.internal.example"))


def test_china_and_eusc_pools_get_their_partitions_issuer():
    china = Settings.from_env(_settings_env(COGNITO_USER_POOL_ID="cn-north-1_Pool1"))
    assert china.issuer == "https://cognito-idp.cn-north-1.amazonaws.com.cn/cn-north-1_Pool1"
    assert china.jwks_url == china.issuer + "/.well-known/jwks.json"
    eusc = Settings.from_env(_settings_env(COGNITO_USER_POOL_ID="eusc-de-east-1_Pool1"))
    assert eusc.issuer == "https://cognito-idp.eusc-de-east-1.amazonaws.eu/eusc-de-east-1_Pool1"


@pytest.mark.parametrize("url, allowed", [
    ("https://aws.internal.example", True), ("http://127.0.0.1:5000", True), ("http://localhost:4566", True),
    ("http://[::1]:4566", True), ("http://aws.internal.example", False), ("http://10.0.0.5:4566", False),
    ("ftp://127.0.0.1", False),
])
def test_plain_http_endpoints_only_for_loopback(url, allowed):
    env = {"AWS_ENDPOINT_URL_DYNAMODB": url}
    if allowed:
        assert endpoint_for(DYNAMODB, "eu-west-1", env) == url + "/"
    else:
        with pytest.raises(EndpointError, match="https"):
            endpoint_for(DYNAMODB, "eu-west-1", env)
        with pytest.raises(ConfigError, match="https"):
            Settings.from_env(_settings_env(COGNITO_USER_POOL_ID="eu-west-1_Pool1", AWS_REGION="eu-west-1", **env))


# --- error codes, as botocore's JSON parser reads them --------------------------------------------------------
def _botocore_code(status: int, headers: dict, body: bytes) -> str:
    model = botocore.session.get_session().get_service_model("dynamodb")
    parser = create_parser(model.metadata["protocol"])
    parsed = parser.parse({"status_code": status, "headers": headers, "body": body},
                          model.operation_model("GetItem").output_shape)
    return parsed["Error"]["Code"]


@pytest.mark.parametrize("status, headers, body", [
    (400, {}, {"__type": "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException", "message": "x"}),
    (400, {}, {"__type": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.coral.availability/"}),
    (400, {"x-amzn-ErrorType": "ValidationException:http://internal.amazon.com/"},
     {"__type": "com.amazon.coral.availability#ThrottlingException"}),  # header and body disagree: the body wins
    (400, {"x-amzn-ErrorType": "AccessDeniedException"}, {"__type": "ResourceNotFoundException"}),
    (500, {}, {"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError", "message": "x"}),
    (400, {}, {"__type": "UserNotFoundException", "message": "User does not exist."}),
])
def test_error_codes_are_read_as_botocore_reads_them(status, headers, body):
    data = json.dumps(body).encode()
    assert aws_json._error_code(headers.get("x-amzn-ErrorType"), data, status) == _botocore_code(status, headers, data)


def test_a_throttling_type_with_a_url_suffix_is_retried():
    data = json.dumps({"__type": "ThrottlingException:http://internal.amazon.com/"}).encode()
    error = aws_json.AwsError(aws_json._error_code(None, data, 400), 400)
    assert error.code == "ThrottlingException" and aws_json._retryable(error)


# --- the signed path -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "", "/prefix//", "/a/./b/../c", "/a//b/", "/..", "/a/b/..", "/~user/x%20y",
                                  "/aws/ddb/"])
def test_signed_path_is_normalised_like_botocores(path):
    url = "https://aws.internal.example" + path
    body = b'{"TableName":"t"}'
    credentials = aws_json.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    headers = {"Host": "aws.internal.example", "Content-Type": "application/x-amz-json-1.0",
               "X-Amz-Target": "DynamoDB_20120810.GetItem"}
    ours = aws_json.sign_v4(method="POST", url=url, headers=headers, body=body, credentials=credentials,
                            region="eu-west-1", service="dynamodb", now=NOW)
    assert ours["Authorization"] == botocore_authorization("POST", url, headers, body, credentials, "eu-west-1",
                                                           "dynamodb")


def test_service_models_name_the_operations_we_send():
    """Target prefixes and JSON versions are botocore's (service-2.json metadata), and the operations exist."""
    session = botocore.session.get_session()
    for service, ours, operations in (("secretsmanager", SECRETS_MANAGER, ["GetSecretValue"]),
                                      ("dynamodb", DYNAMODB, ["GetItem", "PutItem"]),
                                      ("cognito-idp", COGNITO_USER_POOLS, ["AdminGetUser"])):
        model: ServiceModel = session.get_service_model(service)
        assert model.metadata["targetPrefix"] == ours.target_prefix
        assert model.metadata["jsonVersion"] == ours.json_version
        assert model.signing_name == ours.signing_name
        for operation in operations:
            assert model.operation_model(operation).http["method"] == "POST"
