"""Metronome's matching rules: will an event bill? One pure module for preflight, reconcile and the
emulator, so the three can never disagree.

- A billable metric takes an event when its ``event_type_filter`` (``in_values``,
  ``not_in_values``) and every one of its ``property_filters`` (``exists``, ``in_values``,
  ``not_in_values``) pass. Values are listed as strings; how a number property compares with "3"
  is not documented, so such a comparison is ``uncertain``, never guessed.
- SUM and MAX need the aggregation key present and a number (or a numeric string); UNIQUE and
  LATEST need it present; COUNT needs nothing more.
- A SQL metric cannot be evaluated here: it is listed as such.
- An event's ``customer_id`` resolves when it is a customer's id or one of its ingest aliases;
  an archived customer is reported apart.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from segmetro.timestamps import format_ms

_NUMERIC = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
DAY_MS = 86_400_000


def _number(value: Any) -> float | None:
    if value.__class__ in (int, float):
        return float(value)
    if isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
        return float(value)
    return None


def _as_listed(value: Any) -> str | None:
    """A property value as a filter lists it (a string); None for a value that is not one."""
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Metric:
    id: str
    name: str
    sql: bool = False
    event_types: frozenset | None = None  # event_type_filter.in_values
    excluded_types: frozenset = frozenset()  # event_type_filter.not_in_values
    property_filters: tuple = ()  # (name, exists, in_values, not_in_values)
    aggregation: str = "count"
    key: str | None = None

    @classmethod
    def from_api(cls, data: dict) -> "Metric":
        types = data.get("event_type_filter") or {}
        filters = tuple(
            (f["name"], f.get("exists"),
             frozenset(f["in_values"]) if f.get("in_values") is not None else None,
             frozenset(f.get("not_in_values") or ()))
            for f in data.get("property_filters") or ())
        return cls(
            id=data["id"], name=data.get("name", data["id"]), sql=bool(data.get("sql")),
            event_types=frozenset(types["in_values"]) if types.get("in_values") is not None
            else None,
            excluded_types=frozenset(types.get("not_in_values") or ()),
            property_filters=filters,
            aggregation=str(data.get("aggregation_type") or "count").lower(),
            key=data.get("aggregation_key"))

    def names(self, event_type: str) -> bool:
        if self.event_types is not None and event_type not in self.event_types:
            return False
        return event_type not in self.excluded_types


@dataclass(frozen=True)
class Verdict:
    """How one metric judges one event: ``ok``, or ``reason`` (a code) with ``detail``."""

    ok: bool
    reason: str | None = None
    detail: str = ""
    uncertain: bool = False


def judge(metric: Metric, event: dict) -> Verdict:
    """Whether ``metric`` takes ``event`` (whose event_type the caller already checked)."""
    if metric.sql:
        return Verdict(False, "sql-metric", f"{metric.name} is a SQL metric: not checked here",
                       uncertain=True)
    properties = event.get("properties") or {}
    uncertain = False
    for name, exists, in_values, not_in_values in metric.property_filters:
        present = name in properties and properties[name] is not None
        if exists is True and not present:
            return Verdict(False, "property-filter-not-met",
                           f"property {name!r} is missing ({metric.name} needs it)")
        if exists is False and present:
            return Verdict(False, "property-filter-not-met",
                           f"property {name!r} is present ({metric.name} needs it absent)")
        if not present:
            if in_values is not None:
                return Verdict(False, "property-filter-not-met",
                               f"property {name!r} is missing ({metric.name} takes "
                               f"{sorted(in_values)})")
            continue
        value = properties[name]
        listed = _as_listed(value)
        if listed is None:  # a number or boolean against string values: undocumented
            if in_values is not None or not_in_values:
                uncertain = True
            continue
        if in_values is not None and listed not in in_values:
            return Verdict(False, "property-filter-not-met",
                           f"property {name!r} is {listed!r}, not one of {sorted(in_values)} "
                           f"({metric.name})")
        if listed in not_in_values:
            return Verdict(False, "property-filter-not-met",
                           f"property {name!r} is {listed!r}, which {metric.name} excludes")
    if metric.aggregation != "count" and metric.key:
        value = properties.get(metric.key)
        if value is None:
            return Verdict(False, "aggregation-key-missing",
                           f"{metric.aggregation.upper()} of {metric.key!r}: the property is "
                           f"missing ({metric.name})")
        if metric.aggregation in ("sum", "max") and _number(value) is None:
            return Verdict(False, "aggregation-key-not-number",
                           f"{metric.aggregation.upper()} of {metric.key!r}: {value!r} is not a "
                           f"number ({metric.name})")
    return Verdict(True, "uncertain" if uncertain else None, uncertain=uncertain)


@dataclass
class Customers:
    """The account's customers, by Metronome id and by ingest alias."""

    by_key: dict = field(default_factory=dict)  # id or alias -> (metronome id, name, archived)

    @classmethod
    def from_api(cls, customers: Iterable[dict]) -> "Customers":
        index: dict = {}
        for customer in customers:
            entry = (customer["id"], customer.get("name", ""), bool(customer.get("archived_at")))
            for key in [customer["id"], *(customer.get("ingest_aliases") or ())]:
                if key not in index or index[key][2]:  # an active customer wins an alias
                    index[key] = entry
        return cls(index)

    def resolve(self, customer_id: str) -> tuple | None:
        return self.by_key.get(customer_id)


