"""The Elasticsearch side without a cluster: the template maps every ECS field ``to_ecs`` writes with the right
type, index names, credentials handling, and the spool when nothing listens (a real refused connection)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from otsentry.alerts.ecs import incident_to_ecs, to_ecs
from otsentry.alerts.elastic import ElasticConfig, ElasticError, ElasticSink, make_client, redact
from otsentry.alerts.elastic_search import build_query, parse_pair
from otsentry.alerts.elastic_template import INCIDENT_MAPPINGS, MAPPINGS, field_types, index_for, index_template
from otsentry.correlation import correlate
from tests.unit.alerts.test_alerts_ecs import _alert

NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}
DATE_FIELDS = {"@timestamp", "event.start", "event.end"}


def _leaves(doc: dict, path: str = ""):
    """(field, value) for every leaf of an ECS document; lists of objects are walked (nested), lists of values not."""
    for key, value in doc.items():
        full = f"{path}{key}"
        if isinstance(value, dict):
            yield from _leaves(value, full + ".")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                yield from _leaves(item, full + ".")
        else:
            yield full, value


def test_template_maps_every_field_of_the_ecs_document_with_its_type():
    types = field_types()
    doc = to_ecs(replace(_alert(), technique_id="T0855", incident_id="ab" * 16, capture="x.pcap", first_frame=3,
                         last_frame=9))
    assert doc["threat"]["technique"]["id"] == ["T0855"] and doc["otsentry"]["incident"]["id"] == "ab" * 16
    leaves = list(_leaves(doc))
    assert len(leaves) > 35
    for name, value in leaves:
        assert name in types, f"{name} is not mapped by the index template"
        kind = types[name]
        sample = value[0] if isinstance(value, list) and value else value
        if name in DATE_FIELDS:
            assert kind == "date", name
        elif name.endswith(".ip"):
            assert kind == "ip", name
        elif isinstance(sample, bool) or isinstance(sample, str):
            assert kind in ("keyword", "text"), name
        elif isinstance(sample, (int, float)):
            assert kind in NUMERIC, name
    assert types["message"] == "text"
    assert types["otsentry.top_features"] == "nested"
    assert types["otsentry.function_codes"] == "short"
    assert MAPPINGS["dynamic"] is False


def test_incident_template_maps_every_field_of_the_incident_document():
    alerts = [replace(_alert(start=1_700_000_000.0 + 10 * i), technique_id=t)
              for i, t in enumerate(("T0846", "T0855", "T0814"))]
    _, incidents = correlate(alerts)
    doc = incident_to_ecs(incidents[0])
    types = field_types(INCIDENT_MAPPINGS)
    leaves = list(_leaves(doc))
    assert len(leaves) > 30
    for name, value in leaves:
        assert name in types, f"{name} is not mapped by the incident template"
        sample = value[0] if isinstance(value, list) and value else value
        if sample is None:
            continue
        allowed = ({"boolean"} if isinstance(sample, bool) else NUMERIC if isinstance(sample, (int, float))
                   else {"keyword", "text", "ip", "date"})
        assert types[name] in allowed, (name, types[name])
    assert types["otsentry.incident.steps.targets"] == "ip" and types["event.duration"] == "long"


def test_index_names_follow_the_alerts_own_day():
    assert index_for("2024-03-01T23:59:59.999Z") == "otsentry-alerts-2024.03.01"
    assert index_for("2024-03-02T00:00:00.000Z", "otsentry-x") == "otsentry-x-2024.03.02"
    body = index_template("otsentry-x")
    assert body["index_patterns"] == ["otsentry-x-*"] and body["template"]["aliases"] == {"otsentry-x": {}}


def test_credentials_from_env_and_url_never_show():
    env = {"OTSENTRY_ES_API_KEY": "k3y-secret", "OTSENTRY_ES_CA": "/etc/ssl/certs/ca-certificates.crt"}
    config = ElasticConfig.from_env("https://es.example:9200/", env)
    assert config.url == "https://es.example:9200" and config.api_key == "k3y-secret"
    assert "k3y-secret" not in repr(config)
    config = ElasticConfig.from_env("http://alice:pa%24s@127.0.0.1:9200", {})
    assert (config.username, config.password, config.url) == ("alice", "pa$s", "http://127.0.0.1:9200")
    assert "pa" not in repr(config).split("username")[1]
    assert redact("http://alice:pw@h:9200/x") == "http://h:9200/x"
    with pytest.raises(ElasticError, match="not an Elasticsearch URL"):
        ElasticConfig.from_env("ftp://h", {})
    with pytest.raises(ElasticError, match="OTSENTRY_ES_CA"):
        make_client(ElasticConfig.from_env("https://h:9200", {"OTSENTRY_ES_CA": "/nonexistent/ca.pem"}))


def test_unreachable_cluster_spools_in_order_without_logging_secrets(tmp_path, caplog):
    config = ElasticConfig.from_env("http://bob:hunter2@127.0.0.1:1", {"OTSENTRY_ES_API_KEY": "apikey-secret"},
                                    timeout_s=2)
    sink = ElasticSink(make_client(config), "otsentry-unit", state_dir=tmp_path, retries=1, backoff_s=0.01,
                       display_url=config.url)
    alerts = [_alert(start=1_700_000_000.0 + 10 * i) for i in range(5)]
    with caplog.at_level(logging.DEBUG):
        sink.extend(alerts[:2])
        assert sink.flush() is False
        sink.extend(alerts[2:])
        assert sink.close() is False
    assert sink.pending_in_spool() == 5 and sink.stats.spooled == 5 and sink.stats.indexed == 0
    ids = [json.loads(line)["id"] for line in sink.spool_path.read_text().splitlines()]
    assert ids == [a.id for a in alerts]
    assert "hunter2" not in caplog.text and "apikey-secret" not in caplog.text
    assert "unreachable" in caplog.text


def test_spooling_off_keeps_the_documents_and_raises(tmp_path):
    config = ElasticConfig.from_env("http://127.0.0.1:1", {}, timeout_s=2)
    sink = ElasticSink(make_client(config), "otsentry-unit", state_dir=tmp_path, retries=0, spool=False)
    sink.write(_alert())
    with pytest.raises(ElasticError, match="unreachable"):
        sink.flush()
    assert len(sink._buffer) == 1 and not sink.spool_path.exists()


def test_search_query_filters():
    assert parse_pair("10.10.1.0/24-10.10.2.14") == ("10.10.1.0/24", "10.10.2.14")
    assert parse_pair("-fd00::1") == (None, "fd00::1")
    with pytest.raises(ValueError):
        parse_pair("10.10.1.1")
    with pytest.raises(ValueError, match="not an IP"):
        parse_pair("plc-1")
    filters = build_query(since="now-3600s", pair="10.0.0.1-", rule="policy.")["bool"]["filter"]
    assert {"term": {"source.ip": "10.0.0.1"}} in filters
    assert {"prefix": {"rule.id": "policy."}} in filters
    assert {"range": {"@timestamp": {"gte": "now-3600s"}}} in filters
