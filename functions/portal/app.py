"""HTTP function: GET/POST /portal, GET /billing/status and GET /health behind an API Gateway HTTP API (payload 2.0).

Thin by design: parse the request, call the core once, map errors to HTTP in one place.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from portal_gateway.config import ConfigError, Settings
from portal_gateway.errors import (
    AuthenticationRequired,
    BadRequest,
    GatewayError,
    InvalidToken,
    PayloadTooLarge,
    StripeKeyUnavailable,
    TokenInQueryString,
    UnsupportedMediaType,
    user_message,
)
from portal_gateway.http_pool import request_budget
from portal_gateway.metrics import count_event
from portal_gateway.tracing import TIMINGS
from portal_gateway.web import answers as responses

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# /health and refused requests publish no metric; that is expected, not worth a warning per request.
warnings.filterwarnings("ignore", message="No application metrics to publish")
SERVICE = "stripe-portal-gateway"  # POWERTOOLS_SERVICE_NAME in the template says the same
METRICS_NAMESPACE = "StripePortalGateway"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
copy_config_to_registered_loggers(source_logger=logger, include={"portal_gateway"})

try:
    SETTINGS = Settings.from_env()
except ConfigError as exc:  # fail fast at start-up, naming the variable
    logger.error("Invalid configuration", extra={"problem": str(exc)})
    raise


def _cors() -> CORSConfig | None:
    # Only for fetch() from the listed origins (JSON mode); without ALLOWED_ORIGINS no CORS header is ever sent.
    origins = SETTINGS.allowed_origins
    if not origins:
        return None
    return CORSConfig(allow_origin=origins[0], extra_origins=list(origins[1:]),
                      allow_headers=["Authorization", "Content-Type"], max_age=600, allow_credentials=False)


app = APIGatewayHttpResolver(cors=_cors())

MAX_FORM_BYTES = 16 * 1024
OPTION_NAMES = ("return_to", "locale", "flow")
CHECKOUT_OPTION_NAMES = ("price", "return_to", "cancel_to", "locale")
TOKEN_QUERY_NAMES = frozenset({"id_token", "access_token", "token", "jwt", "authorization", "code_verifier"})
_service = None
_service_lock = threading.Lock()  # Lambda is one request at a time; the local HTTP adapter is not


def portal_service():
    global _service
    with _service_lock:
        if _service is None:
            # Built during init (below), where on-demand Lambda runs at full CPU; here only if that failed.
            from portal_gateway.service import build_service

            _service = build_service(
                SETTINGS,
                count=count,
                # Thread-local: the local HTTP adapter serves requests in parallel threads.
                on_identity=lambda identity: logger.thread_safe_append_keys(cognito_sub=identity.sub),
            )
        return _service


# --- SnapStart (EnableSnapStart) --------------------------------------------------------------------------------------
# The Lambda Python runtime ships snapshot_restore_py; elsewhere (tests, the local stack) the hooks are plain
# functions that tests call. With SnapStart, the service is built during init so the snapshot holds its imports;
# nothing learned at run time (keys, secrets, caches, connections) may be in it or survive a restore.
try:
    from snapshot_restore_py import register_after_restore, register_before_snapshot
except ImportError:
    def register_before_snapshot(hook):
        return hook

    def register_after_restore(hook):
        return hook


@register_before_snapshot
def before_snapshot() -> None:
    if _service is not None:
        _service.forget_state()


@register_after_restore
def after_restore() -> None:
    import random

    random.seed()  # every restored copy would otherwise draw the same backoff jitter
    if _service is not None:
        _service.forget_state()  # in case anything ran between init and the snapshot


@app.get("/health")
def health():
    # Says when a deploy step is still to do (the Stripe key not put in yet), naming the step, never a value;
    # the key read is the one the first portal request needs anyway, cached for STRIPE_KEY_TTL_SECONDS.
    return responses.health(portal_service().setup_missing())


@app.get("/portal")
def portal_from_header():
    query = _query()
    headers = app.current_event.headers
    login = portal_service().login
    if not headers.get("authorization") and login is not None and not responses.wants_json(headers.get("accept")):
        return _start_sign_in(login, query)
    token = _bearer_token(headers.get("authorization"))
    return _open_portal(token, query, redirect_status=302)


def _start_sign_in(login, query: dict[str, str]):
    """A plain link: no token yet, so send the browser to the Hosted UI and come back to /portal/callback."""
    options = _options(query)
    portal_service().check_options(options)  # a bad return_to is refused now, not after signing in
    authorize_url, cookie_value = login.start(return_to=options.return_to, flow=options.flow, locale=options.locale,
                                              api_domain=_api_domain())
    return responses.redirect(authorize_url, 302, cookies=[responses.login_cookie(cookie_value)])


@app.get("/portal/callback")
def portal_callback():
    from portal_gateway.web.sign_in import COOKIE_NAME

    login = portal_service().login
    if login is None:
        return not_found(None)
    try:
        id_token, pending = login.finish(app.current_event.query_string_parameters or {},
                                         _cookie(COOKIE_NAME), api_domain=_api_domain())
        if pending.action == "checkout":
            options = _checkout_options({"price": pending.price, "return_to": pending.return_to,
                                         "cancel_to": pending.cancel_to, "locale": pending.locale})
            url, _ = portal_service().start_checkout(id_token, options, nonce=pending.nonce)
            response = responses.redirect(url, 303)
        else:
            options = _options({"return_to": pending.return_to, "locale": pending.locale, "flow": pending.flow})
            url = portal_service().open_portal(id_token, options, nonce=pending.nonce)
            response = responses.redirect(url, 302)
    except GatewayError as err:
        _log_refusal(err)
        response = responses.error(err, wants_html=True, back_url=SETTINGS.return_url,
                                   message=user_message(err, owner_alerted=SETTINGS.alarms_notify))
    response.cookies.append(responses.clear_login_cookie())  # one use, success or not
    return response


def _api_domain() -> str | None:
    """The domain API Gateway was called on: the callback URL's host when CALLBACK_URL is not set."""
    return app.current_event.request_context.domain_name


