"""Will it bill: preflight and reconcile end to end against the emulator's read side, and the
requests and answers checked against Metronome's OpenAPI document."""

import jsonschema
import orjson
import pytest
import yaml
from conftest import ROOT, jsonl, track
from harness import BackgroundEmulator

from segmetro.billing import Metric, judge
from segmetro.emulator import EmulatorState, Faults
from segmetro.emulator_account import AccountService
from segmetro.timestamps import parse_rfc3339

NOW = "2026-11-25T00:00:00Z"
TOKEN = "bill-token"
SPEC_PATH = ROOT.parent / "shared" / "reference" / "metronome-openapi.yml"

ACME, INITECH, HOOLI = ("5b0f9a1e-0001-4d3c-8e2f-000000000001",
                        "5b0f9a1e-0002-4d3c-8e2f-000000000002",
                        "5b0f9a1e-0004-4d3c-8e2f-000000000004")
METRICS = [
    {"id": "7a1c3e40-0001-4c2a-9b51-2f6c1d0a0001", "name": "Tokens",
     "event_type_filter": {"in_values": ["Tokens Used"]},
     "property_filters": [{"name": "model", "exists": True, "in_values": ["small", "large"]}],
     "aggregation_type": "SUM", "aggregation_key": "tokens"},
    {"id": "7a1c3e40-0002-4c2a-9b51-2f6c1d0a0002", "name": "Not reports",
     "event_type_filter": {"in_values": ["API Call", "Report"], "not_in_values": ["Report"]},
     "aggregation_type": "COUNT"},
    {"id": "7a1c3e40-0003-4c2a-9b51-2f6c1d0a0003", "name": "Pages (SQL)",
     "sql": "SELECT COUNT(*) FROM events WHERE event_type = 'Report'"},
    {"id": "7a1c3e40-0004-4c2a-9b51-2f6c1d0a0004", "name": "Other type",
     "event_type_filter": {"in_values": ["Page Viewed"]}, "aggregation_type": "COUNT"},
]
CUSTOMERS = [
    {"id": ACME, "external_id": "acme", "name": "Acme", "ingest_aliases": ["acme"],
     "customer_config": {"salesforce_account_id": None}, "custom_fields": {}, "created_at": "2026-01-01T00:00:00Z",
     "updated_at": "2026-01-01T00:00:00Z"},
    {"id": INITECH, "external_id": "initech", "name": "Initech", "ingest_aliases": ["initech"],
     "customer_config": {"salesforce_account_id": None}, "custom_fields": {}, "created_at": "2026-01-01T00:00:00Z",
     "updated_at": "2026-01-01T00:00:00Z"},
    {"id": HOOLI, "external_id": "hooli", "name": "Hooli", "ingest_aliases": ["hooli"],
     "customer_config": {"salesforce_account_id": None}, "custom_fields": {}, "created_at": "2026-01-01T00:00:00Z",
     "updated_at": "2026-06-01T00:00:00Z", "archived_at": "2026-06-01T00:00:00Z"},
]


def tokens(n, customer="acme", **properties):
    props = {"tokens": n, "model": "small", **properties}
    return track(n, event="Tokens Used", context={"groupId": customer}, properties=props,
                 timestamp=f"2026-11-{20 + n % 3}T10:00:00.000Z")


def records():
    return [
        tokens(1), tokens(2, "initech"), tokens(3, model="large"),  # billable (alias)
        tokens(4, model="medium"),  # in_values not met
        tokens(5, model=None),  # exists: true not met
        tokens(6, tokens="many"),  # SUM key not a number
        tokens(7, "umbrella"), tokens(8, "umbrella"), tokens(9, "stark"),  # unknown customers
        tokens(10, "hooli"),  # archived
        track(11, event="API Call", context={"groupId": "acme"}),  # billable COUNT
        track(12, event="Report", context={"groupId": "acme"}),  # not_in_values, SQL only
        track(13, event="Signed Up", context={"groupId": "acme"}),  # no metric
        tokens(14, cached_flag=True),
        track(15, event="Tokens Used", context={"groupId": "acme"},
              properties={"model": "small"}),  # SUM key missing
    ] + [tokens(20 + n, "initech") for n in range(6)]


