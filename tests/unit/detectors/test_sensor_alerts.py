"""Sensor windows and their alerts: evasion, packet loss, stalled decoding; reported every window, never learned."""

from __future__ import annotations

import json

from otsentry.alerts.ecs import to_ecs
from otsentry.collectors.collector import CollectedBatch
from otsentry.collectors.events import ConnTable, ModbusBatch
from otsentry.detectors.sensor import sensor_alerts
from otsentry.contracts.schema import FEATURE_SCHEMA_VERSION, SENSOR_FEATURES
from otsentry.features.sensorwin import SensorWindows
from otsentry.features.windows import Windower
from otsentry.records import EvasionNote, FeatureWindow, PacketLoss
from otsentry.stream.codec import decode_feature_record, encode_window
from otsentry.contracts.windows import partition_key

T0 = 1_700_000_000 * 10**9


def note(kind: str, t_s: float, size: int = 4, src: str = "10.0.0.66", dst: str = "10.0.0.9", port: int = 502):
    return EvasionNote(kind, 7, T0 + int(t_s * 1e9), src, 40000, dst, port, size)


def test_notes_and_losses_become_sensor_windows_by_window():
    acc = SensorWindows(10 * 10**9)
    acc.add([note("overlap_conflict", 1), note("overlap_conflict", 2), note("tiny_fragment", 3, port=0)],
            PacketLoss((T0 + 15e9) / 1e9, 120, 3), None)
    windows = acc.take(None)
    assert [(w.client_ip, w.server_ip, w.port, w.transport) for w in windows] == [
        ("10.0.0.66", "10.0.0.9", 0, "ip"), ("10.0.0.66", "10.0.0.9", 502, "tcp"), ("", "", 0, "")]
    values = [dict(zip(SENSOR_FEATURES, w.values)) for w in windows]
    assert values[0]["tiny_fragments"] == 1 and values[1]["overlap_conflicts"] == 2
    assert values[2]["kernel_drops"] == 120 and values[2]["interface_drops"] == 3
    assert len(acc) == 0


def test_late_evidence_goes_to_the_first_open_window_never_dropped():
    acc = SensorWindows(10 * 10**9)
    acc.add([note("gap", 1, size=100)], None, open_from=(T0 // 10**10) + 5)
    (w,) = acc.take(None)
    assert w.window_start == ((T0 // 10**10) + 5) * 10.0


def test_every_sensor_window_alerts_with_its_own_rule_and_deterministic_id():
    acc = SensorWindows(10 * 10**9)
    for k in range(3):  # the same conflict in three windows: three alerts, no suppression
        acc.add([note("overlap_conflict", 10 * k + 1)], None, None)
    acc.add([note("undecoded", 45, size=4096), note("gap", 46, size=13)], PacketLoss((T0 + 47e9) / 1e9, 9, 0), None)
    windows = acc.take(None)
    alerts = sensor_alerts(windows)
    assert [a.rule_id for a in alerts].count("policy.evasion") == 3
    assert {a.rule_id for a in alerts} == {"policy.evasion", "sensor.packet_loss", "sensor.decode_stalled"}
    assert len({a.id for a in alerts}) == len(alerts) and [a.id for a in sensor_alerts(windows)] == [a.id for a in alerts]
    evasion = alerts[0]
    assert evasion.client_ip == "10.0.0.66" and evasion.severity == "high" and "different content" in evasion.explanation
    loss = next(a for a in alerts if a.rule_id == "sensor.packet_loss" and not a.client_ip)
    assert "9 packet(s)" in loss.explanation
    doc = to_ecs(loss)  # a sensor-wide alert names no host: no empty IPs for Elasticsearch's ip type
    assert "ip" not in doc["source"] and "ip" not in doc["destination"] and doc["related"]["ip"] == []
    assert sensor_alerts([w for w in windows if False]) == []


def test_sensor_windows_cross_kafka_and_close_with_the_others():
    w = FeatureWindow(10.0, 20.0, "sensor", "10.0.0.66", "10.0.0.9", -1, tuple(float(i) for i in range(7)),
                      FEATURE_SCHEMA_VERSION, 502, "tcp", 3, 4)
    assert decode_feature_record(encode_window(w)) == w
    assert partition_key(w).startswith(b"sensor|")
    windower = Windower(10.0, 5.0)
    batch = CollectedBatch(ModbusBatch.empty(), [], (note("overlap_conflict", 1),), None)
    assert windower.push(batch, ConnTable()) == []
    (out,) = windower.flush()
    assert out.kind == "sensor" and json.loads(encode_window(out))["values"]["overlap_conflicts"] == 1.0