@dataclass
class Cell:
    """Usage of one metric for one customer (and day): as the metric aggregates."""

    events: int = 0
    total: float = 0.0
    maximum: float | None = None
    unique: set = field(default_factory=set)
    latest: tuple | None = None  # (epoch ms, value)

    def add(self, metric: Metric, event: dict, epoch_ms: int) -> None:
        self.events += 1
        if metric.aggregation == "count" or not metric.key:
            return
        value = (event.get("properties") or {}).get(metric.key)
        number = _number(value)
        if metric.aggregation == "sum" and number is not None:
            self.total += number
        elif metric.aggregation == "max" and number is not None:
            self.maximum = number if self.maximum is None else max(self.maximum, number)
        elif metric.aggregation == "unique":
            self.unique.add(repr(value))
        elif metric.aggregation == "latest":
            if self.latest is None or epoch_ms >= self.latest[0]:
                self.latest = (epoch_ms, number if number is not None else value)

    def value(self, metric: Metric) -> Any:
        kind = metric.aggregation
        if kind == "sum":
            return self.total
        if kind == "max":
            return self.maximum
        if kind == "unique":
            return len(self.unique)
        if kind == "latest":
            return self.latest[1] if self.latest else None
        return self.events


@dataclass
class Account:
    metrics: list[Metric]
    customers: Customers


