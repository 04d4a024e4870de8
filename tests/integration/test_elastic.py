"""Alerts in the real Elasticsearch node of ``make services`` (services/elasticsearch.py): ECS queries, no
duplicates, dead letters, and an Elasticsearch restart in the middle of indexing.

Every test uses its own index prefix (alias ``otsentry-test-<random>``), so runs never see each other's alerts, and
removes its indices and template at the end.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from otsentry.alerts.elastic import ElasticSink, ensure_template
from otsentry.alerts.elastic_search import build_query, search_alerts
from otsentry.cli.alerts import alerts as alerts_group
from otsentry.records import Alert, alert_id
from tests.helpers import ROOT
from tests.integration.helpers import ES_DEFAULT_URL, es_health

pytestmark = pytest.mark.integration

SERVICE = [sys.executable, "-m", "services.elasticsearch"]  # run from the clone's root
# The fixtures live in conftest.py; these names stay importable from here (other test modules import them).
DEFAULT_URL, _health = ES_DEFAULT_URL, es_health


@pytest.fixture
def prefix(es):
    name = f"otsentry-test-{uuid.uuid4().hex[:10]}"
    yield name
    es.indices.delete(index=f"{name}-*", ignore_unavailable=True, allow_no_indices=True)
    es.options(ignore_status=404).indices.delete_index_template(name=name)


@pytest.fixture(scope="module")
def scenario_pcap(tmp_path_factory) -> Path:
    """A capture: 5 minutes of learning, then a function-code sweep by a new host at 7 minutes."""
    from otsentry.synth.scenarios import generate_scenario

    path = tmp_path_factory.mktemp("es") / "fc_sweep.pcap"
    generate_scenario(path, "fc_sweep", seed=3, learn_s=300, attack_at_s=420, total_s=600)
    return path


@pytest.fixture(scope="module")
def scenario_alerts(scenario_pcap) -> list[Alert]:
    """The capture's alerts, replayed through the whole pipeline."""
    from otsentry import pipeline

    alerts = pipeline.run([scenario_pcap], learn_for_s=300).alerts
    assert alerts, "the scenario must raise alerts"
    return alerts


def _sink(es, prefix: str, tmp_path: Path, **kwargs) -> ElasticSink:
    kwargs = {"retries": 3, "backoff_s": 0.2, "max_backoff_s": 1.0, **kwargs}
    return ElasticSink(es, prefix, state_dir=tmp_path / "state", **kwargs)


def _count(es, prefix: str, query: dict | None = None) -> int:
    es.indices.refresh(index=prefix, ignore_unavailable=True, allow_no_indices=True)
    return int(es.count(index=prefix, query=query or {"match_all": {}})["count"])


