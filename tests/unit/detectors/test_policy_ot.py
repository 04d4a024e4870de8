"""The OT protocols under the policy baseline: ``ot`` windows learned and judged, on public captures and on
windows built here."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from otsentry.collectors.collector import CollectorConfig
from otsentry.contracts.events import OPERATION_CLASSES, OPERATION_EFFECTS, OperationEvent
from otsentry.contracts.schema import OT_FEATURES
from otsentry.detectors.policy import PolicyBaseline
from otsentry.features.from_capture import windows_from_capture
from otsentry.features.otwin import OtWindows
from otsentry.pipeline import run
from tests.helpers import SHARED_ICS_PCAPS

WINDOW_NS = 10 * 10**9


def op(ts: float, name: str = "READ", klass: str = "read", effect: str = "", client: str = "10.0.0.8",
       status: str | None = None, latency: float | None = 0.01) -> OperationEvent:
    return OperationEvent("dnp3", ts, client, 40000, "10.0.0.3", 20000, 4, 1, name, klass, ("g60v1",),
                          status=status, latency_s=latency, effect=effect)


def windows(ops: list[OperationEvent]):
    w = OtWindows(WINDOW_NS)
    w.add(ops, None)
    return w.take(None)


def test_schema_names_every_class_and_effect_once() -> None:
    assert set(OPERATION_CLASSES) <= set(OT_FEATURES) and set(OPERATION_EFFECTS) <= set(OT_FEATURES)
    assert len(set(OT_FEATURES)) == len(OT_FEATURES)


def test_ot_window_counts() -> None:
    [w] = windows([op(1.0), op(2.0, "COLD_RESTART", "diagnostic", "restart", latency=None),
                   op(3.0, status="parameter_error")])
    d = w.to_dict()["values"]
    assert (w.kind, w.transport, w.unit_id, w.port) == ("ot", "tcp/dnp3", 4, 20000)
    assert (d["operations"], d["read"], d["diagnostic"], d["restart"], d["errors"], d["unanswered"]) == \
        (3, 2, 1, 1, 1, 1)
    assert d["distinct_operations"] == 2 and d["latency_max_ms"] == pytest.approx(10.0)


def baseline() -> PolicyBaseline:
    return PolicyBaseline().fit(windows([op(t) for t in range(0, 300, 5)]))


def rules_of(b: PolicyBaseline, ops: list[OperationEvent]) -> list[str]:
    return sorted(a.rule_id for a in b.detect(windows(ops)))


def test_learned_polling_is_quiet() -> None:
    assert rules_of(baseline(), [op(t) for t in range(400, 700, 5)]) == []


def test_restart_stop_and_disable_unsolicited_alert_every_time() -> None:
    b = baseline()
    assert rules_of(b, [op(400, "COLD_RESTART", "diagnostic", "restart")]) == \
        ["policy.ot_new_operation", "policy.ot_restart"]
    assert "policy.ot_mode_change" in rules_of(b, [op(400, "STOP_APPL", "program", "stop")])
    assert "policy.ot_reporting_disabled" in rules_of(b, [op(400, "DISABLE_UNSOLICITED", "diagnostic",
                                                               "reporting_disabled")])
    learned = PolicyBaseline().fit(windows([op(0, "COLD_RESTART", "diagnostic", "restart"), op(5)]))
    alerts = learned.detect(windows([op(400, "COLD_RESTART", "diagnostic", "restart")]))
    assert [a.rule_id for a in alerts] == ["policy.ot_restart"] and "seen 1 time" in alerts[0].explanation


def test_first_control_and_new_master() -> None:
    b = baseline()
    [a] = b.detect(windows([op(400, "DIRECT_OPERATE", "control")]))
    assert (a.rule_id, a.severity, a.technique_id, a.protocol, a.transport) == (
        "policy.ot_new_operation", "high", "T0855", "dnp3", "tcp")
    alerts = b.detect(windows([op(400, "DIRECT_OPERATE", "control", client="10.0.0.66")]))
    assert [(a.rule_id, a.severity, a.technique_id) for a in alerts] == [("policy.ot_new_master", "high", "T0848")]
    assert "10.0.0.8" in alerts[0].explanation  # names the known master


def test_error_burst_and_silence() -> None:
    b = baseline()
    assert rules_of(b, [op(400 + i / 10, status="object_unknown") for i in range(20)]) == ["policy.ot_error_burst"]
    assert rules_of(b, [op(400 + i / 10, latency=None) for i in range(20)]) == ["policy.ot_no_response"]


def test_state_round_trip_keeps_the_ot_baseline() -> None:
    b = baseline()
    copy = PolicyBaseline.from_state(b.to_state())
    ops = [op(400, "COLD_RESTART", "diagnostic", "restart", client="10.0.0.9")]
    assert [a.to_dict() for a in copy.detect(windows(ops))] == [a.to_dict() for a in b.detect(windows(ops))]


@pytest.mark.skipif(not SHARED_ICS_PCAPS.exists(), reason="no ../shared")
def test_zeek_dnp3_capture_raises_restart_and_disable_unsolicited() -> None:
    """What the issue's analyst missed: cold restarts and disable-unsolicited commands on a real capture."""
    path = SHARED_ICS_PCAPS / "zeek-dnp3-dnp3.pcap"
    result = run([path], learn_for_s=1200)
    rules = {a.rule_id for a in result.alerts}
    assert {"policy.ot_restart", "policy.ot_reporting_disabled", "policy.ot_mode_change",
            "policy.ot_new_master"} <= rules
    restart = next(a for a in result.alerts if a.rule_id == "policy.ot_restart")
    assert restart.technique_id == "T0816" and restart.protocol == "dnp3" and restart.server_port == 20000
    assert any(i.severity == "critical" for i in result.incidents)


