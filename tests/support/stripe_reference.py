"""Checks requests and responses against a reference nobody here wrote: stripe-python's own generated types.

stripe-python's parameter TypedDicts (`stripe/params/...`) and resource classes (`stripe/_customer.py`, ...)
are generated from Stripe's OpenAPI spec. A request is checked against the TypedDict of its operation
(unknown parameter, missing required one, wrong type or value outside an enum); a response against the
resource class (every non-Optional field present with its type, Optional fields null or typed, nested
objects and lists checked in turn). The few facts the types do not carry (error types, string limits,
`created` in whole seconds) are in STRIPE_SPEC_FACTS, each from the OpenAPI spec's text, with its commit.
"""

from __future__ import annotations

import builtins
import importlib
import re
import sys
import typing
from dataclasses import dataclass

import stripe
import typing_extensions
from stripe._list_object import ListObject
from stripe._request_options import RequestOptions
from stripe._stripe_object import StripeObject

# From Stripe's OpenAPI spec (github.com/stripe/openapi, latest/openapi.spec3.json at commit
# a2de9917ac9c7be3ba11abd5151b5c2df3add59e): facts the generated Python types do not encode.
STRIPE_SPEC_FACTS = {
    "error_types": ("api_error", "card_error", "idempotency_error", "invalid_request_error"),
    "max_length": {("POST", "/v1/customers", "name"): 256, ("POST", "/v1/customers", "email"): 512},
    # "created": integer, format unix-time, "Measured in seconds since the Unix epoch."
    "unix_time_fields": ("created", "start_date", "updated"),
    # deleted_customer: required ["deleted", "id", "object"]; stripe-python has no class for it
    "deleted_customer": {"deleted": True, "object": "customer"},
}
_SECONDS_UNTIL = 10**10  # a Unix time in milliseconds is past this; one in seconds is not until the year 2286

# (method, path pattern) -> (module.Class of the params TypedDict, module.Class of the resource)
OPERATIONS: list[tuple[str, str, str, str]] = [
    ("GET", r"/v1/account", "stripe.params._account_retrieve_current_params.AccountRetrieveCurrentParams",
     "stripe._account.Account"),
    ("GET", r"/v1/customers", "stripe.params._customer_list_params.CustomerListParams",
     "list:stripe._customer.Customer"),
    ("POST", r"/v1/customers", "stripe.params._customer_create_params.CustomerCreateParams",
     "stripe._customer.Customer"),
    ("GET", r"/v1/customers/[^/]+", "stripe.params._customer_retrieve_params.CustomerRetrieveParams",
     "stripe._customer.Customer"),
    ("POST", r"/v1/customers/[^/]+", "stripe.params._customer_update_params.CustomerUpdateParams",
     "stripe._customer.Customer"),
    ("GET", r"/v1/subscriptions", "stripe.params._subscription_list_params.SubscriptionListParams",
     "list:stripe._subscription.Subscription"),
    ("POST", r"/v1/billing_portal/sessions",
     "stripe.params.billing_portal._session_create_params.SessionCreateParams",
     "stripe.billing_portal._session.Session"),
    ("GET", r"/v1/billing_portal/configurations",
     "stripe.params.billing_portal._configuration_list_params.ConfigurationListParams",
     "list:stripe.billing_portal._configuration.Configuration"),
    ("GET", r"/v1/billing_portal/configurations/[^/]+",
     "stripe.params.billing_portal._configuration_retrieve_params.ConfigurationRetrieveParams",
     "stripe.billing_portal._configuration.Configuration"),
    ("GET", r"/v1/prices", "stripe.params._price_list_params.PriceListParams", "list:stripe._price.Price"),
    ("GET", r"/v1/events", "stripe.params._event_list_params.EventListParams", "list:stripe._event.Event"),
    ("GET", r"/v1/entitlements/active_entitlements",
     "stripe.params.entitlements._active_entitlement_list_params.ActiveEntitlementListParams",
     "list:stripe.entitlements._active_entitlement.ActiveEntitlement"),
    ("POST", r"/v1/checkout/sessions", "stripe.params.checkout._session_create_params.SessionCreateParams",
     "stripe.checkout._session.Session"),
    ("POST", r"/v1/customer_sessions", "stripe.params._customer_session_create_params.CustomerSessionCreateParams",
     "stripe._customer_session.CustomerSession"),
]


class _Namespace(dict):
    """Resolves the forward references of stripe-python's annotations (many are TYPE_CHECKING imports)."""

    _SOURCES = (builtins, typing, typing_extensions, stripe, stripe.billing_portal)

    def __missing__(self, name: str):
        for source in self._SOURCES:
            if hasattr(source, name):
                return getattr(source, name)
        return typing.Any


