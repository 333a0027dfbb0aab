"""A small client for the AWS JSON-protocol operations the portal function needs: Secrets Manager
GetSecretValue, DynamoDB GetItem/PutItem and Cognito AdminGetUser. Signature Version 4 over the standard
library's http.client (http_pool.py).

Why not boto3 here: importing boto3 and creating two clients costs more CPU than the rest of a cold start
(`make bench` prints it: "boto3 alone"), for operations whose wire format is one signed JSON POST each. The
rotation function, the pre-traffic hook and the admin command keep using boto3.

What it does, like botocore's "standard" retry mode: short timeouts, at most 3 attempts, with jittered
backoff, for throttling, 5xx, timeouts, dropped connections and a DynamoDB CRC32 mismatch. Endpoints follow
AWS_ENDPOINT_URL_<SERVICE> / AWS_ENDPOINT_URL (how tests and the local stack point it at moto) and
AWS_USE_FIPS_ENDPOINT. Credentials come from the environment (always the case in Lambda), else from
botocore's credential chain (a developer's profile), imported only then.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import random
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from portal_gateway.aws.endpoints import (  # noqa: F401 - re-exported: the services are named through this module
    COGNITO_USER_POOLS,
    DYNAMODB,
    SECRETS_MANAGER,
    EndpointError,
    Service,
    endpoint_for,
)
from portal_gateway.http_pool import POOL, HttpFailure
from portal_gateway.tracing import AWS_SERVICE_NAMES

USER_AGENT = "stripe-portal-gateway"
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled",
    "SlowDown", "PriorRequestNotComplete",
})
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure",
                             "ServiceUnavailable"})


class AwsError(Exception):
    """AWS answered with an error. `code` is AWS's error code (e.g. ConditionalCheckFailedException)."""

    def __init__(self, code: str, status: int):
        super().__init__(f"{code} (http {status})")
        self.code, self.status = code, status


class AwsUnreachable(AwsError):
    """No usable answer: connection refused or dropped, timeout, garbage, no region or no credentials."""

    def __init__(self, reason: str):
        super().__init__(reason, 0)


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None


def credentials_from_environment() -> Credentials | None:
    access_key, secret_key = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret_key:
        return None
    return Credentials(access_key, secret_key, os.environ.get("AWS_SESSION_TOKEN") or None)


_botocore_chain: Any = None  # botocore's (refreshing) credentials, resolved once per process when needed


def default_credentials() -> Credentials:
    """The environment's credentials (Lambda sets them), else botocore's chain (profiles, SSO, IMDS)."""
    global _botocore_chain
    found = credentials_from_environment()
    if found:
        return found
    try:
        if _botocore_chain is None:  # resolving the chain reads config files: once, not per call
            import botocore.session  # deferred: only outside Lambda, e.g. `make run` against a real account

            _botocore_chain = botocore.session.get_session().get_credentials()
        frozen = _botocore_chain.get_frozen_credentials() if _botocore_chain else None
    except Exception as exc:  # noqa: BLE001 - any failure here means "no credentials"
        raise AwsUnreachable(f"no AWS credentials ({type(exc).__name__})") from None
    if frozen is None:
        raise AwsUnreachable("no AWS credentials")
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token)


def forget_credentials() -> None:
    """Drop the credentials resolved through botocore's chain (SnapStart: Lambda hands a SnapStart function its
    credentials through the container endpoint, which that chain reads; what init resolved, the rehearsal's signed
    requests included, must not be in the snapshot, nor be used after a restore)."""
    global _botocore_chain
    _botocore_chain = None


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def sign_v4(*, method: str, url: str, headers: dict[str, str], body: bytes, credentials: Credentials,
            region: str, service: str, now: datetime.datetime) -> dict[str, str]:
    """Return `headers` plus X-Amz-Date, X-Amz-Security-Token and Authorization (AWS Signature Version 4).

    Every header given is signed; the caller passes only headers it sends verbatim (Host included).
    """
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    signed = {**headers, "X-Amz-Date": amz_date}
    if credentials.token:
        signed["X-Amz-Security-Token"] = credentials.token
    canonical_headers = sorted((name.lower(), " ".join(str(value).split())) for name, value in signed.items())
    signed_names = ";".join(name for name, _ in canonical_headers)
    canonical_request = "\n".join([
        method,
        quote(remove_dot_segments(urlsplit(url).path), safe="/~"),
        "",  # no query string: JSON-protocol requests carry everything in the body
        "".join(f"{name}:{value}\n" for name, value in canonical_headers),
        signed_names,
        hashlib.sha256(body).hexdigest(),
    ])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    key = _hmac(f"AWS4{credentials.secret_key}".encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    signed["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
                               f"SignedHeaders={signed_names}, Signature={signature}")
    return signed


def remove_dot_segments(path: str) -> str:
    """The canonical path as botocore signs it: RFC 3986 dot segments removed, and (AWS's own rule)
    consecutive slashes collapsed."""
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and segments else ""
    return first + "/".join(segments) + last


class JsonApi(Protocol):
    """What the stores need of a client: one JSON-protocol operation (the CLI gives boto3's behind it)."""

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]: ...


