"""A small client for the Stripe API calls the portal function makes (at most three per request), over the
keep-alive connections the AWS client uses too (http_pool.py, standard library).

Why not stripe-python here: importing it (with requests and its helpers) costs more CPU than the rest of a
cold start, several hundred milliseconds at Lambda's CPU share for 256 MB (`make bench`), for a handful of
form-encoded calls. It mirrors stripe-python 16.1 where that matters: the API version it speaks, the
bracket form encoding, the error classes (by the same names, for metrics), and the retry rule (connection
errors, `Stripe-Should-Retry`, 409, 5xx; an idempotency key on every POST so a retry never duplicates).
Tests hold its requests to stripe-python's parameter types and compare its encoding with stripe-python's.
The key checks (checks/stripe_key_check.py) and the operator's command use it too.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from portal_gateway import __version__
from portal_gateway.http_pool import POOL, HttpFailure, remaining_budget

STRIPE_API_VERSION = "2026-10-28.endive"  # what stripe-python 16.1 sends (a test keeps them equal)
API_BASE = "https://api.stripe.com"
INITIAL_RETRY_DELAY, MAX_RETRY_DELAY = 0.5, 5.0  # stripe-python's
# While another request holds the idempotency key (409 idempotency_key_in_use), its result is coming: ask again
# every so often until it is saved (then Stripe replays it) or the request's time budget runs out.
IN_FLIGHT_POLL_DELAY = 0.25
MAX_IN_FLIGHT_POLLS = 40  # 10 s: the bound when no time budget is set (the admin command)


class StripeApiError(Exception):
    """Stripe answered with an error, or did not answer. `kind` is stripe-python's class name for it
    (AuthenticationError, PermissionError, InvalidRequestError, IdempotencyError, RateLimitError, CardError,
    APIError, APIConnectionError); the message is Stripe's and is never logged or shown. `replayed`: Stripe
    answered from an idempotency key's saved result (`Idempotent-Replayed: true`), so asking again with the
    same key can only give the same answer. `timed_out`: the request's time budget ran out."""

    def __init__(self, kind: str, *, http_status: int | None = None, code: str | None = None,
                 param: str | None = None, request_id: str | None = None, message: str = "",
                 replayed: bool = False, timed_out: bool = False):
        super().__init__(kind)
        self.kind, self.http_status, self.code, self.param = kind, http_status, code, param
        self.request_id = request_id
        self.stripe_message = message  # read to classify the error only; it may echo input, so never logged
        self.replayed, self.timed_out = replayed, timed_out


@dataclass(frozen=True)
class StripeResult:
    data: dict[str, Any]
    replayed: bool  # Stripe's `Idempotent-Replayed: true`: the saved result of an earlier request with this key
    date_ms: int | None = None  # Stripe's clock when it answered (its `Date` header: whole seconds), in ms


def http_date_ms(value: str | None) -> int | None:
    """An HTTP `Date` header (RFC 9110 IMF-fixdate) as Unix milliseconds; None if absent or unreadable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp()) * 1000


def path_of(*segments: str) -> str:
    """An API path with each id escaped whole: `cus_1/../..` stays one segment, never walks the path."""
    return "/" + "/".join(quote(segment, safe="") for segment in segments)


def error_kind(status: int, error: dict) -> str:
    """stripe-python's mapping from an error answer to an exception class (specific_v1_api_error)."""
    if status == 429 or (status == 400 and error.get("code") == "rate_limit"):
        return "RateLimitError"
    if status in (400, 404):
        return "IdempotencyError" if error.get("type") == "idempotency_error" else "InvalidRequestError"
    return {401: "AuthenticationError", 402: "CardError", 403: "PermissionError"}.get(status, "APIError")


