"""Compiled mappings: a Segment record in, Metronome events (or reasons) out. The hot loop."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import orjson
from typing import Any, Callable

from segmetro.jsvalues import js_json
from segmetro.mapping.fields import FieldValue, as_string, json_type
from segmetro.mapping.fql import Trigger
from segmetro.mapping.paths import MISSING
from segmetro.timestamps import coerce as coerce_timestamp

STRING_FIELDS = ("transaction_id", "customer_id", "event_type")


@dataclass(slots=True)
class MappedEvent:
    """What one mapping made of one record: an event, or the reason it could not."""

    mapping: str
    event: dict | None
    epoch_ms: int | None = None
    code: str | None = None
    reason: str | None = None


@dataclass
class Mapping:
    name: str
    fields: dict[str, FieldValue]
    properties: Callable[[Any], Any] | None = None
    trigger: Trigger | None = None
    trigger_text: str | None = None
    line: int = 0  # where the mapping starts in its file, for messages
    enabled: bool = True
    transaction_id_spelling: str = ""  # as written in the file: the state's transaction_id rule
    properties_required: bool = False  # written in Segment's form: Send Event requires it

    def __post_init__(self) -> None:
        self.apply = self._compile()

    def _compile(self) -> Callable[[dict], MappedEvent]:
        name = self.name
        strings = tuple((name, self.fields[name]) for name in STRING_FIELDS)
        timestamp = self.fields["timestamp"]
        get_time = timestamp.get
        build_properties = self.properties

        def fail(code: str, reason: str) -> MappedEvent:
            return MappedEvent(name, None, None, code, reason)

        def string_field(field_name: str, spec: FieldValue, value: Any,
                         record: dict) -> MappedEvent:
            if value is MISSING and spec.missing is not None:
                return fail("missing-field", f"{field_name}: {spec.missing(record)}")
            if value is MISSING or value is None:
                got = "no value" if value is MISSING else "null"
                return fail(f"missing-{field_name.replace('_', '-')}",
                            f"{field_name} is missing: {got} at {spec.tried}")
            return fail(f"bad-{field_name.replace('_', '-')}", f"{field_name} must be a string; "
                        f"{spec.tried} holds {json_type(value)}")

        properties_required = self.properties_required
        (_, get_txid), (_, get_customer), (_, get_type) = \
            ((field_name, spec.get) for field_name, spec in strings)

        def text_of(index: int, value: Any, record: dict) -> Any:
            """A string field's value that is not a string: coerced, or the failure."""
            text = as_string(value) if value is not MISSING else None
            if text is None:
                field_name, spec = strings[index]
                return string_field(field_name, spec, value, record)
            return text

        def apply(record: dict) -> MappedEvent:
            # Keys in the order Segment's destination writes them, so bodies are byte-identical.
            txid = get_txid(record)
            if txid.__class__ is not str:
                txid = text_of(0, txid, record)
                if txid.__class__ is MappedEvent:
                    return txid
            customer = get_customer(record)
            if customer.__class__ is not str:
                customer = text_of(1, customer, record)
                if customer.__class__ is MappedEvent:
                    return customer
            event_type = get_type(record)
            if event_type.__class__ is not str:
                event_type = text_of(2, event_type, record)
                if event_type.__class__ is MappedEvent:
                    return event_type
            raw_time = get_time(record)
            if raw_time is MISSING or raw_time is None:
                return fail("missing-timestamp", "timestamp is missing: "
                            f"{'no value' if raw_time is MISSING else 'null'} at {timestamp.tried}")
            parsed = coerce_timestamp(raw_time)
            if parsed is None:
                return fail("bad-timestamp", f"timestamp {raw_time!r} from {timestamp.tried} "
                            "is not a date and time segmetro can read")
            event = {"transaction_id": txid, "customer_id": customer, "timestamp": parsed[0],
                     "event_type": event_type}
            if build_properties is not None:
                properties = build_properties(record)
                if properties.__class__ is dict:
                    event["properties"] = js_json(properties)
                elif properties is not MISSING:
                    return fail(*properties)
                elif properties_required:
                    return fail("missing-properties", "properties is missing or null; Segment's "
                                "Send Event requires it (this mapping is in Segment's form)")
            return MappedEvent(name, event, parsed[1])

        return apply