@pytest.mark.skipif(not SHARED_ICS_PCAPS.exists(), reason="no ../shared")
@pytest.mark.parametrize("name, rule", [("icsnpp-s7comm-snap7.pcap", "policy.ot_mode_change"),
                                        ("iti-s7comm-s7comm_downloading_block_db1.pcap", "policy.ot_program"),
                                        ("iti-enip-cip_stop_plc.pcap", "policy.ot_mode_change")])
def test_s7_and_cip_actions_alert_with_any_baseline(tmp_path: Path, name: str, rule: str) -> None:
    """Learned on other traffic only (made-up DNP3 polling): PLC STOP, block download and CIP Stop alert."""
    path = SHARED_ICS_PCAPS / name
    ot = [w for w in windows_from_capture(path, 10.0, CollectorConfig()) if w.kind == "ot"]
    assert ot
    b = PolicyBaseline().fit([w for w in windows([op(t) for t in range(0, 60, 5)])])
    assert rule in {a.rule_id for a in b.detect(ot)}


def test_ot_anomaly_ensemble_learns_polling_and_flags_a_flood() -> None:
    """The ensemble learns per window kind, ``ot`` included: steady DNP3 polling is quiet, a burst of failing
    operations with long latencies is not."""
    import random

    from otsentry.detectors.anomaly import AnomalyWindowDetector

    rng = random.Random(3)
    learn = windows([op(t + rng.random(), latency=0.01 + rng.random() / 100) for t in range(0, 3000, 2)])
    detector = AnomalyWindowDetector(kind="ot").fit(learn)
    assert detector.schema_ == "ot-v1" and detector.n_train_windows_ == len(learn)
    quiet = windows([op(4000 + t + rng.random(), latency=0.01 + rng.random() / 100) for t in range(0, 600, 2)])
    assert len(detector.detect(quiet)) <= 1
    flood = windows([op(5000 + i / 50, status="object_unknown", latency=0.5) for i in range(400)])
    [alert] = detector.detect(flood)[:1]
    assert (alert.rule_id, alert.protocol, alert.transport, alert.technique_id) == (
        "anomaly.ot_ensemble", "dnp3", "tcp", "T0855")


def test_a_stop_and_a_start_in_one_window_are_two_alerts_with_two_ids() -> None:
    alerts = baseline().detect(windows([op(400, "STOP_APPL", "program", "stop"),
                                        op(401, "START_APPL", "program", "start")]))
    mode = [a for a in alerts if a.rule_id == "policy.ot_mode_change"]
    assert len(mode) == 2 and len({a.id for a in mode}) == 2 and {a.severity for a in mode} == {"critical", "high"}
    assert {a.technique_id for a in mode} == {"T0858"}


def test_a_new_operation_within_a_learned_class() -> None:
    """A master that always selected before operating sends DIRECT_OPERATE: the class (control) is learned, the
    operation is not; a learned SELECT/OPERATE stays quiet."""
    learn = [op(t, "READ") for t in range(0, 300, 5)] + \
        [op(t + 1, "SELECT", "control") for t in range(0, 300, 60)] + [op(t + 2, "OPERATE", "control")
                                                                        for t in range(0, 300, 60)]
    b = PolicyBaseline().fit(windows(learn))
    assert rules_of(b, [op(400, "SELECT", "control"), op(401, "OPERATE", "control"), op(402)]) == []
    [a] = b.detect(windows([op(400, "DIRECT_OPERATE", "control"), op(402)]))
    assert (a.rule_id, a.severity, a.technique_id) == ("policy.ot_new_operation", "high", "T0855")
    assert "DIRECT_OPERATE (control)" in a.explanation and "it sent OPERATE, READ, SELECT" in a.explanation
    [read] = b.detect(windows([op(400, "READ_DEVICE_ATTRIBUTES", "read")]))  # a new read: low, its own variant
    assert (read.rule_id, read.severity) == ("policy.ot_new_operation", "low")


def test_a_bundle_without_operation_names_judges_by_class_only() -> None:
    b = PolicyBaseline().fit(windows([op(t) for t in range(0, 300, 5)] + [op(7, "SELECT", "control")]))
    old = PolicyBaseline.from_state(_drop_operation_names(b.to_state()))
    assert rules_of(old, [op(400, "DIRECT_OPERATE", "control")]) == []  # control was learned: no names to judge
    assert rules_of(b, [op(400, "DIRECT_OPERATE", "control")]) == ["policy.ot_new_operation"]


def _drop_operation_names(state: dict) -> dict:
    """A bundle state as the release before named operations wrote it."""
    state = copy.deepcopy(state)
    found = 0
    stack = [state]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "classes" in node and "operations" in node and "max_unanswered" in node:
                del node["operations"]
                found += 1
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    assert found
    return state
