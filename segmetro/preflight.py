"""Will it bill? ``preflight`` before a backfill, ``reconcile`` after it.

Both map and validate the inputs as a dry run does (nothing is sent), judge every valid event
against the account with ``billing.py``'s rules, and add up the usage the backfill should make.
``reconcile`` then asks Metronome for that usage (``POST /v1/usage``, by day) and reports every
customer × metric × day where Metronome holds less than this backfill alone should have added (live
traffic may add more: less is the only failure), and looks up a sample of transaction ids
(``POST /v1/events/search``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson

from segmetro.account import AccountClient
from segmetro.billing import DAY_MS, Account, Assessment
from segmetro.summary import RunReport
from segmetro.run import Flow, run_local
from segmetro.status import ExitStatus
from segmetro.timestamps import format_ms, parse_rfc3339

COMPARABLE = ("count", "sum", "max", "unique")  # latest is not a lower bound of anything


def assess(flow: Flow, account: Account, by_day: bool = False, sample: int = 0,
           seed: int = 0) -> tuple[RunReport, Assessment, list[str]]:
    """Run the flow as a dry run, judging each valid event (those inside the flow's
    --since/--until); also a reservoir sample of the transaction ids that should bill."""
    assessment = Assessment(account, by_day)
    chosen: list[str] = []
    rng = random.Random(seed)
    seen = [0]

    def on_events(jsons: list[bytes]) -> None:
        for event in map(orjson.loads, jsons):
            epoch_ms = parse_rfc3339(event["timestamp"])
            if assessment.add(event, epoch_ms) and sample:
                seen[0] += 1
                if len(chosen) < sample:
                    chosen.append(event["transaction_id"])
                else:
                    slot = rng.randrange(seen[0])
                    if slot < sample:
                        chosen[slot] = event["transaction_id"]

    report = run_local(flow, on_events=on_events)
    return report, assessment, chosen


def preflight_json(report: RunReport, assessment: Assessment) -> dict:
    result = report.as_json()
    result.update(
        events=assessment.events, billable=assessment.billable,
        unbillable=assessment.unbillable, uncertain=assessment.uncertain,
        unbillable_by_reason=dict(assessment.unbillable_by_reason.most_common()),
        unbillable_examples=assessment.reason_examples,
        unknown_customers=sum(assessment.unknown_customer_ids.values()),
        unknown_customer_ids=dict(assessment.unknown_customer_ids.most_common(20)),
        archived_customer_events=sum(assessment.archived_customer_ids.values()),
        archived_customer_ids=dict(assessment.archived_customer_ids.most_common(20)),
        by_event_type={event_type: dict(counts)
                       for event_type, counts in assessment.by_event_type.items()},
        by_metric=assessment.by_metric(), usage=assessment.usage_rows(),
        sql_metrics=[{"id": m.id, "name": m.name} for m in assessment.sql_metrics])
    result["exit_status"] = int(preflight_status(report, assessment))
    return result


def preflight_status(report: RunReport, assessment: Assessment) -> ExitStatus:
    status = report.exit_status()
    if status not in (ExitStatus.OK, ExitStatus.REJECTED):
        return status
    if assessment.unbillable or assessment.uncertain or status is ExitStatus.REJECTED:
        return ExitStatus.REJECTED
    return ExitStatus.OK


@dataclass
class Reconciliation:
    checked: int = 0
    short: list[dict] = field(default_factory=list)
    not_compared: int = 0  # latest metrics: not a lower bound
    sampled: int = 0
    not_found: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unmatched_customer: list[str] = field(default_factory=list)
    unmatched_metric: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"checked": self.checked, "short": self.short, "not_compared": self.not_compared,
                "sampled": self.sampled, "not_found": self.not_found,
                "duplicates": self.duplicates, "unmatched_customer": self.unmatched_customer,
                "unmatched_metric": self.unmatched_metric}

    def failed(self) -> bool:
        return bool(self.short or self.not_found or self.unmatched_customer or
                    self.unmatched_metric)


def _day(day: str) -> int:
    return parse_rfc3339(f"{day}T00:00:00Z")


def compare_usage(client: AccountClient, assessment: Assessment, result: Reconciliation) -> None:
    metrics = {m.id: m for m in assessment.account.metrics}
    cells = {key: cell for key, cell in assessment.usage.items()
             if metrics[key[0]].aggregation in COMPARABLE}
    result.not_compared = len(assessment.usage) - len(cells)
    if not cells:
        return
    days = sorted({day for _metric, _customer, day in cells})
    customers = sorted({customer for _metric, customer, _day in cells})
    metric_ids = sorted({metric for metric, _customer, _day in cells})
    actual: dict = {}
    for start in range(0, len(customers), 100):
        rows = client.usage(format_ms(_day(days[0]))[:19] + "Z",
                            format_ms(_day(days[-1]) + DAY_MS)[:19] + "Z",
                            customers[start:start + 100], metric_ids)
        for row in rows:
            key = (row["billable_metric_id"], row["customer_id"], row["start_timestamp"][:10])
            actual[key] = row.get("value")
    for key, cell in sorted(cells.items()):
        result.checked += 1
        expected: Any = cell.value(metrics[key[0]])
        got = actual.get(key)
        if expected is None:
            continue
        if got is None or got < expected:
            result.short.append({"customer_id": key[1], "metric_id": key[0],
                                 "metric": metrics[key[0]].name, "day": key[2],
                                 "expected": expected, "actual": got or 0})


def check_sample(client: AccountClient, sample: list[str], result: Reconciliation) -> None:
    result.sampled = len(sample)
    found: dict[str, list[dict]] = {}
    for event in client.search(sample):
        found.setdefault(event.get("transaction_id"), []).append(event)
    for txid in sample:
        events = found.get(txid)
        if not events:
            result.not_found.append(txid)
            continue
        if len(events) > 1 or any(e.get("is_duplicate") for e in events):
            result.duplicates.append(txid)
        if not any(e.get("matched_customer") for e in events):
            result.unmatched_customer.append(txid)
        if not any(e.get("matched_billable_metrics") for e in events):
            result.unmatched_metric.append(txid)
