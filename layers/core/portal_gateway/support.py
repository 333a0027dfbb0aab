"""Support commands of stripe-portal-admin: who is mapped to which Stripe customer, and audited changes.

  whois   by Cognito sub, username or Stripe customer id: the mapping, the claim, the customer's state in Stripe
  link    map a user to a customer ("I see the wrong account"): owner check, claim, conditional write, stamp
  unlink  remove a user's mapping (and its claim and stamp), so the next visit resolves again
  forget  the erasure path for a deleted user: mapping and claim removed; Stripe keeps the customer

Every change prints one AUDIT line (when, who, what, why) and records who and why on the item it writes. Only
ids are printed: never an email, a name, a key or a token.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from .aws import claim_key, mapping_key, ticket_key
from .customers import OWNER_POOL, OWNER_SUB
from .stripe_http import StripeApiError, path_of


class SupportError(Exception):
    def __init__(self, what: str, fix: str = "", code: int = 1):
        super().__init__(what)
        self.what, self.fix, self.code = what, fix, code


@dataclass
class Context:
    table: str
    mode: str
    user_pool_id: str
    client: Callable[[str], Any]  # boto3 client factory
    stripe: Callable[[str, str, dict | None], dict] | None  # (method, path, params) with the deployment's key
    out: TextIO
    stack: str | None = None

    def mapping_key(self, sub: str) -> str:
        return mapping_key(self.mode, self.user_pool_id, sub)

    def claim_key(self, customer_id: str) -> str:
        return claim_key(self.mode, customer_id)

    def get(self, pk: str) -> dict | None:
        item = self.client("dynamodb").get_item(TableName=self.table, Key={"pk": {"S": pk}},
                                                ConsistentRead=True).get("Item")
        return item or None


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
        items = _items_for_customer(ctx, customer)
        print(f"customer        {customer}", file=ctx.out)
        print(f"in Stripe       {stripe_state(ctx, customer)}", file=ctx.out)
        mapped = [i for i in items if "#claim#" not in i["pk"]["S"]]
        claim = ctx.get(ctx.claim_key(customer))
        print(f"claimed by      {claim['owner']['S'].rsplit('#', 1)[-1] if claim else 'nobody'}", file=ctx.out)
        if not mapped:
            print("mapped users    none", file=ctx.out)
            return 0
        for item in mapped:
            print(f"mapped user     {item['sub']['S']} (pool {item['user_pool_id']['S']}, "
                  f"mode {item['stripe_mode']['S']}{_since(item)})", file=ctx.out)
        return 0
    sub = resolve_sub(ctx, sub=sub, username=username)
    item = ctx.get(ctx.mapping_key(sub))
    print(f"sub             {sub}", file=ctx.out)
    print(f"user pool       {ctx.user_pool_id}", file=ctx.out)
    print(f"Stripe mode     {ctx.mode}", file=ctx.out)
    if item is None:
        print("customer        none mapped (the next visit finds or creates one)", file=ctx.out)
        return 4
    customer_id = item["customer_id"]["S"]
    print(f"customer        {customer_id}{_since(item)}", file=ctx.out)
    print(f"in Stripe       {stripe_state(ctx, customer_id, sub)}", file=ctx.out)
    if "change_reason" in item:
        print(f"last change     by {item['changed_by']['S']}: {item['change_reason']['S']}", file=ctx.out)
    return 0


def _since(item: dict) -> str:
    updated = item.get("updated_at", {}).get("N")
    return f", since {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(int(updated)))}" if updated else ""


def _items_for_customer(ctx: Context, customer_id: str) -> list[dict]:
    table = ctx.client("dynamodb")
    items, start = [], None
    while True:
        page = table.scan(TableName=ctx.table, FilterExpression="customer_id = :c",
                          ExpressionAttributeValues={":c": {"S": customer_id}},
                          **({"ExclusiveStartKey": start} if start else {}))
        items += page.get("Items", [])
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


class Audit:
    """One change: printed as an AUDIT line once it is done, and recorded on the items it writes."""

    def __init__(self, ctx: Context, who: str, command: str, reason: str, **ids: str):
        self.ctx = ctx
        self.record = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "who": who, "command": command,
                       "stack": ctx.stack, "mode": ctx.mode, **ids, "reason": reason}
        self.attributes = {"changed_by": {"S": who}, "change_reason": {"S": reason[:500]},
                           "changed_at": {"S": self.record["at"]}}

    def done(self) -> None:
        print("AUDIT " + json.dumps(self.record, sort_keys=True), file=self.ctx.out)


def link(ctx: Context, sub: str, customer_id: str, *, reason: str, who: str) -> int:
    if ctx.stripe is None:
        raise SupportError("the Stripe key could not be read, so the customer cannot be checked",
                           "Check the secret (stripe-portal-admin check)", 3)
    try:
        customer = ctx.stripe("GET", path_of("v1", "customers", customer_id), None)
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
    audit = Audit(ctx, who, "link", reason, sub=sub, customer=customer_id)
    change = audit.attributes
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
    ctx.stripe("POST", path_of("v1", "customers", customer_id),
               {"metadata": {OWNER_SUB: sub, OWNER_POOL: ctx.user_pool_id}})
    audit.done()
    previous = f" (was {seen['customer_id']['S']})" if seen else ""
    print(f"linked {sub} -> {customer_id}{previous}; running functions follow within 5 minutes", file=ctx.out)
    return 0


def _release_claim(ctx: Context, customer_id: str, owner: str) -> None:
    dynamodb = ctx.client("dynamodb")
    try:
        dynamodb.delete_item(TableName=ctx.table, Key={"pk": {"S": ctx.claim_key(customer_id)}},
                             ConditionExpression="#owner = :owner", ExpressionAttributeNames={"#owner": "owner"},
                             ExpressionAttributeValues={":owner": {"S": owner}})
    except dynamodb.exceptions.ConditionalCheckFailedException:
        pass  # not this user's claim (or none): leave it


def _remove_mapping(ctx: Context, sub: str) -> str:
    item = ctx.get(ctx.mapping_key(sub))
    if item is None:
        raise SupportError("this user has no mapping", "Check the sub (stripe-portal-admin whois)", 4)
    dynamodb = ctx.client("dynamodb")
    customer_id = item["customer_id"]["S"]
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
    return customer_id


def unlink(ctx: Context, sub: str, *, reason: str, who: str) -> int:
    customer_id = _remove_mapping(ctx, sub)
    Audit(ctx, who, "unlink", reason, sub=sub, customer=customer_id).done()
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
    customer_id = _remove_mapping(ctx, sub)
    Audit(ctx, who, "forget", reason, sub=sub, customer=customer_id).done()
    print(f"forgot {sub}: mapping and claim removed. Stripe still holds customer {customer_id} (its email, name, "
          f"payment history and the metadata {OWNER_SUB}); delete it in the Stripe Dashboard or with "
          f"DELETE /v1/customers/{customer_id} if it must go too (README, Operating it)", file=ctx.out)
    return 0
