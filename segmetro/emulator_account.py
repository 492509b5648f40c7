"""The emulator's read side: Metronome's account endpoints served from fixture files and from the
events the emulator stored, with the matching rules of ``billing.py``.

``GET /v1/billable-metrics`` and ``GET /v1/customers`` (paged with ``limit`` and ``next_page``),
``POST /v1/events/search`` and ``POST /v1/usage`` (paged with ``next_page``), in the shapes of
Metronome's OpenAPI document, so a whole backfill (preflight, send, reconcile) can be rehearsed.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs

import orjson

from segmetro.billing import DAY_MS, Cell, Customers, Metric, judge
from segmetro.timestamps import format_ms, parse_rfc3339

def _iso(epoch_ms: int) -> str:
    return format_ms(epoch_ms)[:19] + "Z"


class AccountService:
    ROUTES = {"/v1/billable-metrics": "GET", "/v1/customers": "GET",
              "/v1/events/search": "POST", "/v1/usage": "POST"}

    def __init__(self, metrics: list[dict], customers: list[dict], page_size: int = 100):
        self.metrics_raw = metrics
        self.customers_raw = customers
        self.metrics = [Metric.from_api(m) for m in metrics]
        self.customers = Customers.from_api(customers)
        self.page_size = page_size
        self.events: dict[str, tuple[dict, int, str]] = {}  # txid -> (event, epoch ms, id)
        self.duplicated: set[str] = set()

    def keep(self, event: dict) -> None:
        epoch_ms = parse_rfc3339(event["timestamp"])
        self.events[event["transaction_id"]] = (event, epoch_ms, str(uuid.uuid4()))

    def duplicate(self, txid: str) -> None:
        self.duplicated.add(txid)

    def handle(self, path: str, query: str, body: bytes) -> tuple[int, object]:
        params = parse_qs(query)
        try:
            payload = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return 400, {"message": "body is not valid JSON"}
        if path == "/v1/billable-metrics":
            return 200, self._page(self.metrics_raw, params)
        if path == "/v1/customers":
            archived = params.get("only_archived", ["false"])[0] == "true"
            chosen = [c for c in self.customers_raw if bool(c.get("archived_at")) == archived]
            return 200, self._page(chosen, params)
        if path == "/v1/events/search":
            if not isinstance(payload, dict) or not isinstance(payload.get("transactionIds"),
                                                               list):
                return 400, {"message": "transactionIds is required"}
            return 200, [self._found(txid) for txid in payload["transactionIds"]
                         if txid in self.events]
        return self._usage(payload, params)

    def _page(self, items: list, params: dict) -> dict:
        try:
            limit = min(int(params.get("limit", ["100"])[0]), 100, self.page_size)
            start = int(params.get("next_page", ["0"])[0])
        except ValueError:
            return {"data": [], "next_page": None}
        end = start + max(limit, 1)
        return {"data": items[start:end], "next_page": str(end) if end < len(items) else None}

    def _matches(self, event: dict) -> tuple[tuple | None, list[Metric]]:
        customer = self.customers.resolve(event["customer_id"])
        metrics = [m for m in self.metrics if not m.sql and m.names(event["event_type"])
                   and judge(m, event).ok]
        return customer, metrics

    def _found(self, txid: str) -> dict:
        event, _epoch_ms, event_id = self.events[txid]
        customer, metrics = self._matches(event)
        found = {"id": event_id, "transaction_id": txid, "customer_id": event["customer_id"],
                 "event_type": event["event_type"], "timestamp": event["timestamp"],
                 "properties": event.get("properties") or {},
                 "is_duplicate": txid in self.duplicated,
                 "processed_at": event["timestamp"],
                 "matched_billable_metrics": [{"id": m.id, "name": m.name} for m in metrics]}
        if customer is not None and not customer[2]:
            found["matched_customer"] = {"id": customer[0], "name": customer[1]}
        return found

    def _usage(self, query: object, params: dict) -> tuple[int, object]:
        if not isinstance(query, dict) or not all(k in query for k in
                                                   ("starting_on", "ending_before",
                                                    "window_size")):
            return 400, {"message": "starting_on, ending_before and window_size are required"}
        start, end = parse_rfc3339(query["starting_on"]), parse_rfc3339(query["ending_before"])
        window = str(query["window_size"]).lower()
        if start is None or end is None or window not in ("day", "hour", "none"):
            return 400, {"message": "bad starting_on, ending_before or window_size"}
        size = {"day": DAY_MS, "hour": 3_600_000, "none": None}[window]
        customers = set(query.get("customer_ids") or ())
        wanted = {m["id"] for m in query.get("billable_metrics") or ()}
        metrics = [m for m in self.metrics if not m.sql and (not wanted or m.id in wanted)]
        cells: dict = {}
        for event, epoch_ms, _ in self.events.values():
            if not start <= epoch_ms < end:
                continue
            customer = self.customers.resolve(event["customer_id"])
            if customer is None or customer[2] or (customers and customer[0] not in customers):
                continue
            bucket = start if size is None else epoch_ms - (epoch_ms - start) % size
            for metric in metrics:
                if metric.names(event["event_type"]) and judge(metric, event).ok:
                    key = (customer[0], metric.id, bucket)
                    cell = cells.get(key) or cells.setdefault(key, Cell())
                    cell.add(metric, event, epoch_ms)
        names = {m.id: m for m in metrics}
        rows = [{"customer_id": customer, "billable_metric_id": metric_id,
                 "billable_metric_name": names[metric_id].name, "start_timestamp": _iso(bucket),
                 "end_timestamp": _iso(end if size is None else bucket + size),
                 "value": cell.value(names[metric_id])}
                for (customer, metric_id, bucket), cell in sorted(cells.items())]
        return 200, self._page(rows, {"limit": [str(self.page_size)], **params})
