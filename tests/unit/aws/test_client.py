"""The small AWS JSON-protocol client: signatures checked against botocore's signer (the reference moto and
AWS agree with), endpoints, error codes, and retries against a real loopback HTTP server."""

from __future__ import annotations

import datetime
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import botocore.auth
import botocore.credentials
import pytest
from botocore.awsrequest import AWSRequest
from portal_gateway.aws import client as aws_json
from portal_gateway.aws.client import (
    DYNAMODB,
    SECRETS_MANAGER,
    AwsError,
    AwsJsonClient,
    AwsUnreachable,
    Credentials,
    default_credentials,
    endpoint_for,
    sign_v4,
)

NOW = datetime.datetime(2026, 11, 25, 9, 30, 5, tzinfo=datetime.UTC)
CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token/with+chars=")


def botocore_authorization(method, url, headers, body, credentials, region, service):
    """What botocore's SigV4 signer says for the same request at the same instant."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    signer = botocore.auth.SigV4Auth(
        botocore.credentials.Credentials(credentials.access_key, credentials.secret_key, credentials.token),
        service, region)
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda: NOW
    try:
        signer.add_auth(request)
    finally:
        botocore.auth.get_current_datetime = original
    return request.headers["Authorization"]


@pytest.mark.parametrize("url, service, region, credentials, body", [
    ("https://dynamodb.us-east-1.amazonaws.com/", "dynamodb", "us-east-1", CREDENTIALS,
     b'{"TableName":"t","Key":{"pk":{"S":"test#eu-west-1_x#sub"}}}'),
    ("https://secretsmanager.eu-west-1.amazonaws.com/", "secretsmanager", "eu-west-1",
     Credentials("AKIAOTHER", "other/secret+key"), b'{"SecretId":"arn:aws:secretsmanager:eu-west-1:1:secret:s"}'),
    ("http://127.0.0.1:4566/", "dynamodb", "ap-southeast-2", CREDENTIALS, "{\"name\":\"Zoë 😀\"}".encode()),
    ("https://proxy.example.com/aws/ddb", "dynamodb", "us-gov-west-1", CREDENTIALS, b""),
])
def test_signature_matches_botocore(url, service, region, credentials, body):
    headers = {"Host": url.split("/")[2], "Content-Type": "application/x-amz-json-1.0",
               "X-Amz-Target": "DynamoDB_20120810.GetItem"}
    ours = sign_v4(method="POST", url=url, headers=headers, body=body, credentials=credentials,
                   region=region, service=service, now=NOW)
    assert ours["Authorization"] == botocore_authorization("POST", url, headers, body, credentials, region, service)
    assert ours["X-Amz-Date"] == "20261125T093005Z"
    assert ours.get("X-Amz-Security-Token") == credentials.token


def test_signature_covers_body_and_target():
    headers = {"Host": "dynamodb.us-east-1.amazonaws.com", "X-Amz-Target": "DynamoDB_20120810.GetItem"}
    sign = lambda h, b: sign_v4(method="POST", url="https://dynamodb.us-east-1.amazonaws.com/", headers=h,  # noqa: E731
                                body=b, credentials=CREDENTIALS, region="us-east-1", service="dynamodb",
                                now=NOW)["Authorization"]
    assert sign(headers, b"{}") != sign(headers, b'{"a":1}')
    assert sign(headers, b"{}") != sign({**headers, "X-Amz-Target": "DynamoDB_20120810.PutItem"}, b"{}")


# --- endpoints ----------------------------------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                 "AWS_USE_FIPS_ENDPOINT", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(aws_json, "_botocore_chain", None)  # each test resolves the chain afresh
    return monkeypatch


def test_endpoints(clean_env):
    assert endpoint_for(DYNAMODB, "eu-west-1") == "https://dynamodb.eu-west-1.amazonaws.com/"
    assert endpoint_for(SECRETS_MANAGER, "cn-north-1") == "https://secretsmanager.cn-north-1.amazonaws.com.cn/"
    clean_env.setenv("AWS_USE_FIPS_ENDPOINT", "true")
    assert endpoint_for(DYNAMODB, "us-east-2") == "https://dynamodb-fips.us-east-2.amazonaws.com/"
    clean_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    clean_env.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:6000/")
    assert endpoint_for(DYNAMODB, "us-east-2") == "http://127.0.0.1:6000/"  # the service's own wins
    assert endpoint_for(SECRETS_MANAGER, "us-east-2") == "http://127.0.0.1:5000/"
    clean_env.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert endpoint_for(SECRETS_MANAGER, "us-east-2") == "https://secretsmanager-fips.us-east-2.amazonaws.com/"


# --- a scripted AWS on loopback -------------------------------------------------------------------------------------
class ScriptedAws:
    """Answers each POST with the next scripted (status, headers, body); records what it received."""

    def __init__(self):
        self.script: list[tuple[int, dict, bytes]] = []
        self.received: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                status, headers, payload = owner.script.pop(0) if owner.script else (200, {}, b"{}")
                if status == 0:  # drop the connection without answering
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def error(self, status: int, code: str, *, header: bool = True) -> tuple[int, dict, bytes]:
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": "no"}).encode()
        return status, ({"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/"} if header else {}), body

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def aws(clean_env):
    server = ScriptedAws()
    clean_env.setenv("AWS_ENDPOINT_URL", server.url)
    clean_env.setenv("AWS_REGION", "eu-west-1")
    clean_env.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    clean_env.setenv("AWS_SESSION_TOKEN", "the-session-token")
    yield server
    server.close()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def client(sleeps):
    return AwsJsonClient(DYNAMODB, sleep=sleeps.append)


def test_a_signed_call_sends_json_with_target_and_signature(aws, client):
    aws.script.append((200, {}, b'{"Item":{"customer_id":{"S":"cus_1"}}}'))
    answer = client.call("GetItem", {"TableName": "t", "Key": {"pk": {"S": "k"}}})
    assert answer == {"Item": {"customer_id": {"S": "cus_1"}}}
    sent = aws.received[0]
    assert json.loads(sent["body"]) == {"TableName": "t", "Key": {"pk": {"S": "k"}}}
    assert sent["headers"]["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert sent["headers"]["content-type"] == "application/x-amz-json-1.0"
    assert sent["headers"]["x-amz-security-token"] == "the-session-token"
    assert "Credential=AKIDEXAMPLE/" in sent["headers"]["authorization"]
    assert "/eu-west-1/dynamodb/aws4_request" in sent["headers"]["authorization"]


def test_throttling_and_5xx_are_retried_then_succeed(aws, client, sleeps):
    aws.script += [aws.error(400, "ThrottlingException"), aws.error(503, "ServiceUnavailable", header=False),
                   (200, {}, b'{"ok":true}')]
    assert client.call("GetItem", {}) == {"ok": True}
    assert len(aws.received) == 3 and len(sleeps) == 2
    assert all(0 <= pause <= 0.5 for pause in sleeps)


def test_retries_stop_after_three_attempts(aws, client):
    aws.script += [aws.error(500, "InternalServerError")] * 5
    with pytest.raises(AwsError) as caught:
        client.call("PutItem", {})
    assert caught.value.code == "InternalServerError" and caught.value.status == 500
    assert len(aws.received) == 3


@pytest.mark.parametrize("code", ["ConditionalCheckFailedException", "AccessDeniedException",
                                  "ResourceNotFoundException", "ValidationException"])
def test_client_errors_are_not_retried_and_keep_their_code(aws, client, code):
    aws.script.append(aws.error(400, code))
    with pytest.raises(AwsError) as caught:
        client.call("PutItem", {})
    assert caught.value.code == code and not isinstance(caught.value, AwsUnreachable)
    assert len(aws.received) == 1


def test_error_code_from_the_body_when_no_header(aws, client):
    aws.script.append(aws.error(400, "ConditionalCheckFailedException", header=False))
    with pytest.raises(AwsError) as caught:
        client.call("PutItem", {})
    assert caught.value.code == "ConditionalCheckFailedException"


def test_a_corrupted_answer_is_retried(aws, client):
    good = b'{"Item":{}}'
    aws.script += [(200, {"x-amz-crc32": str(zlib.crc32(good) ^ 1)}, good),
                   (200, {"x-amz-crc32": str(zlib.crc32(good))}, good)]
    assert client.call("GetItem", {}) == {"Item": {}}
    assert len(aws.received) == 2


def test_dropped_connections_and_garbage_are_unreachable(aws, client):
    aws.script += [(0, {}, b""), (200, {}, b"<html>"), (0, {}, b"")]
    with pytest.raises(AwsUnreachable):
        client.call("GetItem", {})
    assert len(aws.received) == 3


def test_refused_connection_is_unreachable(clean_env, sleeps):
    clean_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    clean_env.setenv("AWS_ACCESS_KEY_ID", "a")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "b")
    with pytest.raises(AwsUnreachable):
        AwsJsonClient(SECRETS_MANAGER, "us-east-1", sleep=sleeps.append).call("GetSecretValue", {})
    assert len(sleeps) == 2


def test_no_region_is_a_clear_failure(clean_env):
    with pytest.raises(AwsUnreachable, match="AWS_REGION"):
        AwsJsonClient(DYNAMODB).call("GetItem", {})


def test_credentials_fall_back_to_the_shared_credentials_file(clean_env, tmp_path):
    # Outside Lambda (e.g. `make run` against a real account) a developer's profile is used.
    credentials_file = tmp_path / "credentials"
    credentials_file.write_text("[dev]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = profile-secret\n")
    clean_env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials_file))
    clean_env.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    clean_env.setenv("AWS_PROFILE", "dev")
    assert default_credentials() == Credentials("AKIAPROFILE", "profile-secret", None)
    credentials_file.unlink()  # resolved once per process, not re-read on every call
    assert default_credentials() == Credentials("AKIAPROFILE", "profile-secret", None)
    clean_env.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    assert default_credentials().access_key == "AKIAENV"  # the environment (Lambda's) comes first


def test_no_credentials_anywhere_is_unreachable(clean_env, tmp_path):
    clean_env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    clean_env.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    clean_env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(AwsUnreachable, match="no AWS credentials"):
        default_credentials()


def test_the_portal_function_path_never_imports_boto3():
    import subprocess
    import sys

    probe = ("import sys; import portal_gateway.service; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": aws_json.__file__.rsplit("/portal_gateway/", 1)[0],
                              "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"
