"""Support commands of stripe-portal-admin: who is mapped to which Stripe customer, and audited changes.

  whois   by Cognito sub, username or Stripe customer id: the mapping, the claim, the customer's state in Stripe
  link    map a user to a customer ("I see the wrong account"): owner check, claim, conditional write, stamp
  unlink  remove a user's mapping (and its claim and stamp), so the next visit resolves again
  forget  the erasure path for a deleted user: mapping and claim removed; Stripe keeps the customer

Every change writes an append-only audit record in the customers table (who, when, what, why, the customer
before and after; its own item, so it outlives the mapping it describes; kept for the operator's retention) and
prints it as one AUDIT line. `whois` shows a user's history. Only ids are printed or recorded: never an email,
a name, a key or a token, and a reason holding one is refused.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from portal_gateway.aws.mapping_store import claim_key, mapping_key, ticket_key
from portal_gateway.billing.customers import OWNER_POOL, OWNER_SUB
from portal_gateway.billing.stripe_client import StripeApiError, path_of
from portal_gateway.checks.release_check import FORBIDDEN_IN_LOGS

from portal_admin.common import scan_items


class SupportError(Exception):
    def __init__(self, what: str, fix: str = "", code: int = 1):
        super().__init__(what)
        self.what, self.fix, self.code = what, fix, code


# (method, path, params) -> Stripe's answer, with the deployment's key.
StripeCaller = Callable[[str, str, dict | None], dict]


@dataclass
class Context:
    table: str
    mode: str
    user_pool_id: str
    client: Callable[[str], Any]  # boto3 client factory
    stripe: StripeCaller | None  # (method, path, params) with the deployment's key
    out: TextIO
    stack: str | None = None
    audit_retention_days: int = 400  # 0 keeps audit records for ever

    def audit_key(self, subject: str, at: str) -> str:
        return audit_key(self.mode, subject, at)

    def mapping_key(self, sub: str) -> str:
        return mapping_key(self.mode, self.user_pool_id, sub)

    def claim_key(self, customer_id: str) -> str:
        return claim_key(self.mode, customer_id)

    def get(self, pk: str) -> dict | None:
        item = self.client("dynamodb").get_item(TableName=self.table, Key={"pk": {"S": pk}},
                                                ConsistentRead=True).get("Item")
        return item or None


CUSTOMER_ID = re.compile(r"^cus_[A-Za-z0-9]{8,64}$")
COGNITO_SUB = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_REASON = 500


def audit_key(mode: str, subject: str, at: str) -> str:
    """An audit record's key: per mode and subject (a user's sub, or "stripe-key"), in time order to the
    nanosecond, and unique."""
    return f"{mode}#audit#{subject}#{at}#{time.time_ns() % 10**9:09d}#{secrets.token_hex(4)}"


def checked_customer_id(value: str) -> str:
    if not CUSTOMER_ID.fullmatch(value or ""):
        raise SupportError("not a Stripe customer id (cus_ followed by letters and digits)",
                           "Copy the id from the Stripe Dashboard, e.g. cus_NffrFeUfNV2Hib", 2)
    return value


def checked_sub(value: str) -> str:
    if not COGNITO_SUB.fullmatch(value or ""):
        raise SupportError("not a Cognito sub (a UUID such as 5f1c2a3b-...)", "Find it with whois --username NAME", 2)
    return value


def checked_reason(value: str | None) -> str:
    reason = (value or "").strip()
    if not reason:
        raise SupportError("--reason is empty", "Say why, e.g. --reason \"ticket 42: sees the wrong account\"", 2)
    if len(reason) > MAX_REASON:
        raise SupportError(f"--reason is longer than {MAX_REASON} characters", "Say it shorter, e.g. a ticket id", 2)
    for what, pattern in FORBIDDEN_IN_LOGS.items():
        if pattern.search(reason):
            raise SupportError(f"--reason contains {what}; audit records hold ids only",
                               "Refer to the ticket instead of quoting it", 2)
    return reason


def existing_user(ctx: Context, sub: str) -> None:
    """The sub names an enabled user of the pool: a customer is never stamped for someone who does not exist."""
    users = ctx.client("cognito-idp").list_users(UserPoolId=ctx.user_pool_id, Filter=f'sub = "{sub}"',
                                                 Limit=1).get("Users", [])
    if not users:
        raise SupportError("no user with this sub in the pool", "Check the sub (stripe-portal-admin whois)", 4)
    if users[0].get("Enabled") is False:
        raise SupportError("the user is disabled in the pool", "Enable the user first, or leave the mapping", 1)


def _masked(value: str) -> str:
    return f"…{value[-4:]}" if len(value) > 4 else value


def stripe_state(ctx: Context, customer_id: str, sub: str | None = None) -> str:
    """The customer as the deployment's key sees it: exists (and whose it says it is), deleted, or missing."""
    if ctx.stripe is None:
        return "not checked (no Stripe key available)"
    try:
        customer = ctx.stripe("GET", path_of("v1", "customers", customer_id), None)
    except StripeApiError as exc:
        if exc.kind == "InvalidRequestError" and exc.code == "resource_missing":
            return "missing for this deployment's key (another Stripe account's customer, or a wrong id)"
        return f"could not be read ({exc.kind})"
    if customer.get("deleted"):
        return "deleted in Stripe"
    owner = (customer.get("metadata") or {}).get(OWNER_SUB)
    if not owner:
        return "exists, not stamped with an owner"
    if sub is not None and owner == sub:
        return "exists, stamped as this user's"
    return f"exists, stamped as user {_masked(owner)}'s"


