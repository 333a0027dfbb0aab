"""A small client for the Stripe API calls the portal function makes (at most three per request), over the
keep-alive connections the AWS client uses too (http_pool.py, standard library).

Why not stripe-python here: importing it (with requests and its helpers) costs more CPU than the rest of a
cold start, several hundred milliseconds at Lambda's CPU share for 256 MB (`make bench`), for a handful of
form-encoded calls. It mirrors stripe-python 16.1 where that matters: the API version it speaks, the
bracket form encoding, the error classes (by the same names, for metrics), and the retry rule (connection
errors, `Stripe-Should-Retry`, 409, 5xx; an idempotency key on every POST so a retry never duplicates).
Tests hold its requests to stripe-python's parameter types and compare its encoding with stripe-python's.
The admin command and the rotation and pre-traffic checks keep using stripe-python (key_check.py).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from . import __version__
from .http_pool import POOL, HttpFailure

STRIPE_API_VERSION = "2026-10-28.endive"  # what stripe-python 16.1 sends (a test keeps them equal)
API_BASE = "https://api.stripe.com"
INITIAL_RETRY_DELAY, MAX_RETRY_DELAY = 0.5, 5.0  # stripe-python's


class StripeApiError(Exception):
    """Stripe answered with an error, or did not answer. `kind` is stripe-python's class name for it
    (AuthenticationError, PermissionError, InvalidRequestError, IdempotencyError, RateLimitError, CardError,
    APIError, APIConnectionError); the message is Stripe's and is never logged or shown."""

    def __init__(self, kind: str, *, http_status: int | None = None, code: str | None = None,
                 param: str | None = None, request_id: str | None = None, message: str = ""):
        super().__init__(kind)
        self.kind, self.http_status, self.code, self.param = kind, http_status, code, param
        self.request_id = request_id
        self.stripe_message = message  # read to classify the error only; it may echo input, so never logged


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
        encoded = encode_form(params or {})
        url = f"{self.api_base}{quote(path)}"
        headers = {"Authorization": f"Bearer {api_key}", "Stripe-Version": STRIPE_API_VERSION,
                   "User-Agent": f"stripe-portal-gateway/{__version__}", "Accept": "application/json"}
        body = None
        if method == "POST":
            body = encoded.encode("utf-8")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            # As stripe-python does when it may retry: a retried POST is replayed by Stripe, never run twice.
            headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        elif encoded:
            url = f"{url}?{encoded}"
        for attempt in range(self._retries + 1):
            try:
                response = POOL.request(method, url, body=body, headers=headers,
                                        connect_timeout=self._connect_timeout, read_timeout=self._read_timeout)
            except HttpFailure:
                if attempt < self._retries:
                    self._backoff(attempt + 1)
                    continue
                raise StripeApiError("APIConnectionError") from None
            if 200 <= response.status < 300:
                try:
                    return json.loads(response.data)
                except ValueError:
                    raise StripeApiError("APIError", http_status=response.status) from None
            if attempt < self._retries and _should_retry(response):
                self._backoff(attempt + 1)
                continue
            raise _error(response)
        raise AssertionError("unreachable")

    def with_key(self, api_key: str) -> Callable[..., dict[str, Any]]:
        """`call(method, path, params=None)` with one key: what the key checks and the support commands use."""
        return lambda method, path, params=None: self.request(method, path, params, api_key=api_key)

    def _backoff(self, retry: int) -> None:
        delay = min(INITIAL_RETRY_DELAY * 2 ** (retry - 1), MAX_RETRY_DELAY)
        delay *= 0.5 * (1 + random.uniform(0, 1))  # nosec B311 - backoff jitter, not crypto
        self._sleep(max(INITIAL_RETRY_DELAY, delay))


def _should_retry(response) -> bool:
    advice = response.headers.get("stripe-should-retry")
    if advice in ("true", "false"):
        return advice == "true"
    return response.status == 409 or response.status >= 500


def _error(response) -> StripeApiError:
    try:
        error = json.loads(response.data).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    if not isinstance(error, dict):
        error = {}
    return StripeApiError(error_kind(response.status, error), http_status=response.status, code=error.get("code"),
                          param=error.get("param"), request_id=response.headers.get("request-id"),
                          message=str(error.get("message") or ""))
