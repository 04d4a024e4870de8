"""ECS mapping and the JSONL sink: the fields DESIGN.md promises, numbers as numbers, no duplicates by id."""

from __future__ import annotations

import io
import json

from otsentry.alerts.ecs import to_ecs
from otsentry.alerts.sinks import AlertTable, JsonlSink
from otsentry.records import Alert, FeatureEvidence, alert_id


def _alert(rule: str = "policy.first_write", start: float = 1_700_000_000.0) -> Alert:
    return Alert(
        id=alert_id(start, start + 10, "10.0.0.66", "10.0.0.20", 1, rule),
        rule_id=rule,
        rule_name="First write from a client that only read",
        category="policy",
        detector="policy",
        severity="high",
        risk_score=73.0,
        score=3.0,
        threshold=0.5,
        window_start=start,
        window_end=start + 10,
        client_ip="10.0.0.66",
        server_ip="10.0.0.20",
        unit_id=1,
        explanation="10.0.0.66 wrote to 10.0.0.20 unit 1 but never wrote while learning",
        evidence=(FeatureEvidence("writes", 3.0, 0.0, 0.0, 1.0),),
        function_codes=(16,),
        server_port=502,
    )


def test_ecs_document_fields():
    doc = to_ecs(_alert())
    assert doc["event"]["kind"] == "alert"
    assert doc["event"]["category"] == ["network", "intrusion_detection"]
    assert doc["@timestamp"] == doc["event"]["start"] == "2023-11-14T22:13:20.000Z"
    assert doc["event"]["end"] == "2023-11-14T22:13:30.000Z"
    assert doc["event"]["severity"] == 73 and doc["event"]["risk_score"] == 73.0
    assert doc["rule"]["id"] == "policy.first_write" and doc["rule"]["ruleset"] == "otsentry"
    assert doc["source"] == {"ip": "10.0.0.66"}
    assert doc["destination"] == {"ip": "10.0.0.20", "port": 502}
    assert doc["network"] == {"transport": "tcp", "protocol": "modbus"}
    assert doc["related"]["ip"] == ["10.0.0.20", "10.0.0.66"]
    assert doc["observer"]["product"] == "otsentry"
    assert doc["message"].startswith("10.0.0.66 wrote")
    ots = doc["otsentry"]
    assert ots["function_codes"] == [16] and ots["unit_id"] == 1
    assert ots["top_features"][0] == {"name": "writes", "value": 3.0, "baseline_low": 0.0, "baseline_high": 0.0,
                                      "contribution": 1.0}
    json.dumps(doc)  # serialisable


def test_jsonl_sink_is_idempotent_across_runs(tmp_path):
    path = tmp_path / "alerts.jsonl"
    a, b = _alert(), _alert(rule="policy.new_talker")
    sink = JsonlSink(path)
    assert sink.write(a) and sink.write(b) and not sink.write(a)
    sink.close()
    sink.close()  # safe twice
    again = JsonlSink(path)
    assert not again.write(a)
    again.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert {json.loads(line)["event"]["id"] for line in lines} == {a.id, b.id}


def test_alert_ids_are_deterministic_and_distinct():
    assert _alert().id == _alert().id
    assert _alert().id != _alert(start=1_700_000_010.0).id
    assert _alert().id != _alert(rule="policy.new_talker").id


def test_table_line():
    out = io.StringIO()
    table = AlertTable(out)
    table.write(_alert())
    text = out.getvalue()
    assert "HIGH" in text and "policy.first_write" in text and "10.0.0.66" in text