def _load(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _hints(cls) -> dict[str, typing.Any]:
    namespace = _Namespace(vars(sys.modules[cls.__module__]))
    for klass in reversed(cls.__mro__):
        namespace.update({k: v for k, v in vars(klass).items() if isinstance(v, type)})
    hints = typing.get_type_hints(cls, globalns=dict(vars(sys.modules[cls.__module__])), localns=namespace,
                                  include_extras=True)
    return {k: v for k, v in hints.items() if not k.startswith("_") and typing.get_origin(v) is not typing.ClassVar
            and k != "OBJECT_NAME"}


def operation_name(method: str, path: str) -> str | None:
    """The operation as "METHOD pattern", e.g. "GET /v1/customers/[^/]+"."""
    return next((f"{m} {pattern}" for m, pattern, _, _ in OPERATIONS if m == method and re.fullmatch(pattern, path)),
                None)


def operation_for(method: str, path: str) -> tuple[type, typing.Any] | None:
    for op_method, pattern, params, resource in OPERATIONS:
        if op_method == method and re.fullmatch(pattern, path):
            if resource.startswith("list:"):
                return _load(params), ListObject[_load(resource[5:])]
            return _load(params), _load(resource)
    return None


# --- requests --------------------------------------------------------------------------------------------------
_OPTION_KEYS = frozenset(RequestOptions.__annotations__)


def check_request(method: str, path: str, params: dict) -> list[str]:
    """Problems with a decoded form/query (values are strings, as on the wire)."""
    operation = operation_for(method, path)
    if operation is None:
        return [f"{method} {path}: not an operation this reference knows"]
    problems = _check_params(operation[0], params, "")
    for (op_method, op_path, name), limit in STRIPE_SPEC_FACTS["max_length"].items():
        value = params.get(name)
        if op_method == method and op_path == path and isinstance(value, str) and len(value) > limit:
            problems.append(f"{name}: {len(value)} characters, Stripe allows {limit}")
    return problems


def _check_params(typed_dict: type, params: typing.Any, where: str) -> list[str]:
    if not isinstance(params, dict):
        return [f"{where or 'params'}: expected an object, got {params!r:.60}"]
    hints = {k: v for k, v in _hints(typed_dict).items() if k not in _OPTION_KEYS}
    problems = [f"{where}{key}: unknown parameter" for key in params if key not in hints]
    for key in getattr(typed_dict, "__required_keys__", ()):
        if key in hints and key not in params:
            problems.append(f"{where}{key}: required parameter missing")
    for key, value in params.items():
        if key in hints:
            problems += _check_param_value(hints[key], value, f"{where}{key}")
    return problems


def _strip(annotation):
    while typing.get_origin(annotation) in (typing_extensions.NotRequired, typing_extensions.Required,
                                            typing.NotRequired, typing.Required):
        annotation = typing.get_args(annotation)[0]
    return annotation


def _check_param_value(annotation, value, where: str) -> list[str]:
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation)
    if annotation is typing.Any:
        return []
    if origin is typing.Union:
        options = [a for a in typing.get_args(annotation)]
        if str in options and any(typing.get_origin(o) in (typing.Literal, typing_extensions.Literal) for o in options):
            options.remove(str)  # an enum left open for future values: what we send must be a value it names today
        if value == "" and type(None) in options:
            return []  # "" unsets a nullable parameter
        results = [_check_param_value(option, value, where) for option in options if option is not type(None)]
        return [] if any(not r for r in results) else results[0]
    if origin is typing.Literal or origin is typing_extensions.Literal:
        allowed = [str(a).lower() if isinstance(a, bool) else str(a) for a in typing.get_args(annotation)]
        return [] if value in allowed else [f"{where}: {value!r:.40} is not one of {allowed}"]
    if origin in (list, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        (item,) = typing.get_args(annotation)
        return [p for index, entry in enumerate(value) for p in _check_param_value(item, entry, f"{where}[{index}]")]
    if origin in (dict, dict) or annotation in (dict, dict):
        return [] if isinstance(value, dict) or value == "" else [f"{where}: expected an object"]
    if isinstance(annotation, type) and typing_extensions.is_typeddict(annotation):
        return _check_params(annotation, value, f"{where}.")
    if annotation is str:
        return [] if isinstance(value, str) else [f"{where}: expected a string"]
    if annotation is int:
        return [] if isinstance(value, str) and re.fullmatch(r"-?\d+", value) else [f"{where}: expected an integer"]
    if annotation is bool:
        return [] if value in ("true", "false") else [f"{where}: expected true or false"]
    if annotation is float:
        number = isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value)
        return [] if number else [f"{where}: expected a number"]
    return []