@dataclass
class MappingSet:
    """The mappings of one file, applied in file order; each matching one emits its own event."""

    mappings: list[Mapping]
    source: str  # file name, or "<default>"
    warnings: list[str] = field(default_factory=list)
    text: str = ""  # the YAML it was read from (a reader process compiles its own copy)

    @property
    def needles(self) -> tuple[bytes, ...] | None:
        """Byte strings one of which every record any mapping can match must contain (its
        ``event`` or ``type`` as a JSON string), or None when some mapping could match without
        (no trigger, or one that requires neither). A line without a backslash holds a JSON
        string only as its literal bytes, so a line holding none of these cannot match."""
        found: set[bytes] = set()
        for mapping in self.mappings:
            requires = mapping.trigger.requires if mapping.trigger else {}
            values = requires.get("event") or requires.get("type")
            if not values:
                return None
            for value in values:
                needle = orjson.dumps(value)
                if b"\\" in needle:  # a value JSON must escape: the bytes vary, no shortcut
                    return None
                found.add(needle)
        return tuple(sorted(found))

    @property
    def transaction_id_rule(self) -> str:
        """How this file makes transaction ids, as written (order of mappings aside)."""
        spellings = sorted({m.transaction_id_spelling for m in self.mappings})
        return spellings[0] if len(spellings) == 1 else "[" + ", ".join(spellings) + "]"

    @property
    def digest(self) -> str:
        """SHA-256 of the mapping text: a checkpoint is valid for one mapping only."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def __post_init__(self) -> None:
        self.apply = self._compile()

    def _compile(self) -> Callable[[dict], list[MappedEvent]]:
        """record -> one MappedEvent per matching mapping, in file order.

        With many mappings, those whose trigger requires an ``event`` name are indexed by it, so
        a record is tested only against the mappings that can match it (Segment-style files are
        mostly ``type = "track" and event = "..."``). The full trigger still decides.
        """
        steps = tuple((m.trigger.predicate if m.trigger else None, m.apply)
                      for m in self.mappings)
        if len(steps) == 1:
            ((predicate, build),) = steps
            if predicate is None:
                return lambda record: [build(record)]
            return lambda record: [build(record)] if predicate(record) else []
        by_event: dict[str, tuple] = {}
        unindexed = tuple(step for step, m in zip(steps, self.mappings)
                          if not (m.trigger and "event" in m.trigger.requires))
        for name in {n for m in self.mappings if m.trigger
                     for n in m.trigger.requires.get("event", ())}:
            by_event[name] = tuple(
                step for step, m in zip(steps, self.mappings)
                if not (m.trigger and "event" in m.trigger.requires)
                or name in m.trigger.requires["event"])

        def apply(record: dict) -> list[MappedEvent]:
            event = record.get("event")
            candidates = by_event.get(event, unindexed) if event.__class__ is str else unindexed
            results = [build(record) for predicate, build in candidates
                       if predicate is None or predicate(record)]
            if len(results) > 1:
                _reject_shared_transaction_ids(results)
            return results

        return apply


def _reject_shared_transaction_ids(results: list[MappedEvent]) -> None:
    """Two mappings giving one record the same transaction_id: Metronome would keep the first."""
    seen: dict[str, str] = {}
    for index, result in enumerate(results):
        if result.event is None:
            continue
        txid = result.event["transaction_id"]
        if txid in seen:
            results[index] = MappedEvent(
                result.mapping, result.event, result.epoch_ms, "duplicate-transaction-id",
                f"mapping {result.mapping!r} gives this record the transaction_id {txid!r} that "
                f"mapping {seen[txid]!r} already gave it; Metronome would keep only the first. "
                "Make it distinct, e.g. transaction_id: {template: \"{{messageId}}-"
                f"{result.mapping.lower().replace(' ', '-')}\"}}",
            )
        else:
            seen[txid] = result.mapping