def test_alerts_are_searchable_with_ecs_queries(es, es_url, prefix, scenario_alerts, tmp_path):
    sink = _sink(es, prefix, tmp_path)
    sink.extend(scenario_alerts)
    assert sink.close() is True
    n = len(scenario_alerts)
    assert _count(es, prefix) == n == sink.stats.indexed

    # ECS types as mapped by the template, on the index the sink created (daily, behind the alias)
    mapping = es.indices.get_mapping(index=prefix)
    (index, body), = mapping.items()
    assert index.startswith(f"{prefix}-2024.03.01")
    props = body["mappings"]["properties"]
    assert props["source"]["properties"]["ip"]["type"] == "ip"
    assert props["@timestamp"]["type"] == "date"
    assert props["otsentry"]["properties"]["top_features"]["type"] == "nested"

    in_net = sum(a.client_ip.startswith("10.10.1.") for a in scenario_alerts)
    assert in_net > 0
    assert _count(es, prefix, {"term": {"source.ip": "10.10.1.0/24"}}) == in_net
    assert _count(es, prefix, {"term": {"source.ip": "192.168.0.0/16"}}) == 0
    assert _count(es, prefix, {"term": {"related.ip": "10.10.2.14"}}) == sum(
        "10.10.2.14" in (a.client_ip, a.server_ip) for a in scenario_alerts)

    rule = "policy.new_talker"
    assert _count(es, prefix, {"term": {"rule.id": rule}}) == sum(a.rule_id == rule for a in scenario_alerts) == 1

    # time range: the attack starts 420 s after the capture start (2024-03-01 08:00:00 UTC)
    attack = {"range": {"@timestamp": {"gte": "2024-03-01T08:07:00Z", "lt": "2024-03-01T08:08:00Z"}}}
    before = {"range": {"@timestamp": {"lt": "2024-03-01T08:05:00Z"}}}
    assert _count(es, prefix, attack) == sum(1_709_280_420 <= a.window_start < 1_709_280_480 for a in scenario_alerts)
    assert _count(es, prefix, before) == 0

    # a nested query: name and value of the same top feature
    assert _count(es, prefix, {"nested": {"path": "otsentry.top_features", "query": {"bool": {"filter": [
        {"exists": {"field": "otsentry.top_features.name"}},
        {"range": {"otsentry.top_features.value": {"gte": 0}}}]}}}}) > 0

    # the triage helpers and the CLI use the same queries
    total, docs = search_alerts(es, prefix, query=build_query(pair="10.10.1.0/24-10.10.2.14", rule="policy."))
    assert total == sum(a.rule_id.startswith("policy.") for a in scenario_alerts)
    assert all(d["rule"]["id"].startswith("policy.") for d in docs)
    result = CliRunner().invoke(alerts_group, ["search", "--es", es_url, "--index", prefix, "--rule", rule,
                                               "--since", "2024-03-01T08:00:00Z", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["rule"]["id"] for d in lines] == [rule]
    assert lines[0]["source"]["ip"] == scenario_alerts[0].client_ip
    result = CliRunner().invoke(alerts_group, ["search", "--es", es_url, "--index", prefix, "--since", "1h"])
    assert result.exit_code == 0 and "0 alerts match" in result.stderr  # replayed alerts are from 2024


def test_indexing_the_same_alerts_twice_does_not_duplicate(es, prefix, scenario_alerts, tmp_path):
    first = _sink(es, prefix, tmp_path)
    first.extend(scenario_alerts)
    assert first.close()
    second = _sink(es, prefix, tmp_path)
    second.extend(scenario_alerts)
    second.extend(scenario_alerts[:3])  # and some twice within one batch
    assert second.close()
    assert _count(es, prefix) == len(scenario_alerts)
    assert second.stats.indexed == 0 and second.stats.duplicates == len(scenario_alerts) + 3
    ensure_template(es, prefix)  # the template install is idempotent too
    template = es.indices.get_index_template(name=prefix)["index_templates"][0]["index_template"]
    assert template["index_patterns"] == [f"{prefix}-*"]


def test_a_rejected_document_goes_to_the_dead_letter_file_and_the_rest_is_indexed(es, prefix, scenario_alerts,
                                                                                  tmp_path):
    bad = dataclasses.replace(scenario_alerts[0], client_ip="not-an-ip",
                              id=alert_id(1.0, 11.0, "not-an-ip", "10.10.2.14", 1, "policy.new_talker"))
    sink = _sink(es, prefix, tmp_path)
    sink.extend([*scenario_alerts[:3], bad, *scenario_alerts[3:]])
    assert sink.close()
    assert _count(es, prefix) == len(scenario_alerts)
    assert sink.stats.dead_lettered == 1
    (line,) = sink.dead_letter_path.read_text().splitlines()
    entry = json.loads(line)
    assert entry["id"] == bad.id and entry["status"] == 400
    assert entry["error"]["type"] in ("document_parsing_exception", "mapper_parsing_exception")
    assert "source.ip" in json.dumps(entry["error"]) and "not-an-ip" in json.dumps(entry["error"])
    assert entry["document"]["source"]["ip"] == "not-an-ip"  # the whole document, to fix and re-send


def _service(command: str) -> None:
    proc = subprocess.run([*SERVICE, command], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _many_alerts(base: list[Alert], n: int) -> list[Alert]:
    """``n`` distinct alerts: the scenario's alerts moved to later windows (new window, so new deterministic id)."""
    out = []
    for i in range(n):
        a = base[i % len(base)]
        shift = 10.0 * (i // len(base))
        start, end = a.window_start + shift, a.window_end + shift
        out.append(dataclasses.replace(a, window_start=start, window_end=end,
                                       id=alert_id(start, end, a.client_ip, a.server_ip, a.unit_id, a.rule_id)))
    assert len({a.id for a in out}) == n
    return out


@pytest.mark.slow
def test_elasticsearch_restart_mid_indexing_loses_and_duplicates_nothing(es, es_url, prefix, scenario_alerts,
                                                                         tmp_path):
    if es_url != DEFAULT_URL:
        pytest.skip("restarts only the node of `make services` (OTSENTRY_ES points elsewhere)")
    alerts = _many_alerts(scenario_alerts, 3000)
    sink = _sink(es, prefix, tmp_path, batch_size=100)
    restarted = threading.Event()
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            for i, alert in enumerate(alerts):
                if i == 2000:  # the last third only once the node is back: it must follow the drained spool
                    assert restarted.wait(300)
                sink.write(alert)
                time.sleep(0.003)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        deadline = time.monotonic() + 60
        while sink.stats.indexed < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.stats.indexed >= 300
        _service("stop")  # SIGTERM while bulk requests are in flight
        while sink.stats.spooled == 0 and feeder.is_alive():
            time.sleep(0.1)
        _service("start")
    finally:
        restarted.set()
        feeder.join(timeout=300)
        if _health(DEFAULT_URL) is None:
            _service("start")  # leave the node running for the other tests
    assert not errors, errors
    assert sink.close() is True
    assert sink.stats.spooled > 0  # the outage really sent alerts to the spool
    assert not sink.spool_path.exists()
    assert sink.stats.dead_lettered == 0
    assert _count(es, prefix) == len(alerts)  # every alert, each exactly once (unique ids, op_type=create)
    ids = {h["_id"] for h in es.search(index=prefix, size=len(alerts), source=False)["hits"]["hits"]}
    assert ids == {a.id for a in alerts}


def test_kibana_saved_objects_fields_are_usable_in_the_real_index(es, prefix, scenario_alerts, tmp_path):
    from otsentry.alerts.kibana import referenced_fields, saved_objects

    sink = _sink(es, prefix, tmp_path)
    sink.extend(scenario_alerts)
    assert sink.close()
    objects = saved_objects(prefix)
    data_view = objects[0]["attributes"]["title"]
    assert es.indices.resolve_index(name=data_view)["indices"], f"the data view {data_view} matches no index"
    used = list(referenced_fields(objects))
    caps = es.field_caps(index=data_view, fields=sorted({f for _, f, _ in used}))["fields"]
    for obj_id, field, use in used:
        assert field in caps, f"{obj_id}: {field} is not a field of the real index"
        ((kind, cap),) = caps[field].items()
        assert cap["searchable"], field
        if use in ("terms", "date_histogram", "time", "sort"):
            assert cap["aggregatable"], f"{obj_id}: {use} on {field} ({kind}) is not aggregatable"
        if use in ("time", "date_histogram"):
            assert kind == "date", field


def test_otsentry_run_indexes_directly_and_spools_while_unreachable(es, es_url, prefix, scenario_pcap,
                                                                   scenario_alerts, tmp_path):
    from otsentry.cli import main

    env = {"OTSENTRY_STATE_DIR": str(tmp_path / "state")}
    args = ["run", str(scenario_pcap), "--learn-for", "5m", "--no-progress", "--es-index", prefix]
    down = CliRunner().invoke(main, [*args, "--es", "http://127.0.0.1:1"], env=env)
    assert down.exit_code == 0, down.output
    n = len(scenario_alerts)
    assert f"{n} waiting in" in down.stderr and "spool" in down.stderr
    up = CliRunner().invoke(main, [*args, "--es", es_url], env=env)
    assert up.exit_code == 0, up.output
    # the spooled alerts went first; the same alerts of this run were then already there
    assert f"{n} indexed, {n} already there" in up.stderr, up.stderr
    assert not list((tmp_path / "state").glob("*.spool.jsonl"))
    assert _count(es, prefix) == n


def test_run_indexes_incidents_beside_the_alerts_and_replaces_them_on_a_rerun(es, es_url, prefix, scenario_pcap,
                                                                              tmp_path):
    from otsentry.cli import main

    incidents = f"{prefix}-inc"
    env = {"OTSENTRY_STATE_DIR": str(tmp_path / "state")}
    args = ["run", str(scenario_pcap), "--learn-for", "5m", "--no-progress", "--es", es_url, "--es-index", prefix,
            "--es-incidents-index", incidents, "--incidents-out", str(tmp_path / "incidents.jsonl")]
    try:
        for _ in range(2):
            result = CliRunner().invoke(main, args, env=env)
            assert result.exit_code == 0, result.output
        es.indices.refresh(index=f"{incidents}-*")
        docs = [h["_source"] for h in es.search(index=incidents, size=100)["hits"]["hits"]]
        assert len(docs) == 1  # replaced on the second run, not duplicated
        doc = docs[0]
        assert doc["threat"]["framework"] == "MITRE ATT&CK for ICS" and "T0888" in doc["threat"]["technique"]["id"]
        assert doc["event"]["dataset"] == "otsentry.incidents" and doc["otsentry"]["incident"]["alert_count"] > 1
        from_file = [json.loads(line) for line in (tmp_path / "incidents.jsonl").read_text().splitlines()]
        assert [d["event"]["id"] for d in from_file] == [doc["event"]["id"]]
        es.indices.refresh(index=f"{prefix}-*")
        alert_docs = es.search(index=prefix, size=1000, query={"match_all": {}})["hits"]["hits"]
        assert alert_docs and {h["_source"]["otsentry"]["incident"]["id"] for h in alert_docs} == \
            {doc["otsentry"]["incident"]["id"]}
        # the incident template maps what the documents hold, with ECS types
        mapping = es.indices.get_mapping(index=f"{incidents}-*")
        props = next(iter(mapping.values()))["mappings"]["properties"]
        assert props["related"]["properties"]["ip"]["type"] == "ip"
        assert props["threat"]["properties"]["technique"]["properties"]["id"]["type"] == "keyword"
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=incidents)


def test_assets_index_one_document_per_host_replaced_on_a_rerun(es, es_url, prefix, scenario_pcap, tmp_path):
    from otsentry.cli import main

    env = {"OTSENTRY_STATE_DIR": str(tmp_path / "state")}
    args = ["assets", str(scenario_pcap), "--es", es_url, "--es-index", prefix]
    for _ in range(2):
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 0, result.output
    hosts = [line.split()[0] for line in result.stdout.splitlines()[1:] if line and not line.startswith(" ")]
    assert _count(es, prefix) == len(hosts) > 5  # replaced, not duplicated
    docs = [h["_source"] for h in es.search(index=prefix, size=100)["hits"]["hits"]]
    plcs = [d for d in docs if "plc" in d["otsentry"]["asset"]["roles"]]
    assert plcs and all(d["otsentry"]["asset"]["identity"].get("vendor_name") for d in plcs)
    mapping = next(iter(es.indices.get_mapping(index=f"{prefix}-*").values()))["mappings"]["properties"]
    assert mapping["host"]["properties"]["ip"]["type"] == "ip"
    variables = f"{prefix}-var"
    try:
        res = CliRunner().invoke(main, ["assets", str(scenario_pcap), "--variables", "--json", "--es", es_url,
                                        "--es-index", variables], env=env)
        assert res.exit_code == 0, res.output
        rows = [json.loads(line) for line in res.stdout.splitlines()]
        es.indices.refresh(index=f"{variables}-*")
        assert int(es.count(index=variables)["count"]) == len(rows) > 50
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=variables)