def _cookie(name: str) -> str | None:
    for cookie in app.current_event.cookies or []:
        key, _, value = cookie.strip().partition("=")
        if key == name:
            return value
    return None


@app.get("/portal/signout")
def sign_out():
    """Sign out of billing: the service's sign-in cookie goes, and with plain-link sign-in the browser passes
    through the Hosted UI's /logout, which ends its own session (on a shared computer the next person would
    otherwise be signed in as this one), back to an allowed page."""
    query = _query()
    service = portal_service()
    return_url = service.return_policy.choose(query.get("return_to"))
    target = service.login.logout_url(return_url) if service.login is not None else return_url
    return responses.redirect(target, 302, cookies=[responses.clear_login_cookie()])


@app.get("/billing/status")
def billing_status():
    """What the signed-in caller has (subscriptions, entitlements), for a page to show a plan or gate content.
    The token comes in the Authorization header only; the answer is the caller's own, never anyone else's."""
    _query()  # a token in the query string is refused here too
    headers = app.current_event.headers
    status = portal_service().billing_status(_bearer_token(headers.get("authorization")))
    return responses.billing_status(status, headers.get("if-none-match"))


@app.get("/billing/checkout")
def checkout_from_link():
    """Subscribe: a plain link (signed in through the Hosted UI when needed) or fetch() with the token in the
    Authorization header. 303 to Stripe Checkout for the caller's own customer, or to the portal when they
    already subscribe; JSON {"url", "kind"} when asked for JSON."""
    query = _query()
    headers = app.current_event.headers
    login = portal_service().login
    if not headers.get("authorization") and login is not None and not responses.wants_json(headers.get("accept")):
        options = _checkout_options(query)
        lookup_key = portal_service().check_checkout_options(options)  # refused now, not after signing in
        authorize_url, cookie_value = login.start(
            return_to=options.return_to, flow=None, locale=options.locale, api_domain=_api_domain(),
            action="checkout", price=lookup_key, cancel_to=options.cancel_to)
        return responses.redirect(authorize_url, 302, cookies=[responses.login_cookie(cookie_value)])
    return _start_checkout(_bearer_token(headers.get("authorization")), query)


@app.post("/billing/checkout")
def checkout_from_form():
    query = _query()
    form = _form()
    token = _one_token(form)
    return _start_checkout(token, {**query, **{n: v[-1] for n, v in form.items() if n in CHECKOUT_OPTION_NAMES}})


