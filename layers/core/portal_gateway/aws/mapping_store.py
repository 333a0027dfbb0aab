"""DynamoDB adapter: the customers table. One item per (Stripe mode, user pool, sub) naming the Stripe customer,
the claims of email-matched customers and the users' creation tickets; conditional writes throughout."""

from __future__ import annotations

import secrets
import time
from typing import Any

from portal_gateway.aws.client import DYNAMODB, AwsError, AwsJsonClient, JsonApi
from portal_gateway.errors import MappingStoreUnavailable
from portal_gateway.identity.tokens import Identity


def mapping_key(mode: str, user_pool_id: str, sub: str) -> str:
    """The customers table's key of a user's mapping: one per (Stripe mode, user pool, sub)."""
    return f"{mode}#{user_pool_id}#{sub}"


def ticket_key(mapping: str) -> str:
    """The key of the item holding a user's customer-creation ticket (what their idempotency key is made of)."""
    return f"{mapping}#create"


# A ticket outlives Stripe's 24 h idempotency window; after that nothing is saved under it any more.
TICKET_TTL_SECONDS = 2 * 24 * 3600


def table_call(client: JsonApi, action: str, what: str, request: dict[str, Any]) -> dict[str, Any]:
    """One call on the customers table; any AWS failure is the service's 503 naming what failed."""
    try:
        return client.call(action, request)
    except AwsError as exc:
        raise MappingStoreUnavailable(log_detail=f"DynamoDB {what} failed: {exc.code}") from None


def conditional_write(client: JsonApi, action: str, what: str, request: dict[str, Any]) -> bool:
    """A conditional PutItem or DeleteItem: True if done, False if the condition failed; else 503."""
    try:
        client.call(action, request)
        return True
    except AwsError as exc:
        if exc.code == "ConditionalCheckFailedException":
            return False
        raise MappingStoreUnavailable(log_detail=f"DynamoDB {what} failed: {exc.code}") from None


def claim_key(mode: str, customer_id: str) -> str:
    """The key of the item recording which user holds an email-matched (or linked) customer."""
    return f"{mode}#claim#{customer_id}"