@dataclass
class Assessment:
    """What a set of events adds up to against an account: the numbers of a preflight."""

    account: Account
    by_day: bool = False
    events: int = 0
    billable: int = 0
    unbillable: int = 0
    uncertain: int = 0
    unbillable_by_reason: Counter = field(default_factory=Counter)
    reason_examples: dict = field(default_factory=dict)
    by_event_type: dict = field(default_factory=lambda: defaultdict(Counter))
    metric_events: Counter = field(default_factory=Counter)
    metric_uncertain: Counter = field(default_factory=Counter)  # matched only by open rules
    unknown_customer_ids: Counter = field(default_factory=Counter)
    archived_customer_ids: Counter = field(default_factory=Counter)
    usage: dict = field(default_factory=dict)  # (metric id, metronome customer id, day) -> Cell
    sql_metrics: list = field(default_factory=list)
    _by_type: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sql_metrics = [m for m in self.account.metrics if m.sql]

    def _candidates(self, event_type: str) -> list[Metric]:
        found = self._by_type.get(event_type)
        if found is None:
            found = self._by_type[event_type] = [
                m for m in self.account.metrics if not m.sql and m.names(event_type)]
        return found

    def add(self, event: dict, epoch_ms: int) -> list[tuple[Metric, str]]:
        """Judge one valid event; returns the metrics (and Metronome customer) it bills to."""
        self.events += 1
        event_type = event["event_type"]
        per_type = self.by_event_type[event_type]
        per_type["events"] += 1
        customer = self.account.customers.resolve(event["customer_id"])
        reason, detail = None, ""
        if customer is None:
            self.unknown_customer_ids[event["customer_id"]] += 1
            reason, detail = "unknown-customer", (
                f"customer_id {event['customer_id']!r} is neither a customer id nor an ingest "
                "alias")
        elif customer[2]:
            self.archived_customer_ids[event["customer_id"]] += 1
            reason, detail = "archived-customer", f"customer {customer[1]!r} is archived"
        matched: list[tuple[Metric, str]] = []
        sure = False
        candidates = self._candidates(event_type)
        if not candidates and reason is None:
            reason, detail = ("sql-metric-only" if self.sql_metrics else "no-metric-for-event-type",
                              f"no billable metric takes event_type {event_type!r}"
                              + (" (SQL metrics are not checked here)" if self.sql_metrics
                                 else ""))
        first_failure = None
        open_rules = []
        for metric in candidates:
            verdict = judge(metric, event)
            if verdict.ok and not verdict.uncertain:
                matched.append((metric, customer[0] if customer else event["customer_id"]))
                sure = True
            elif verdict.ok:
                open_rules.append(metric)
            elif first_failure is None:
                first_failure = verdict
        if reason is None:
            for metric in open_rules:  # counted apart, never added to usage
                self.metric_uncertain[metric.id] += 1
        if not matched and not open_rules and reason is None and first_failure is not None:
            reason, detail = first_failure.reason, first_failure.detail
        if reason is not None:
            self.unbillable += 1
            self.unbillable_by_reason[reason] += 1
            self.reason_examples.setdefault(reason, detail)
            per_type["unbillable"] += 1
            return []
        if not sure:  # only rules the docs leave open take it
            self.uncertain += 1
            per_type["uncertain"] += 1
        else:
            self.billable += 1
            per_type["billable"] += 1
        day = format_ms(epoch_ms - epoch_ms % DAY_MS)[:10] if self.by_day else ""
        for metric, customer_key in matched:
            self.metric_events[metric.id] += 1
            per_type[f"metric:{metric.id}"] += 1
            cell = self.usage.get((metric.id, customer_key, day))
            if cell is None:
                cell = self.usage[(metric.id, customer_key, day)] = Cell()
            cell.add(metric, event, epoch_ms)
        return matched

    def by_metric(self) -> list[dict]:
        totals: dict = {}
        for (metric_id, _customer, _day), cell in self.usage.items():
            totals.setdefault(metric_id, []).append(cell)
        out = []
        for metric in self.account.metrics:
            cells = totals.get(metric.id, [])
            if metric.aggregation in ("sum", "count"):
                value: Any = sum(cell.value(metric) or 0 for cell in cells)
            elif metric.aggregation == "max":
                values = [cell.value(metric) for cell in cells if cell.value(metric) is not None]
                value = max(values) if values else None
            else:
                value = None  # unique and latest do not add up across customers
            out.append({"id": metric.id, "name": metric.name, "aggregation": metric.aggregation,
                        "events": self.metric_events.get(metric.id, 0),
                        "uncertain": self.metric_uncertain.get(metric.id, 0),
                        "value": None if metric.sql else value, "sql": metric.sql})
        return out

    def usage_rows(self) -> list[dict]:
        names = {m.id: m for m in self.account.metrics}
        rows = []
        for (metric_id, customer, day), cell in sorted(self.usage.items()):
            row = {"metric_id": metric_id, "metric": names[metric_id].name,
                   "customer_id": customer, "events": cell.events,
                   "value": cell.value(names[metric_id])}
            if day:
                row["day"] = day
            rows.append(row)
        return rows