@pytest.fixture
def account_emulator(tmp_path):
    def start(lose_rate=0.0):
        state = EmulatorState(TOKEN, Faults(lose_rate=lose_rate, seed=3),
                              now_ms=parse_rfc3339(NOW),
                              account=AccountService(METRICS, CUSTOMERS, page_size=2))
        server = BackgroundEmulator(state).__enter__()
        started.append(server)
        return server

    started = []
    yield start
    for server in started:
        server.__exit__(None, None, None)


def cli(run, command, server, path, *extra):
    return run(command, path, "--now", NOW, "--api-token", TOKEN, "--base-url",
               server.base_url, "--json", "--rejects", "r.jsonl", *extra)


def test_preflight_finds_every_kind_of_unbillable_event(run, write, account_emulator):
    server = account_emulator()
    path = write("in.jsonl", jsonl(*records()))
    result = cli(run, "preflight", server, path)
    assert result.exit_code == 1, result.output
    found = orjson.loads(result.stdout)
    assert found["events"] == 21 and found["billable"] == 11
    assert found["unbillable_by_reason"] == {
        "unknown-customer": 3, "property-filter-not-met": 2, "aggregation-key-not-number": 1,
        "aggregation-key-missing": 1,
        "archived-customer": 1, "sql-metric-only": 2}  # Report, and Signed Up: a SQL metric
    # might take them, so they are not called unbillable for want of a metric
    assert found["unknown_customers"] == 3
    assert found["unknown_customer_ids"] == {"umbrella": 2, "stark": 1}
    assert found["archived_customer_ids"] == {"hooli": 1}
    by_metric = {m["name"]: m for m in found["by_metric"]}
    assert by_metric["Tokens"]["events"] == 10
    assert by_metric["Tokens"]["value"] == 1 + 2 + 3 + 14 + sum(20 + n for n in range(6))
    assert by_metric["Not reports"]["value"] == 1 and by_metric["Other type"]["events"] == 0
    assert by_metric["Pages (SQL)"]["sql"] and by_metric["Pages (SQL)"]["value"] is None
    initech = [row for row in found["usage"] if row["customer_id"] == INITECH]
    assert initech and initech[0]["value"] == 2 + sum(20 + n for n in range(6))  # by alias
    assert found["exit_status"] == 1


def test_without_sql_metrics_an_unnamed_event_type_has_no_metric():
    from segmetro.billing import Account, Assessment, Customers

    account = Account([Metric.from_api(m) for m in METRICS if "sql" not in m],
                      Customers.from_api(CUSTOMERS))
    assessment = Assessment(account)
    event = {"event_type": "Signed Up", "customer_id": "acme", "properties": {}}
    assert assessment.add(event, 0) == []
    assert dict(assessment.unbillable_by_reason) == {"no-metric-for-event-type": 1}


def test_a_number_against_string_values_is_uncertain_not_guessed():
    metric = Metric.from_api({"id": "m", "name": "cached", "property_filters": [
        {"name": "cached", "in_values": ["true"]}]})
    assert judge(metric, {"properties": {"cached": True}}).uncertain
    assert judge(metric, {"properties": {"cached": "true"}}).ok
    assert not judge(metric, {"properties": {"cached": "false"}}).ok


def test_preflight_exits_0_when_every_event_bills(run, write, account_emulator):
    server = account_emulator()
    path = write("in.jsonl", jsonl(tokens(1), tokens(2, "initech")))
    result = cli(run, "preflight", server, path, "--by-day")
    found = orjson.loads(result.stdout)
    assert result.exit_code == 0 and found["unbillable"] == 0
    assert {row["day"] for row in found["usage"]} == {"2026-11-21", "2026-11-22"}


def test_reconcile_after_a_full_send_finds_nothing_short(run, write, account_emulator):
    server = account_emulator()
    path = write("in.jsonl", jsonl(*records()))
    assert cli(run, "send", server, path).exit_code == 0
    result = cli(run, "reconcile", server, path, "--search-rate", "100")
    found = orjson.loads(result.stdout)
    assert result.exit_code == 0, found
    assert found["checked"] > 0 and found["short"] == [] and found["sampled"] == 11
    assert found["not_found"] == [] and found["unmatched_metric"] == []