@app.post("/billing/customer-session")
def customer_session():
    """A Stripe Customer Session client secret for the caller's own customer, for an embedded pricing table or
    buy button. fetch() with the token in the Authorization header only; never cached."""
    _query()
    session = portal_service().customer_session(_bearer_token(app.current_event.headers.get("authorization")))
    return responses.customer_session_json(session)


def _checkout_options(params: Mapping[str, str | None]):
    from portal_gateway.billing.purchases import CheckoutOptions

    return CheckoutOptions(price=params.get("price"), return_to=params.get("return_to"),
                           cancel_to=params.get("cancel_to"), locale=params.get("locale"),
                           accept_language=app.current_event.headers.get("accept-language"))


def _start_checkout(token: str, params: dict[str, str]):
    url, kind = portal_service().start_checkout(token, _checkout_options(params))
    if responses.wants_json(app.current_event.headers.get("accept")):
        return responses.portal_url_json(url, kind=kind)
    return responses.redirect(url, 303)


def _one_token(form: dict[str, list[str]]) -> str:
    tokens = form.get("id_token", [])
    if len(tokens) > 1:
        raise BadRequest("Send exactly one id_token.")
    if not tokens or not tokens[0]:
        raise AuthenticationRequired()
    return tokens[0]


@app.post("/portal")
def portal_from_form():
    query = _query()
    form = _form()
    token = _one_token(form)
    options = {name: values[-1] for name, values in form.items() if name in OPTION_NAMES}
    return _open_portal(token, {**query, **options}, redirect_status=303)


def _options(params: Mapping[str, str | None]):
    from portal_gateway.service import PortalOptions

    return PortalOptions(
        return_to=params.get("return_to"),
        locale=params.get("locale"),
        accept_language=app.current_event.headers.get("accept-language"),
        flow=params.get("flow"),
    )


def _open_portal(token: str, params: dict[str, str], *, redirect_status: int):
    headers = app.current_event.headers
    url = portal_service().open_portal(token, _options(params))
    if responses.wants_json(headers.get("accept")):
        return responses.portal_url_json(url)
    return responses.redirect(url, redirect_status)


def _query() -> dict[str, str]:
    query = app.current_event.query_string_parameters or {}
    if TOKEN_QUERY_NAMES.intersection(name.lower() for name in query):
        raise TokenInQueryString()
    return query


def _bearer_token(header: str | None) -> str:
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationRequired()
    return token.strip()