def resolve_sub(ctx: Context, *, sub: str | None, username: str | None) -> str:
    if sub:
        return sub
    if username:
        try:
            user = ctx.client("cognito-idp").admin_get_user(UserPoolId=ctx.user_pool_id, Username=username)
        except Exception as exc:  # noqa: BLE001 - botocore's error classes are per client
            if getattr(exc, "response", {}).get("Error", {}).get("Code") == "UserNotFoundException":
                raise SupportError("no such user in the pool", "Check the username (or use --sub)", 4) from None
            raise
        return next(a["Value"] for a in user["UserAttributes"] if a["Name"] == "sub")
    raise SupportError("say whom: --sub, --username or --customer", code=2)


def whois(ctx: Context, *, sub: str | None = None, username: str | None = None, customer: str | None = None) -> int:
    if customer:
        customer = checked_customer_id(customer)
        items = _items_for_customer(ctx, customer)
        print(f"customer        {customer}", file=ctx.out)
        print(f"in Stripe       {stripe_state(ctx, customer)}", file=ctx.out)
        mapped = [i for i in items if "#claim#" not in i["pk"]["S"]]
        claim = ctx.get(ctx.claim_key(customer))
        print(f"claimed by      {claim['owner']['S'].rsplit('#', 1)[-1] if claim else 'nobody'}", file=ctx.out)
        if not mapped:
            print("mapped users    none", file=ctx.out)
            return 0 if claim else 4  # nothing of this deployment knows the customer: not found
        for item in mapped:
            print(f"mapped user     {item['sub']['S']} (pool {item['user_pool_id']['S']}, "
                  f"mode {item['stripe_mode']['S']}{_since(item)})", file=ctx.out)
        return 0
    sub = resolve_sub(ctx, sub=sub, username=username)
    mapping = ctx.get(ctx.mapping_key(sub))
    print(f"sub             {sub}", file=ctx.out)
    print(f"user pool       {ctx.user_pool_id}", file=ctx.out)
    print(f"Stripe mode     {ctx.mode}", file=ctx.out)
    records = history(ctx, sub)
    if mapping is None:
        print("customer        none mapped (the next visit finds or creates one)", file=ctx.out)
    else:
        customer_id = mapping["customer_id"]["S"]
        print(f"customer        {customer_id}{_since(mapping)}", file=ctx.out)
        print(f"in Stripe       {stripe_state(ctx, customer_id, sub)}", file=ctx.out)
    for record in records:
        print(f"history         {record['at']} {record['command']} {record.get('before', 'none')} -> "
              f"{record.get('after', 'none')} by {record['who']}: {record['reason']}", file=ctx.out)
    return 0 if mapping is not None else 4


def _since(item: dict) -> str:
    updated = item.get("updated_at", {}).get("N")
    return f", since {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(int(updated)))}" if updated else ""


def _items_for_customer(ctx: Context, customer_id: str) -> list[dict]:
    return _scan(ctx, "customer_id = :c", {":c": {"S": customer_id}})


def _scan(ctx: Context, condition: str, values: dict) -> list[dict]:
    return scan_items(ctx.client, ctx.table, condition, values)