def test_reconcile_finds_a_shortfall_and_missing_events(run, write, account_emulator):
    server = account_emulator(lose_rate=0.4)
    path = write("in.jsonl", jsonl(*records()))
    cli(run, "send", server, path)
    result = cli(run, "reconcile", server, path, "--search-rate", "100")
    found = orjson.loads(result.stdout)
    assert result.exit_code == 1 and found["exit_status"] == 1
    assert found["short"] and found["not_found"]
    short = found["short"][0]
    assert set(short) >= {"customer_id", "metric_id", "day", "expected", "actual"}
    assert short["actual"] < short["expected"]


# --- the requests and answers against Metronome's OpenAPI document -----------------------------

@pytest.fixture(scope="module")
def spec():
    if not SPEC_PATH.exists():
        pytest.skip("the shared OpenAPI document is not beside the repository")
    return yaml.load(SPEC_PATH.read_text(), Loader=yaml.CSafeLoader)


def schema_of(spec, schema, depth=0):
    """An OpenAPI 3.0 schema as JSON Schema: $refs inlined, nullable as a null type."""
    if isinstance(schema, list):
        return [schema_of(spec, item, depth) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        if depth > 12:
            return {}
        target = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return schema_of(spec, target, depth + 1)
    out = {key: schema_of(spec, value, depth) for key, value in schema.items()
           if not key.startswith("x-")}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def test_preflight_and_reconcile_requests_and_the_emulators_answers_fit_the_openapi_document(
        spec, account_emulator):
    from segmetro.account import AccountClient
    from segmetro.upload import UploadSettings

    server = account_emulator()
    with AccountClient(UploadSettings(token=TOKEN, base_url=server.base_url)) as client:
        client.account()
        server.state.ingest([{"transaction_id": "t1", "customer_id": "acme",
                              "event_type": "Tokens Used", "timestamp": "2026-11-20T10:00:00Z",
                              "properties": {"tokens": 3, "model": "small"}}])
        rows = client.usage("2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z", [ACME],
                            [METRICS[0]["id"]])
        found = client.search(["t1", "t2"])
        requests = client.requests
    answers = {"/v1/usage": {"data": rows, "next_page": None}, "/v1/events/search": found}
    import httpx

    for path in ("/v1/billable-metrics", "/v1/customers"):  # the emulator's list answers
        page = httpx.get(server.base_url + path, params={"limit": 2},
                         headers={"Authorization": f"Bearer {TOKEN}"}).json()
        answers[path] = page
    for method, path, payload in requests:
        operation = spec["paths"][path][method.lower()]
        if method == "GET":
            parameters = {p["name"]: p for p in schema_of(spec, operation.get("parameters", []))}
            for name, value in payload.items():
                assert name in parameters, f"{path}: unknown query parameter {name}"
                kind = parameters[name]["schema"]
                jsonschema.validate(
                    value if kind.get("type") != "boolean" else value == "true", kind)
            answer = schema_of(spec, operation["responses"]["200"]["content"]
                               ["application/json"]["schema"])
            jsonschema.validate(answers[path], answer)
        else:
            body = schema_of(spec, operation["requestBody"]["content"]["application/json"]
                             ["schema"])
            jsonschema.validate(payload, body)
            answer = schema_of(spec, operation["responses"]["200"]["content"]
                               ["application/json"]["schema"])
            jsonschema.validate(answers[path], answer)
    assert rows[0]["value"] == 3 and found[0]["matched_billable_metrics"]


def test_the_sample_account_fixtures_are_metronomes_list_responses(spec):
    import json

    for path, name in (("/v1/billable-metrics", "billable-metrics.json"),
                       ("/v1/customers", "customers.json")):
        schema = schema_of(spec, spec["paths"][path]["get"]["responses"]["200"]["content"]
                           ["application/json"]["schema"])
        jsonschema.validate(json.loads((ROOT / "samples" / "account" / name).read_text()), schema)
