"""DynamoDB adapter: billing status projections and the webhook events already handled, in the customers table.

One item per Stripe customer (`<mode>#billing#<customer id>`) holds what the status route answers with. Every
writer re-reads the customer's state from Stripe and stamps the item with when that read happened: the second of
Stripe's clock its first answer carried, then the writer's own clock when it started; a write only lands if no
later read has landed already, so deliveries in any order, duplicated or concurrent, end in the state Stripe had
last, and no writer's wrong clock can hold a status back by more than a second.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from portal_gateway.aws.client import DYNAMODB, AwsJsonClient, JsonApi
from portal_gateway.aws.mapping_store import conditional_write, table_call

# Stripe retries a delivery for up to 3 days; an event id is remembered a little longer than that.
EVENT_TTL_SECONDS = 4 * 24 * 3600


def projection_key(mode: str, customer_id: str) -> str:
    return f"{mode}#billing#{customer_id}"


def event_key(mode: str, event_id: str) -> str:
    return f"{mode}#event#{event_id}"


@dataclass(frozen=True)
class StoredProjection:
    projection: dict[str, Any] | None  # None once the customer is deleted in Stripe
    synced_at_ms: int

    @property
    def deleted(self) -> bool:
        return self.projection is None


class ProjectionStore:
    def __init__(self, table_name: str, *, stripe_mode: str, client: JsonApi | None = None):
        self.table = table_name
        self.mode = stripe_mode
        self._client = client or AwsJsonClient(DYNAMODB)

    def get(self, customer_id: str) -> StoredProjection | None:
        item = self._call("GetItem", "GetItem (projection)", Key=self._key(projection_key(self.mode, customer_id)),
                          ConsistentRead=True, ProjectionExpression="#p, synced_at, deleted",
                          ExpressionAttributeNames={"#p": "projection"}).get("Item")  # a reserved word
        if not item or "synced_at" not in item:
            return None
        if item.get("deleted", {}).get("BOOL"):
            return StoredProjection(None, int(item["synced_at"]["N"]))
        try:
            projection = json.loads(item["projection"]["S"])
        except (KeyError, ValueError):
            return None  # unreadable: treated as missing, so it is read from Stripe again
        return StoredProjection(projection, int(item["synced_at"]["N"]))

    def put(self, customer_id: str, projection: dict[str, Any] | None, *, synced_at_ms: int,
            read_at_ms: int | None = None) -> bool:
        """Store what a read of Stripe found (None: the customer is deleted), unless a later read is stored
        already. Reads are ordered by `synced_at_ms` (Stripe's clock, whole seconds), then `read_at_ms` (the
        writer's clock when the read started). True if this one landed."""
        read_at_ms = synced_at_ms if read_at_ms is None else read_at_ms
        item: dict[str, Any] = {**self._key(projection_key(self.mode, customer_id)),
                                "synced_at": {"N": str(synced_at_ms)}, "read_at": {"N": str(read_at_ms)},
                                "updated_at": {"N": str(int(time.time()))}}
        if projection is None:
            item["deleted"] = {"BOOL": True}
        else:
            item["projection"] = {"S": json.dumps(projection, sort_keys=True, separators=(",", ":"))}
        # A deleted customer stays deleted (Stripe cannot undo a deletion): no later read overwrites that.
        condition = ("attribute_not_exists(pk) OR (attribute_not_exists(deleted) AND (synced_at < :t OR "
                     "(synced_at = :t AND (attribute_not_exists(read_at) OR read_at < :r))))")
        return conditional_write(self._client, "PutItem", "PutItem (projection)", {
            "TableName": self.table, "Item": item, "ConditionExpression": condition,
            "ExpressionAttributeValues": {":t": {"N": str(synced_at_ms)}, ":r": {"N": str(read_at_ms)}}})

    def event_seen(self, event_id: str) -> bool:
        return bool(self._call("GetItem", "GetItem (event)", Key=self._key(event_key(self.mode, event_id)),
                               ConsistentRead=True, ProjectionExpression="pk").get("Item"))

    def record_event(self, event_id: str, event_type: str) -> None:
        now = int(time.time())
        self._call("PutItem", "PutItem (event)", Item={**self._key(event_key(self.mode, event_id)),
                                                       "event_type": {"S": event_type},
                                                       "updated_at": {"N": str(now)},
                                                       "expires_at": {"N": str(now + EVENT_TTL_SECONDS)}})

    def stale(self, older_than_ms: int, start_key: dict | None, page_size: int = 100
              ) -> tuple[list[str], dict | None]:
        """One scan page's customers whose projection was read before `older_than_ms` (by Stripe's clock; not
        deleted ones), and where the next page starts (None: the table is done)."""
        request: dict[str, Any] = {
            "FilterExpression": "begins_with(pk, :prefix) AND synced_at < :cutoff AND attribute_not_exists(deleted)",
            "ExpressionAttributeValues": {":prefix": {"S": f"{self.mode}#billing#"},
                                          ":cutoff": {"N": str(older_than_ms)}},
            "ProjectionExpression": "pk", "Limit": page_size}
        if start_key:
            request["ExclusiveStartKey"] = start_key
        page = self._call("Scan", "Scan (stale projections)", **request)
        prefix = f"{self.mode}#billing#"
        customers = [item["pk"]["S"][len(prefix):] for item in page.get("Items", [])]
        return customers, page.get("LastEvaluatedKey")

    def showing(self, catalog_id: str, start_key: dict | None = None) -> tuple[list[str], dict | None]:
        """One scan page's customers whose stored status names this price or product id, and where the next page
        starts (None: the table is done)."""
        request: dict[str, Any] = {
            "FilterExpression": "begins_with(pk, :prefix) AND contains(#p, :id)",
            "ExpressionAttributeNames": {"#p": "projection"},
            "ExpressionAttributeValues": {":prefix": {"S": f"{self.mode}#billing#"},
                                          ":id": {"S": f'"{catalog_id}"'}},
            "ProjectionExpression": "pk"}
        if start_key:
            request["ExclusiveStartKey"] = start_key
        page = self._call("Scan", "Scan (statuses of a price or product)", **request)
        prefix = f"{self.mode}#billing#"
        return [item["pk"]["S"][len(prefix):] for item in page.get("Items", [])], page.get("LastEvaluatedKey")

    def note_catalog_change(self, catalog_id: str) -> None:
        """A price or product changed: the statuses showing it are read again by the next scheduled run. One item
        per id, so changes noted at once never overwrite one another."""
        self._call("PutItem", "PutItem (catalog change)", Item={
            **self._key(f"{self.mode}#catalog-change#{catalog_id}"), "catalog_id": {"S": catalog_id},
            "updated_at": {"N": str(int(time.time()))}})

    def catalog_changes(self) -> list[str]:
        """The price and product ids noted as changed and not yet applied (every scan page)."""
        found: list[str] = []
        request: dict[str, Any] = {"FilterExpression": "begins_with(pk, :prefix)", "ProjectionExpression": "catalog_id",
                                   "ExpressionAttributeValues": {":prefix": {"S": f"{self.mode}#catalog-change#"}}}
        while True:
            page = self._call("Scan", "Scan (catalog changes)", **request)
            found += [item["catalog_id"]["S"] for item in page.get("Items", []) if "catalog_id" in item]
            if "LastEvaluatedKey" not in page:
                return sorted(found)
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def catalog_change_applied(self, catalog_id: str) -> None:
        self._call("DeleteItem", "DeleteItem (catalog change)",
                   Key=self._key(f"{self.mode}#catalog-change#{catalog_id}"))

    def marker(self, name: str) -> dict[str, Any]:
        """A small record of the reconciliation's progress (`<mode>#reconcile#<name>`): {} when there is none."""
        item = self._call("GetItem", "GetItem (marker)", Key=self._key(f"{self.mode}#reconcile#{name}"),
                          ConsistentRead=True).get("Item")
        try:
            return json.loads(item["value"]["S"]) if item else {}
        except (KeyError, ValueError):
            return {}

    def put_marker(self, name: str, value: dict[str, Any]) -> None:
        self._call("PutItem", "PutItem (marker)", Item={**self._key(f"{self.mode}#reconcile#{name}"),
                                                        "value": {"S": json.dumps(value, sort_keys=True)},
                                                        "updated_at": {"N": str(int(time.time()))}})

    def _key(self, pk: str) -> dict[str, Any]:
        return {"pk": {"S": pk}}

    def _call(self, action: str, what: str, **request: Any) -> dict[str, Any]:
        return table_call(self._client, action, what, {"TableName": self.table, **request})


def now_ms() -> int:
    return time.time_ns() // 1_000_000