class Audit:
    """One change: an append-only record of its own in the table, written (and printed) before the change is made,
    so no change is ever left unaudited; a change that then fails appends a second record saying so."""

    def __init__(self, ctx: Context, who: str, command: str, reason: str, *, subject: str, before: str | None,
                 after: str | None, **ids: str):
        self.ctx = ctx
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.subject = subject
        self.record = {"at": at, "who": who, "command": command, "stack": ctx.stack, "mode": ctx.mode, **ids,
                       "before": before or "none", "after": after or "none", "reason": reason}
        self.attributes = {"changed_by": {"S": who}, "change_reason": {"S": reason[:MAX_REASON]},
                           "changed_at": {"S": at}}

    @contextmanager
    def recorded(self) -> Iterator[None]:
        """Write the record, then make the change inside the block. A change that fails halfway is recorded too
        (`outcome: failed`) and reported in one line, never as a traceback."""
        self._write(self.record)
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - AWS, Stripe or a lost race: said, recorded, never a traceback
            cause = _cause(exc)
            try:
                self._write({**self.record, "outcome": "failed", "error": cause})
            except Exception:  # noqa: BLE001 - the first record stands; the failure is still reported below
                print("note: the failure could not be recorded in the table", file=self.ctx.out)
            if isinstance(exc, SupportError):
                raise
            raise SupportError(f"the change failed ({cause}) after its audit record was written",
                               "See the user's state (stripe-portal-admin whois) and run the command again", 3) \
                from None

    def _write(self, record: dict) -> None:
        item = {"pk": {"S": self.ctx.audit_key(self.subject, record["at"])},
                **{name: {"S": str(value)} for name, value in record.items() if value is not None}}
        if self.ctx.audit_retention_days:
            item["expires_at"] = {"N": str(int(time.time()) + self.ctx.audit_retention_days * 86400)}
        self.ctx.client("dynamodb").put_item(TableName=self.ctx.table, Item=item,
                                             ConditionExpression="attribute_not_exists(pk)")  # append-only
        print("AUDIT " + json.dumps(record, sort_keys=True), file=self.ctx.out)


def _cause(exc: Exception) -> str:
    """What failed, as a code: never a message (Stripe's may echo input)."""
    if isinstance(exc, StripeApiError):
        return f"Stripe {exc.kind}"
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    if code:
        return f"AWS {code}"
    if isinstance(exc, SupportError):
        return "refused"
    return type(exc).__name__


def history(ctx: Context, subject: str) -> list[dict]:
    """A subject's audit records, oldest first."""
    items = _scan(ctx, "begins_with(pk, :p)", {":p": {"S": f"{ctx.mode}#audit#{subject}#"}})
    return sorted(({k: v["S"] for k, v in item.items() if "S" in v} for item in items), key=lambda r: r["pk"])


def link(ctx: Context, sub: str, customer_id: str, *, reason: str, who: str) -> int:
    sub, customer_id, reason = checked_sub(sub), checked_customer_id(customer_id), checked_reason(reason)
    existing_user(ctx, sub)
    stripe = ctx.stripe
    if stripe is None:
        raise SupportError("the Stripe key could not be read, so the customer cannot be checked",
                           "Check the secret (stripe-portal-admin check)", 3)
    try:
        customer = stripe("GET", path_of("v1", "customers", customer_id), None)
    except StripeApiError as exc:
        if exc.code == "resource_missing":
            raise SupportError("no such customer for this deployment's Stripe key",
                               "Check the id and that it is in this deployment's Stripe account and mode", 4) from None
        raise SupportError(f"Stripe could not be asked ({exc.kind})", "Try again", 3) from None
    if customer.get("deleted"):
        raise SupportError("the customer is deleted in Stripe", "Link a customer that exists", 1)
    metadata = customer.get("metadata") or {}
    if metadata.get(OWNER_SUB) not in (None, "", sub) or metadata.get(OWNER_POOL) not in (None, "", ctx.user_pool_id):
        raise SupportError(f"the customer is stamped as another user's ({_masked(metadata.get(OWNER_SUB) or '?')})",
                           "Unlink it from that user first (stripe-portal-admin unlink)", 1)
    dynamodb = ctx.client("dynamodb")
    owner = ctx.mapping_key(sub)
    before = ctx.get(owner)
    audit = Audit(ctx, who, "link", reason, subject=sub, sub=sub, customer=customer_id,
                  before=before["customer_id"]["S"] if before else None, after=customer_id)
    change = audit.attributes
    with audit.recorded():
        _link(ctx, dynamodb, stripe, sub, customer_id, owner, change)
    print(f"linked {sub} -> {customer_id}; running functions follow within 5 minutes", file=ctx.out)
    return 0