# --- responses -------------------------------------------------------------------------------------------------
def check_response(method: str, path: str, status: int, body: typing.Any) -> list[str]:
    if status >= 400:
        return check_error(body)
    operation = operation_for(method, path)
    if operation is None:
        return [f"{method} {path}: not an operation this reference knows"]
    if isinstance(body, dict) and body.get("deleted") is True and method == "GET" and "/customers/" in path:
        expected = STRIPE_SPEC_FACTS["deleted_customer"]
        problems = [f"{k}: expected {v!r}" for k, v in expected.items() if body.get(k) != v]
        return problems + ([] if isinstance(body.get("id"), str) else ["id: required field missing"])
    return _check_value(operation[1], body, "")


def check_error(body: typing.Any) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return ["error response: no 'error' object"]
    error = body["error"]
    problems = _check_object(stripe.ErrorObject, error, "error.")
    if error.get("type") not in STRIPE_SPEC_FACTS["error_types"]:
        problems.append(f"error.type: {error.get('type')!r} is not one of {STRIPE_SPEC_FACTS['error_types']}")
    if not isinstance(error.get("message"), str):
        problems.append("error.message: missing")
    return problems


def _nullable(annotation) -> bool:
    return typing.get_origin(annotation) is typing.Union and type(None) in typing.get_args(annotation)


def _check_object(cls: type, value: typing.Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where or cls.__name__}: expected an object"]
    problems = []
    hints = _hints(cls)
    for name, annotation in hints.items():
        if name not in value:
            if not _nullable(annotation):
                problems.append(f"{where}{name}: required field missing")
            continue
        problems += _check_value(annotation, value[name], f"{where}{name}")
        timestamp = name in STRIPE_SPEC_FACTS["unix_time_fields"] and isinstance(value[name], int)
        if timestamp and value[name] > _SECONDS_UNTIL:
            problems.append(f"{where}{name}: {value[name]} is not whole Unix seconds")
    return problems


def _check_value(annotation, value, where: str) -> list[str]:
    origin = typing.get_origin(annotation)
    if annotation is typing.Any:
        return []
    if origin is typing.Union:
        options = typing.get_args(annotation)
        if value is None:
            return [] if type(None) in options else [f"{where}: null where Stripe never sends null"]
        results = [_check_value(option, value, where) for option in options if option is not type(None)]
        return [] if any(not r for r in results) else min(results, key=len)
    if origin is typing.Literal or origin is typing_extensions.Literal:
        allowed = typing.get_args(annotation)
        return [] if value in allowed else [f"{where}: {value!r:.40} is not one of {list(allowed)}"]
    if origin in (list, list):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        (item,) = typing.get_args(annotation)
        return [p for index, entry in enumerate(value) for p in _check_value(item, entry, f"{where}[{index}]")]
    if origin is ListObject or annotation is ListObject:
        args = typing.get_args(annotation)
        if not isinstance(value, dict) or value.get("object") != "list":
            return [f"{where}: expected a list object"]
        problems = [f"{where}.{k}: required field missing" for k in ("data", "has_more", "url") if k not in value]
        if args:
            problems += [p for index, entry in enumerate(value.get("data") or [])
                         for p in _check_value(args[0], entry, f"{where}.data[{index}]")]
        return problems
    if origin in (dict, dict, typing.Mapping) or annotation in (dict, dict):
        return [] if isinstance(value, dict) else [f"{where}: expected an object"]
    if isinstance(annotation, type) and issubclass(annotation, StripeObject):
        if getattr(annotation, "__name__", "") == "UntypedStripeObject":
            return [] if isinstance(value, dict) else [f"{where}: expected an object"]
        return _check_object(annotation, value, f"{where}." if where else "")
    if origin is not None and isinstance(origin, type) and issubclass(origin, StripeObject):
        return [] if isinstance(value, dict) else [f"{where}: expected an object"]  # UntypedStripeObject[T]
    if annotation is bool:
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean"]
    if annotation is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{where}: expected an integer"]
    if annotation is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if number else [f"{where}: expected a number"]
    if annotation is str:
        return [] if isinstance(value, str) else [f"{where}: expected a string"]
    return []


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    params: dict
    status: int
    body: typing.Any


def problems_in(exchanges: list[Exchange]) -> list[str]:
    found = []
    for exchange in exchanges:
        label = f"{exchange.method} {exchange.path} ({exchange.status})"
        found += [f"{label} request: {p}" for p in check_request(exchange.method, exchange.path, exchange.params)]
        found += [f"{label} response: {p}" for p in check_response(exchange.method, exchange.path, exchange.status,
                                                                     exchange.body)]
    return found