def encode_form(params: dict[str, Any]) -> str:
    """Stripe's bracket encoding: metadata[a]=1, expand[0]=x, flow_data[type]=y; None is left out."""
    pairs: list[tuple[str, str]] = []

    def add(prefix: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                add(f"{prefix}[{key}]" if prefix else str(key), item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                add(f"{prefix}[{index}]", item)
        elif isinstance(value, bool):
            pairs.append((prefix, "true" if value else "false"))
        else:
            pairs.append((prefix, str(value)))

    add("", params)
    return urlencode(pairs)


class StripeHttp:
    def __init__(self, *, api_base: str | None = None, timeout_seconds: float = 4.0, max_network_retries: int = 1,
                 sleep: Callable[[float], None] = time.sleep):
        self.api_base = (api_base or API_BASE).rstrip("/")
        self._connect_timeout, self._read_timeout = min(2.0, timeout_seconds), timeout_seconds
        self._retries = max_network_retries
        self._sleep = sleep

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, *, api_key: str,
                idempotency_key: str | None = None) -> dict[str, Any]:
        return self.exchange(method, path, params, api_key=api_key, idempotency_key=idempotency_key).data

    def exchange(self, method: str, path: str, params: dict[str, Any] | None = None, *, api_key: str,
                 idempotency_key: str | None = None) -> StripeResult:
        """The answer and whether Stripe replayed it. Retries as stripe-python does, within the time budget;
        a replayed failure is not retried (the same key can only replay it again)."""
        v2 = path.startswith("/v2/")  # v2 APIs take JSON bodies (their queries stay form-encoded)
        encoded = encode_form(params or {}) if not (v2 and method == "POST") else ""
        url = f"{self.api_base}{quote(path, safe='/%')}"  # ids in it come escaped (path_of)
        headers = {"Authorization": f"Bearer {api_key}", "Stripe-Version": STRIPE_API_VERSION,
                   "User-Agent": f"stripe-portal-gateway/{__version__}", "Accept": "application/json"}
        body = None
        if method == "POST":
            body = json.dumps(params or {}).encode("utf-8") if v2 else encoded.encode("utf-8")
            headers["Content-Type"] = "application/json" if v2 else "application/x-www-form-urlencoded"
            # As stripe-python does when it may retry: a retried POST is replayed by Stripe, never run twice.
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        elif encoded:
            url = f"{url}?{encoded}"
        retries = polls = 0
        while True:
            try:
                response = POOL.request(method, url, body=body, headers=headers,
                                        connect_timeout=self._connect_timeout, read_timeout=self._read_timeout,
                                        dependency="Stripe")
            except HttpFailure as failure:
                if retries < self._retries and self._backoff(retries + 1):
                    retries += 1
                    continue
                raise StripeApiError("APIConnectionError", timed_out=_out_of_time(failure)) from None
            replayed = response.headers.get("idempotent-replayed") == "true"
            if 200 <= response.status < 300:
                try:
                    return StripeResult(json.loads(response.data), replayed, http_date_ms(response.headers.get("date")))
                except ValueError:
                    raise StripeApiError("APIError", http_status=response.status) from None
            error = _error(response, replayed)
            if error.code == "idempotency_key_in_use":
                # Not a failure: a double click whose twin is still being served. Its result will be replayed.
                if polls < MAX_IN_FLIGHT_POLLS and self._wait(IN_FLIGHT_POLL_DELAY):
                    polls += 1
                    continue
                raise StripeApiError("APIConnectionError", http_status=409, code=error.code, timed_out=True)
            if not replayed and retries < self._retries and _should_retry(response) and self._backoff(retries + 1):
                retries += 1
                continue
            raise error

    def with_key(self, api_key: str) -> KeyedStripe:
        """`call(method, path, params=None)` with one key: what the key checks and the support commands use."""
        return KeyedStripe(self, api_key)

    def _backoff(self, retry: int) -> bool:
        delay = min(INITIAL_RETRY_DELAY * 2 ** (retry - 1), MAX_RETRY_DELAY)
        delay *= 0.5 * (1 + random.uniform(0, 1))  # nosec B311 - backoff jitter, not crypto
        return self._wait(max(INITIAL_RETRY_DELAY, delay))

    def _wait(self, delay: float) -> bool:
        """Sleep before asking again, unless the time budget would be gone by then (False: do not retry)."""
        left = remaining_budget()
        if left is not None and left < delay + MIN_ATTEMPT_SECONDS:
            return False
        self._sleep(delay)
        return True


MIN_ATTEMPT_SECONDS = 0.2  # no retry is started with less time than this left in the budget


def _out_of_time(failure: HttpFailure) -> bool:
    left = remaining_budget()
    return failure.kind == "ReadTimeoutError" and left is not None and left <= 0.05


def _should_retry(response) -> bool:
    advice = response.headers.get("stripe-should-retry")
    if advice in ("true", "false"):
        return advice == "true"
    return response.status == 409 or response.status >= 500


def _error(response, replayed: bool = False) -> StripeApiError:
    try:
        error = json.loads(response.data).get("error")
    except (ValueError, AttributeError):
        error = None
    request_id = response.headers.get("request-id")
    if not isinstance(error, dict):
        # Not Stripe's JSON (a proxy's or load balancer's HTML page): whatever its status, Stripe did not judge
        # the key or the request, so it is a provider failure, never "the key was rejected".
        return StripeApiError("APIError", http_status=response.status, request_id=request_id, replayed=replayed)
    return StripeApiError(error_kind(response.status, error), http_status=response.status, code=error.get("code"),
                          param=error.get("param"), request_id=request_id,
                          message=str(error.get("message") or ""), replayed=replayed)


class KeyedStripe:
    """Stripe with one key: `call(method, path, params=None)` answers the data; `exchange` the whole result."""

    def __init__(self, http: StripeHttp, api_key: str):
        self._http = http
        self._api_key = api_key

    def __call__(self, method: str, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._http.request(method, path, params, api_key=self._api_key)

    def exchange(self, method: str, path: str, params: dict[str, Any] | None = None) -> StripeResult:
        return self._http.exchange(method, path, params, api_key=self._api_key)