def _link(ctx: Context, dynamodb, stripe: StripeCaller, sub: str, customer_id: str, owner: str, change: dict) -> None:
    try:
        dynamodb.put_item(TableName=ctx.table, Item={"pk": {"S": ctx.claim_key(customer_id)}, "owner": {"S": owner},
                                                     "updated_at": {"N": str(int(time.time()))}, **change},
                          ConditionExpression="attribute_not_exists(pk) OR #owner = :owner",
                          ExpressionAttributeNames={"#owner": "owner"},
                          ExpressionAttributeValues={":owner": {"S": owner}})
    except dynamodb.exceptions.ConditionalCheckFailedException:
        raise SupportError("another user has claimed this customer", "Unlink it from that user first", 1) from None
    seen = ctx.get(owner)
    condition = ("customer_id = :seen" if seen else "attribute_not_exists(pk)")
    values = {":seen": seen["customer_id"]} if seen else {}
    try:
        dynamodb.put_item(TableName=ctx.table, Item={
            "pk": {"S": owner}, "customer_id": {"S": customer_id}, "stripe_mode": {"S": ctx.mode},
            "user_pool_id": {"S": ctx.user_pool_id}, "sub": {"S": sub}, "updated_at": {"N": str(int(time.time()))},
            **change}, ConditionExpression=condition, **({"ExpressionAttributeValues": values} if values else {}))
    except dynamodb.exceptions.ConditionalCheckFailedException:
        raise SupportError("the user's mapping changed while linking", "Run the command again", 1) from None
    if seen and seen["customer_id"]["S"] != customer_id:
        _release_claim(ctx, seen["customer_id"]["S"], owner)
    stripe("POST", path_of("v1", "customers", customer_id),
           {"metadata": {OWNER_SUB: sub, OWNER_POOL: ctx.user_pool_id}})


def _release_claim(ctx: Context, customer_id: str, owner: str) -> None:
    dynamodb = ctx.client("dynamodb")
    try:
        dynamodb.delete_item(TableName=ctx.table, Key={"pk": {"S": ctx.claim_key(customer_id)}},
                             ConditionExpression="#owner = :owner", ExpressionAttributeNames={"#owner": "owner"},
                             ExpressionAttributeValues={":owner": {"S": owner}})
    except dynamodb.exceptions.ConditionalCheckFailedException:
        pass  # not this user's claim (or none): leave it


def _mapped_customer(ctx: Context, sub: str) -> str:
    item = ctx.get(ctx.mapping_key(sub))
    if item is None:
        raise SupportError("this user has no mapping", "Check the sub (stripe-portal-admin whois)", 4)
    return item["customer_id"]["S"]


def _remove_mapping(ctx: Context, sub: str, customer_id: str) -> None:
    dynamodb = ctx.client("dynamodb")
    try:
        dynamodb.delete_item(TableName=ctx.table, Key={"pk": {"S": ctx.mapping_key(sub)}},
                             ConditionExpression="customer_id = :seen",
                             ExpressionAttributeValues={":seen": {"S": customer_id}})
    except dynamodb.exceptions.ConditionalCheckFailedException:
        raise SupportError("the user's mapping changed meanwhile", "Run the command again", 1) from None
    _release_claim(ctx, customer_id, ctx.mapping_key(sub))
    # The creation ticket goes too: the next visit's idempotency key is a new one, never one whose saved answer
    # is the customer just unlinked (which may be linked to someone else next).
    dynamodb.delete_item(TableName=ctx.table, Key={"pk": {"S": ticket_key(ctx.mapping_key(sub))}})


def unlink(ctx: Context, sub: str, *, reason: str, who: str) -> int:
    sub, reason = checked_sub(sub), checked_reason(reason)
    customer_id = _mapped_customer(ctx, sub)
    with Audit(ctx, who, "unlink", reason, subject=sub, sub=sub, customer=customer_id, before=customer_id,
               after=None).recorded():
        _remove_mapping(ctx, sub, customer_id)
    if ctx.stripe is not None:
        try:
            customer = ctx.stripe("GET", path_of("v1", "customers", customer_id), None)
            if (customer.get("metadata") or {}).get(OWNER_SUB) == sub:
                ctx.stripe("POST", path_of("v1", "customers", customer_id),
                           {"metadata": {OWNER_SUB: "", OWNER_POOL: ""}})
        except StripeApiError:
            print(f"note: the customer's owner stamp could not be removed in Stripe; remove the metadata "
                  f"{OWNER_SUB} and {OWNER_POOL} in the Dashboard", file=ctx.out)
    print(f"unlinked {sub} from {customer_id}; the next visit finds or creates a customer", file=ctx.out)
    return 0


def forget(ctx: Context, sub: str, *, reason: str, who: str) -> int:
    sub, reason = checked_sub(sub), checked_reason(reason)
    customer_id = _mapped_customer(ctx, sub)
    with Audit(ctx, who, "forget", reason, subject=sub, sub=sub, customer=customer_id, before=customer_id,
               after=None).recorded():
        _remove_mapping(ctx, sub, customer_id)
    print(f"forgot {sub}: mapping and claim removed. Stripe still holds customer {customer_id} (its email, name, "
          f"payment history and the metadata {OWNER_SUB}); delete it in the Stripe Dashboard or with "
          f"DELETE /v1/customers/{customer_id} if it must go too (docs/operations.md)", file=ctx.out)
    return 0