def _form() -> dict[str, list[str]]:
    event = app.current_event
    portal_service().form_origins.check(event.headers.get("origin"), event.headers.get("sec-fetch-site"))
    content_type = (event.headers.get("content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType()
    raw = event.body or ""
    if len(raw) > MAX_FORM_BYTES * 4 // 3 + 4:
        raise PayloadTooLarge()
    try:
        body = base64.b64decode(raw, validate=True) if event.is_base64_encoded else raw.encode("utf-8")
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise BadRequest("The form body could not be read.") from None
    if len(body) > MAX_FORM_BYTES:
        raise PayloadTooLarge()
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                        max_num_fields=20, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("The form body could not be read.") from None


@app.exception_handler(GatewayError)
def gateway_error(err: GatewayError):
    _log_refusal(err)
    return _error_response(err.code, user_message(err, owner_alerted=SETTINGS.alarms_notify), err.title)


def _log_refusal(err: GatewayError) -> None:
    status = responses.status_for(err.code)
    log = logger.error if status >= 500 else logger.info
    log("Request refused", extra={"error_code": err.code, "status": status, "detail": err.log_detail})
    if isinstance(err, InvalidToken):
        count("AuthRejected", reason=err.reason)
    elif status >= 500:
        count("DependencyErrors", code=err.code)
    if isinstance(err, StripeKeyUnavailable):
        count("StripeKeyUnusable")  # alarmed at once: every user is refused until the operator acts


@app.exception_handler(Exception)
def unexpected_error(err: Exception):
    logger.exception("Unexpected error")
    # Also by version: the release's alarm watches the new version alone (a canary's few requests are enough).
    count("UnexpectedErrors", version=os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"))
    return _error_response(GatewayError.code, GatewayError.message)


@app.not_found
def not_found(_err):
    return _error_response("not_found", "There is nothing here.")


def count(name: str, **dimensions: str) -> None:
    """Count one event, in total and, with dimensions, per dimension value (portal_gateway.metrics)."""
    count_event(metrics, METRICS_NAMESPACE, SERVICE, name, 1, **dimensions)


def _error_response(code: str, message: str, title: str = GatewayError.title):
    return responses.error_for(
        code,
        message,
        wants_html=responses.wants_html(app.current_event.headers.get("accept")),
        back_url=SETTINGS.return_url,
        title=title,
    )


# Kept back from the invocation's remaining time for what follows the last outbound call: the answer itself.
ANSWER_RESERVE_SECONDS = 0.5


def outbound_budget(context) -> float | None:
    """Seconds every outbound call of this invocation must end within, from the Lambda context's remaining time,
    so a slow Stripe, AWS or JWKS answer ends in our own 502/503/504 page, never in the platform's timeout."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return max(0.0, remaining() / 1000 - ANSWER_RESERVE_SECONDS)


# The pre-traffic check's signed-in request (checks/release_check.py). It comes only as a direct invocation of
# a version (lambda:InvokeFunction, which only the hook's role may make): API Gateway's events always carry a
# requestContext. The user-facing requests are then rehearsed whole, in memory (priming.py), through the new
# version's own code: a release whose signed-in path fails never gets traffic.
PRE_TRAFFIC_REHEARSAL = "stripe-portal-gateway/pre-traffic-rehearsal"


def lambda_handler(event, context):
    if isinstance(event, dict) and event.get("rehearsal") == PRE_TRAFFIC_REHEARSAL and "requestContext" not in event:
        unexpected = _rehearse_first_request()
        body = json.dumps({"rehearsed": [f"GET {path}" for path, _, _ in REHEARSED_REQUESTS],
                           "unexpected": unexpected})
        return {"statusCode": 500 if unexpected else 200, "headers": {}, "body": body}
    return _api_handler(event, context)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
def _api_handler(event, context):
    logger.thread_safe_clear_keys()  # no cognito_sub left over from the previous request
    TIMINGS.begin(os.environ.get("_X_AMZN_TRACE_ID"))  # set by Lambda per invocation under active tracing
    started = time.perf_counter()
    with request_budget(outbound_budget(context)):
        result = app.resolve(event, context)
    # One line per request, for "why was this click slow": what each dependency took (the dashboard's queries).
    logger.info("Request answered", extra={"route": event.get("routeKey"), "status": result.get("statusCode"),
                                           "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                                           "dependencies": TIMINGS.summary()})
    if SETTINGS.allowed_origins:
        # The CORS headers depend on the request's Origin: a shared cache must not reuse one origin's answer
        # (or a no-CORS answer) for another origin.
        headers = result.setdefault("headers", {})
        vary = [v.strip() for v in headers.get("Vary", "").split(",") if v.strip()]
        if "Origin" not in vary:
            headers["Vary"] = ", ".join([*vary, "Origin"])
    return result


# Init runs unthrottled on on-demand Lambda (up to 10 s), the first request at the memory size's CPU share
# (docs/performance.md). So everything that does not depend on the caller happens here: imports, clients, the
# verifier, the service, and the JWKS and Stripe key the first request needs, within INIT_BUDGET_SECONDS and
# failing soft (the first request fetches again what failed). With SnapStart the snapshot holds all of it but
# the key, which must never be in a snapshot.
INIT_BUDGET_SECONDS = 3.0


INIT_SECONDS: dict[str, float] = {}  # what each step of init took (`make bench` reports them)


def _timed(step: str, run):
    started = time.perf_counter()
    try:
        return run()
    finally:
        INIT_SECONDS[step] = time.perf_counter() - started


def _warm_up() -> dict[str, bool]:
    with request_budget(INIT_BUDGET_SECONDS):
        return portal_service().warm_up(with_secrets=os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "snap-start")


def _initialize() -> None:
    try:
        warmed = _timed("warm_up", _warm_up)
        _timed("route_rehearsal", _rehearse_routes)
        if SETTINGS.init_rehearsal:
            _timed("first_request_rehearsal", _rehearse_first_request)
    except Exception:  # noqa: BLE001 - init must never crash the environment; the first request tries again
        logger.exception("Warm-up at init failed; the first request will build what is missing")
        return
    if not all(warmed.values()):
        logger.info("Warm-up at init left work for the first request", extra={"warmed": warmed})


# The routes users call, each rehearsed once at init with a request that carries no token, so it ends in 401
# before anything about a caller happens (no AWS, no Stripe call). What the first request would otherwise do on
# its own, throttled CPU is done here: the resolver's per-route inspection of the handler's signature, the first
# type checks on the event's classes (cold ABC caches), the error answer, the correlation id's JMESPath.
REHEARSED_ROUTES = (("GET", "/portal", {"accept": "application/json"}),
                    ("POST", "/portal", {"content-type": "application/x-www-form-urlencoded"}),
                    ("GET", "/billing/status", {"accept": "application/json"}))


def _init_event(method: str, path: str, headers: dict[str, str]) -> dict:
    """An HTTP API (payload 2.0) event for a request init makes of its own routes."""
    return {"version": "2.0", "routeKey": f"{method} {path}", "rawPath": path, "rawQueryString": "",
            "headers": {"host": "init.invalid", **headers}, "body": "", "isBase64Encoded": False,
            "requestContext": {"domainName": "init.invalid",
                               "http": {"method": method, "path": path, "sourceIp": "127.0.0.1"},
                               "requestId": "init", "stage": "$default"}}


def _rehearse_routes() -> None:
    import jmespath

    jmespath.search(correlation_paths.API_GATEWAY_HTTP, {})  # the expression is parsed once and cached
    level = logger.log_level
    logger.setLevel("WARNING")  # the rehearsals' refusals are not requests anyone made
    try:
        for method, path, headers in REHEARSED_ROUTES:
            # No invocation yet, so no Lambda context: the resolver only keeps it for the routes, which use none.
            answer = app.resolve(_init_event(method, path, headers), cast("LambdaContext", None))
            if answer["statusCode"] != 401:  # a rehearsal must never reach a caller's work
                logger.warning("Route rehearsal at init answered unexpectedly",
                               extra={"route": f"{method} {path}", "status": answer["statusCode"]})
    finally:
        logger.setLevel(level)


# The user-facing requests rehearsed whole (priming.py) through the handler itself, its logging and metrics
# decorators included: a throwaway service answers, its outbound requests answered in memory. Its log lines are not
# written (logging is off), its metrics go to a discarded stdout (EMF is printed, so nothing is published), and
# Powertools' cold-start flag is put back, so the first real request still reports the cold start. Each once:
# three rehearsals measured no faster a first request than one (fresh processes, medians of 21).
REHEARSED_REQUESTS = (("/portal", "text/html", 302), ("/billing/status", "application/json", 200))


class _RehearsalContext:
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "init")
    memory_limit_in_mb = 0
    invoked_function_arn = ""
    aws_request_id = "init"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return int((INIT_BUDGET_SECONDS + ANSWER_RESERVE_SECONDS) * 1000)


def _rehearse_first_request() -> dict | None:
    """The user-facing requests, whole, in memory; None when each ended as it should, else what did not."""
    global _service
    import io
    from contextlib import redirect_stdout

    import aws_lambda_powertools.logging.logger as powertools_logging
    from portal_gateway import priming

    real = portal_service()
    world = priming.PrimingWorld(SETTINGS)
    cold_start = getattr(powertools_logging, "is_cold_start", True)
    quieted = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # not requests anyone made: no "Portal session created", no refusal
    unexpected = None
    try:
        _service = priming.priming_service(SETTINGS)
        with priming.in_memory(world), redirect_stdout(io.StringIO()):
            _service.billing.warm_key()  # in this thread: no background read of the key
            for path, accept, expected in REHEARSED_REQUESTS:
                _service.resolver.clear()  # each as a first request: the mapping is read
                answer = _api_handler(_init_event("GET", path, {
                    "accept": accept, "authorization": f"Bearer {priming.PRIMING_TOKEN}"}), _RehearsalContext())
                if answer["statusCode"] != expected or (
                        expected == 302 and answer["headers"].get("Location") != priming.PRIMING_PORTAL_URL):
                    unexpected = {"route": f"GET {path}", "status": answer["statusCode"]}
                    break
    finally:
        _service = real
        powertools_logging.is_cold_start = cold_start
        logging.disable(quieted)
        logger.thread_safe_clear_keys()
        metrics.clear_metrics()
    if unexpected is not None:
        logger.warning("Rehearsal of a first request did not end as it should",
                       extra={**unexpected, "asked": world.requests[-8:]})
    return unexpected


_initialize()
