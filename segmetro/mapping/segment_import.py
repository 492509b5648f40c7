"""Segment's own subscriptions as a segmetro mapping file (``segmetro import``, and ``-m`` given a
Segment JSON file).

Input: what Segment's Public API returns for a destination's subscriptions: one
``DestinationSubscription`` (``{id, name, actionId, actionSlug, destinationId, enabled, trigger,
settings}``), a list of them, or the list response envelope (``{"data": {"subscriptions":
[...]}}``). ``settings`` maps each Send Event field to mapping-kit JSON; each becomes a field
written with directives (a raw value as ``{"@literal": ...}``, which mapping-kit resolves the same
way), so the mapping is evaluated exactly as Segment evaluates it.
"""

from __future__ import annotations

from typing import Any

import orjson

from segmetro.mapping.directives import is_directive

FIELDS = ("transaction_id", "customer_id", "timestamp", "event_type", "properties")


class ImportError_(ValueError):
    """A file that is not Segment subscriptions for Metronome's Send Event (message says why)."""


def subscriptions_of(document: Any) -> list[dict]:
    """The subscriptions in a Public API answer, whichever of its shapes it is."""
    if isinstance(document, dict) and isinstance(document.get("data"), dict):
        data = document["data"]
        if isinstance(data.get("subscriptions"), list):
            return data["subscriptions"]
        if isinstance(data.get("subscription"), dict):
            return [data["subscription"]]
    if isinstance(document, dict) and isinstance(document.get("subscriptions"), list):
        return document["subscriptions"]
    if isinstance(document, dict) and ("settings" in document or "trigger" in document):
        return [document]
    if isinstance(document, list) and all(isinstance(item, dict) for item in document):
        return document
    raise ImportError_("not Segment subscriptions: expected a DestinationSubscription, a list of "
                       "them, or {\"data\": {\"subscriptions\": [...]}} from Segment's Public API")


def looks_like_subscriptions(document: Any) -> bool:
    try:
        subscriptions = subscriptions_of(document)
    except ImportError_:
        return False
    return bool(subscriptions) and all("settings" in s for s in subscriptions)


def _yaml_string(text: str) -> str:
    return orjson.dumps(text).decode()  # a JSON string is a YAML double-quoted scalar


def _field(value: Any) -> str:
    mapping = value if is_directive(value) else {"@literal": value}
    return orjson.dumps(mapping).decode()  # JSON is YAML's flow style


def to_yaml(document: Any, source: str) -> str:
    """The mapping file for ``document`` (text), each mapping commented with its subscription."""
    subscriptions = subscriptions_of(document)
    lines = [f"# Imported by segmetro from Segment subscriptions ({source}).",
             "# Fields are mapping-kit directives, evaluated exactly as Segment evaluates them.",
             "mappings:"]
    used: dict[str, int] = {}
    for index, subscription in enumerate(subscriptions):
        where = f"subscription {index + 1} ({subscription.get('id', 'no id')})"
        slug = subscription.get("actionSlug")
        if slug not in (None, "sendEvent"):
            raise ImportError_(f"{where} is for the action {slug!r}, not Metronome's sendEvent")
        settings = subscription.get("settings")
        if not isinstance(settings, dict):
            raise ImportError_(f"{where} has no settings (its field mappings)")
        unknown = sorted(set(settings) - set(FIELDS))
        if unknown:
            raise ImportError_(f"{where} maps {', '.join(unknown)}, which Send Event does not "
                               "have")
        missing = [name for name in FIELDS if name not in settings]
        if missing:
            raise ImportError_(f"{where} maps no {', '.join(missing)}: Segment fails every event "
                               "of it (Send Event requires all five fields)")
        name = str(subscription.get("name") or f"Subscription {index + 1}")
        used[name] = used.get(name, 0) + 1
        if used[name] > 1:
            name = f"{name} ({used[name]})"
        lines.append(f"  # Segment subscription {subscription.get('id', '?')}, action "
                     f"{slug or 'sendEvent'}, destination {subscription.get('destinationId', '?')}")
        lines.append(f"  - name: {_yaml_string(name)}")
        trigger = subscription.get("trigger")
        if isinstance(trigger, str) and trigger.strip():
            lines.append(f"    trigger: {_yaml_string(trigger)}")
            if subscription.get("enabled") is False:
                lines.append("    enabled: false")
        else:
            lines.append("    # no trigger: Segment sends nothing for this subscription")
            lines.append("    enabled: false")
        lines.append("    fields:")
        for field_name in FIELDS:
            lines.append(f"      {field_name}: {_field(settings[field_name])}")
    return "\n".join(lines) + "\n"