class CustomerMappingStore:
    """DynamoDB table: one item per (Stripe mode, user pool, sub) naming the Stripe customer.

    Writes are conditional, so concurrent first requests agree on one mapping whoever writes first.
    """

    def __init__(self, table_name: str, *, stripe_mode: str, client: AwsJsonClient | None = None):
        self.table = table_name
        self.mode = stripe_mode
        self._client = client or AwsJsonClient(DYNAMODB)  # the function's own region

    def key_for(self, identity: Identity) -> str:
        return mapping_key(self.mode, identity.user_pool_id, identity.sub)

    def endpoint(self) -> str | None:
        return self._client.endpoint()

    def get(self, key: str) -> str | None:
        return self._read(key, "customer_id", "GetItem")

    def put_if_absent(self, key: str, customer_id: str) -> str:
        """Store the mapping unless one exists; return whichever mapping won."""
        return self._conditional_put(key, customer_id, "attribute_not_exists(pk)", {})

    def replace(self, key: str, old_customer_id: str, new_customer_id: str) -> str:
        """Swap a stale mapping for a new one, unless someone already did; return the mapping in force."""
        return self._conditional_put(
            key,
            new_customer_id,
            "attribute_not_exists(pk) OR customer_id = :old",
            {":old": {"S": old_customer_id}},
        )

    def claim(self, identity: Identity, customer_id: str) -> bool:
        """Claim an existing (email-matched) customer for this user, exclusively: of two users racing for one
        customer, exactly one wins. True if this user holds the claim (now or from before)."""
        return self.claim_for(self.key_for(identity), customer_id)

    def claim_owner(self, customer_id: str) -> str | None:
        """The mapping key of the user holding a claim on this customer (email-matched or linked), if any."""
        return self._read(claim_key(self.mode, customer_id), "owner", "GetItem (claim)")

    def remove_if(self, key: str, customer_id: str) -> bool:
        """Remove a user's mapping if it still names this customer (so the next visit resolves again), and that
        user's claim on the customer. True if the mapping was removed."""
        removed = self._delete_if(key, "customer_id = :v", customer_id)
        self._delete_if(claim_key(self.mode, customer_id), "#owner = :v", key)
        return removed

    def _delete_if(self, pk: str, condition: str, value: str) -> bool:
        request = {"TableName": self.table, "Key": {"pk": {"S": pk}}, "ConditionExpression": condition,
                   "ExpressionAttributeValues": {":v": {"S": value}}}
        if "#owner" in condition:
            request["ExpressionAttributeNames"] = {"#owner": "owner"}
        return conditional_write(self._client, "DeleteItem", "DeleteItem", request)

    def creation_ticket(self, key: str) -> str:
        """This user's current creation ticket, made now if there is none. Concurrent first requests of one
        user agree on it (a conditional write), so they send Stripe the same idempotency key."""
        return self._put_ticket(key, spent=None)

    def renew_creation_ticket(self, key: str, spent: str | None) -> str:
        """Replace a ticket whose idempotency key Stripe has tied to an answer we cannot use (a saved 500, a
        customer now someone else's), unless another request already did; return the ticket in force."""
        return self._put_ticket(key, spent=spent)

    def _put_ticket(self, key: str, *, spent: str | None) -> str:
        """Write a fresh ticket where there is none (or it is still `spent`); else the ticket another request
        wrote is the one in force. Tried twice: a ticket may expire or be removed between write and read."""
        condition = "attribute_not_exists(pk)" if spent is None else "attribute_not_exists(pk) OR ticket = :spent"
        extra = {} if spent is None else {"ExpressionAttributeValues": {":spent": {"S": spent}}}
        for _ in range(2):
            fresh = secrets.token_hex(12)
            if self._put_if("PutItem (ticket)", Item=self._ticket_item(key, fresh), ConditionExpression=condition,
                            **extra):
                return fresh
            current = self._read(ticket_key(key), "ticket", "GetItem (ticket)")
            if current is not None:
                return current
        raise MappingStoreUnavailable(log_detail="creation ticket vanished while being written")

    def reference_key(self, *, create: bool = True) -> bytes | None:
        """The random key purchase references are signed with (purchase_reference.py), made on first use: of two
        first uses at once, the one written first is the one both read back. None if there is none yet and
        `create` is off (init only reads)."""
        pk = f"{self.mode}#reference-key"
        found = self._read(pk, "key", "GetItem (reference key)")
        if found is None and not create:
            return None
        if found is None:
            self._put_if("PutItem (reference key)", ConditionExpression="attribute_not_exists(pk)", Item={
                "pk": {"S": pk}, "key": {"S": secrets.token_hex(32)}, "updated_at": {"N": str(int(time.time()))}})
            found = self._read(pk, "key", "GetItem (reference key)")
        if found is None:
            raise MappingStoreUnavailable(log_detail="the purchase reference key vanished while being written")
        return bytes.fromhex(found)

    def mapped_customer(self, user_pool_id: str, sub: str) -> str | None:
        """The customer a user (by pool and sub) is mapped to, read consistently."""
        return self.get(mapping_key(self.mode, user_pool_id, sub))

    def claim_for(self, owner_key: str, customer_id: str) -> bool:
        """As `claim`, for a user named by their mapping key (the webhook function has no token)."""
        item = {"pk": {"S": claim_key(self.mode, customer_id)}, "owner": {"S": owner_key},
                "updated_at": {"N": str(int(time.time()))}}
        return self._put_if("PutItem (claim)", Item=item,
                            ConditionExpression="attribute_not_exists(pk) OR #owner = :owner",
                            ExpressionAttributeNames={"#owner": "owner"},
                            ExpressionAttributeValues={":owner": {"S": owner_key}})

    def _read(self, pk: str, attribute: str, what: str) -> str | None:
        """One string attribute of one item, read consistently; None when the item or attribute is absent."""
        item = table_call(self._client, "GetItem", what, {
            "TableName": self.table, "Key": {"pk": {"S": pk}}, "ConsistentRead": True, "ProjectionExpression": "#a",
            # by placeholder: some names are reserved words ("owner")
            "ExpressionAttributeNames": {"#a": attribute}}).get("Item")
        return item[attribute]["S"] if item and attribute in item else None

    @staticmethod
    def _ticket_item(key: str, ticket: str) -> dict:
        now = int(time.time())
        return {"pk": {"S": ticket_key(key)}, "ticket": {"S": ticket}, "updated_at": {"N": str(now)},
                "expires_at": {"N": str(now + TICKET_TTL_SECONDS)}}

    def _put_if(self, what: str, **request: Any) -> bool:
        """A conditional PutItem: True if written, False if the condition failed; any other failure is 503."""
        return conditional_write(self._client, "PutItem", what, {"TableName": self.table, **request})

    def _conditional_put(self, key: str, customer_id: str, condition: str, values: dict) -> str:
        mode, pool, sub = key.split("#", 2)
        item = {
            "pk": {"S": key},
            "customer_id": {"S": customer_id},
            "stripe_mode": {"S": mode},
            "user_pool_id": {"S": pool},
            "sub": {"S": sub},
            "updated_at": {"N": str(int(time.time()))},
        }
        extra = {"ExpressionAttributeValues": values} if values else {}
        if self._put_if("PutItem", Item=item, ConditionExpression=condition, **extra):
            return customer_id
        winner = self.get(key)
        if winner is None:  # the competing item vanished again; extremely unlikely, refuse rather than guess
            raise MappingStoreUnavailable(log_detail="conditional write lost to an item that is now gone")
        return winner