class AwsJsonClient:
    """Calls one service's JSON-protocol operations: `call("GetItem", {...})` returns the decoded answer or
    raises AwsError (an error answer) / AwsUnreachable (no answer)."""

    def __init__(self, service: Service, region: str | None = None, *, connect_timeout: float = 2,
                 read_timeout: float = 3, max_attempts: int = 3,
                 credentials: Callable[[], Credentials] = default_credentials,
                 sleep: Callable[[float], None] = time.sleep):
        self.service = service
        self._region = region
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._max_attempts = max_attempts
        self._credentials = credentials
        self._sleep = sleep

    @property
    def region(self) -> str:
        region = self._region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if not region:
            raise AwsUnreachable("no AWS region (set AWS_REGION)")
        return region

    def endpoint(self) -> str | None:
        """The URL calls go to, or None when there is none (no region, unknown partition)."""
        try:
            return endpoint_for(self.service, self.region)
        except (EndpointError, AwsUnreachable):
            return None

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        region = self.region
        try:
            url = endpoint_for(self.service, region)
        except EndpointError as exc:
            raise AwsUnreachable(f"no endpoint: {exc}") from None
        body = json.dumps(params, separators=(",", ":")).encode("utf-8")
        for attempt in range(1, self._max_attempts + 1):
            try:
                return self._attempt(operation, url, region, body)
            except AwsError as error:
                if attempt == self._max_attempts or not _retryable(error):
                    raise
            # Jittered exponential backoff, kept short: the caller is a person waiting for a redirect.
            self._sleep(random.uniform(0, min(0.5, 0.05 * 2 ** attempt)))  # nosec B311 - backoff jitter, not crypto
        raise AssertionError("unreachable")

    def _attempt(self, operation: str, url: str, region: str, body: bytes) -> dict[str, Any]:
        headers = {
            "Host": urlsplit(url).netloc,
            "Content-Type": f"application/x-amz-json-{self.service.json_version}",
            "X-Amz-Target": f"{self.service.target_prefix}.{operation}",
        }
        headers = sign_v4(method="POST", url=url, headers=headers, body=body, credentials=self._credentials(),
                          region=region, service=self.service.signing_name, now=datetime.datetime.now(datetime.UTC))
        try:
            response = POOL.request("POST", url, body=body, headers={**headers, "User-Agent": USER_AGENT},
                                    connect_timeout=self._connect_timeout, read_timeout=self._read_timeout,
                                    dependency=AWS_SERVICE_NAMES.get(self.service.signing_name,
                                                                     self.service.signing_name),
                                    operation=operation)
        except HttpFailure as failure:
            raise AwsUnreachable(failure.kind) from None
        data = response.data
        expected_crc = response.headers.get("x-amz-crc32")
        if expected_crc is not None and expected_crc.isdigit() and int(expected_crc) != zlib.crc32(data):
            raise AwsUnreachable("CRC32 mismatch")  # a corrupted answer: retried, like botocore does
        if 200 <= response.status < 300:
            try:
                return json.loads(data) if data else {}
            except ValueError:
                raise AwsUnreachable("undecodable answer") from None
        raise AwsError(_error_code(response.headers.get("x-amzn-errortype"), data, response.status),
                       response.status)


_XML_CODE = re.compile(rb"<Code>([A-Za-z0-9.]{1,100})</Code>")


def _error_code(header: str | None, data: bytes, status: int) -> str:
    """The error code as botocore's JSON parser reads it: the body's "__type", cut at ":" (a documentation
    URL may follow) and after "#" ("com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException").
    Only without one: the x-amzn-ErrorType header, then an XML <Code> (some front ends, and moto's IAM
    checks, answer in XML), then "Http<status>" where botocore would give the bare status."""
    code = ""
    try:
        body = json.loads(data) if data else {}
        if isinstance(body, dict) and isinstance(body.get("__type"), str):
            code = body["__type"]
    except (ValueError, UnicodeDecodeError):
        pass
    if not code:
        code = header or ""
    if not code:
        found = _XML_CODE.search(data)
        code = found.group(1).decode() if found else ""
    return code.split(":", 1)[0].rsplit("#", 1)[-1] or f"Http{status}"


def _retryable(error: AwsError) -> bool:
    return (isinstance(error, AwsUnreachable) or error.status >= 500 or error.code in THROTTLING_CODES
            or error.code in TRANSIENT_CODES)
