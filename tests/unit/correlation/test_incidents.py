"""Correlation: alerts of one attack fold into one incident; repeats stay visible; ids are deterministic."""

from __future__ import annotations

import json
import random

import pytest

from otsentry.alerts.ecs import incident_to_ecs
from otsentry.contracts.attack import TECHNIQUES
from otsentry.correlation import Correlator, correlate
from otsentry.contracts.windows import alert_order
from otsentry.detectors.rules import RISK_SCORES, RULES, rule
from otsentry.records import Alert, Incident, alert_id

T0 = 1_700_000_000.0
ATTACKER = "192.168.0.1"


def alert(rule_id: str, t: float, client: str = ATTACKER, server: str = "192.168.0.31", unit: int = 1,
          port: int = 502, severity: str = "high", technique: str | None = None, codes: tuple[int, ...] = ()) -> Alert:
    declared = rule(rule_id)
    tech = technique if technique is not None else (declared.technique or "")
    key = rule_id if unit >= 0 else f"{rule_id}@{port}/tcp"
    return Alert(id=alert_id(t, t + 10, client, server, unit, key), rule_id=rule_id, rule_name=declared.name,
                 category="policy", detector="policy", severity=severity, risk_score=RISK_SCORES[severity], score=1.0,
                 threshold=0.5, window_start=t, window_end=t + 10, client_ip=client, server_ip=server, unit_id=unit,
                 explanation="...", function_codes=codes, server_port=port, technique_id=tech)


def campaign(t: float, attacker: str = ATTACKER) -> list[Alert]:
    """An address scan of six hosts (80 and 502/tcp), device identification from .31, then FC 8/4 to .31."""
    out = [alert("policy.new_talker", t, attacker, "192.168.0.31", -1, 80, technique="T0846")]
    for i, host in enumerate(f"192.168.0.{n}" for n in range(31, 37)):
        out.append(alert("policy.new_service", t + 10 * i, attacker, host, -1, 80, "medium"))
        out.append(alert("policy.new_service", t + 10 * i, attacker, host, -1, 502, "medium"))
    out.append(alert("policy.new_function_code", t + 70, attacker, technique="T0888", codes=(43,), severity="medium"))
    out.append(alert("policy.diagnostics", t + 90, attacker, codes=(8,), severity="critical"))
    return out


def test_a_scan_then_identification_then_listen_only_is_one_incident_with_a_readable_summary() -> None:
    alerts, incidents = correlate(campaign(T0))
    assert len(incidents) == 1
    inc = incidents[0]
    assert {a.incident_id for a in alerts} == {inc.id}
    assert inc.alert_count == len(alerts) == 15
    assert inc.summary == ("192.168.0.1 scanned 6 hosts on 80 and 502/tcp, read device identification from .31 "
                           "(1 windows), then sent FC 8 force listen-only to it (1 windows)").replace(" (1 windows)", "")
    assert inc.techniques == ("T0846", "T0888", "T0814")
    assert [TECHNIQUES[t].tactic.name for t in inc.techniques] == ["Discovery", "Discovery",
                                                                   "Inhibit Response Function"]
    assert inc.actors == (ATTACKER,) and len(inc.targets) == 6
    assert inc.start == T0 and inc.end == T0 + 100
    assert inc.severity == "critical" and inc.escalated


def test_escalation_raises_severity_one_level_only_across_tactics() -> None:
    discovery_only = [alert("policy.new_pair", T0, severity="medium"), alert("policy.new_pair", T0 + 10, unit=2,
                                                                             severity="medium")]
    assert correlate(discovery_only)[1][0].severity == "medium"
    then_write = discovery_only + [alert("policy.first_write", T0 + 20, severity="medium")]
    inc = correlate(then_write)[1][0]
    assert inc.severity == "high" and inc.escalated
    reverse = [alert("policy.first_write", T0, severity="medium"), alert("policy.write_value_out_of_range", T0 + 10,
                                                                         severity="medium")]
    assert correlate(reverse)[1][0].severity == "medium"  # one tactic: no escalation


def test_a_repeat_after_the_idle_gap_opens_a_new_incident_and_every_repeat_stays_an_alert() -> None:
    first, again_soon, again_late = campaign(T0), campaign(T0 + 300), campaign(T0 + 300 + 100 + 901)
    alerts, incidents = correlate(first + again_soon + again_late, idle_gap_s=900)
    assert len(alerts) == 45
    assert len(incidents) == 2
    assert incidents[0].alert_count == 30 and incidents[1].alert_count == 15
    assert "(2 windows)" in incidents[0].summary  # the repeated listen-only is told, not hidden
    assert incidents[0].id != incidents[1].id


def test_unrelated_attackers_on_unrelated_targets_are_two_incidents_and_shared_targets_join() -> None:
    a = [alert("policy.first_write", T0, "10.0.0.66", "10.0.0.20")]
    b = [alert("policy.first_write", T0 + 10, "10.0.9.66", "10.0.9.20")]
    assert len(correlate(a + b)[1]) == 2
    c = [alert("policy.diagnostics", T0 + 20, "10.0.7.7", "10.0.0.20")]  # same target as a
    _, incidents = correlate(a + b + c)
    assert sorted(i.alert_count for i in incidents) == [1, 2]


def test_sensor_wide_alerts_share_one_incident() -> None:
    loss = [alert("sensor.packet_loss", T0 + 10 * i, "", "", -1, 0, "medium") for i in range(3)]
    _, incidents = correlate(loss)
    assert len(incidents) == 1 and incidents[0].techniques == () and incidents[0].summary.startswith("The sensor")
    assert incident_to_ecs(incidents[0]).get("threat") is None


def test_ids_are_deterministic_whatever_the_input_order() -> None:
    alerts = campaign(T0) + campaign(T0 + 5000, "192.168.0.2")
    shuffled = alerts[:]
    random.Random(3).shuffle(shuffled)
    assert correlate(shuffled) == correlate(alerts)


def test_streaming_correlator_builds_the_same_incidents_as_the_whole_stream() -> None:
    alerts = sorted(campaign(T0) + campaign(T0 + 2000), key=alert_order)
    c = Correlator(900)
    closed = []
    for a in alerts:
        closed += c.close_idle(a.window_start)
        c.add(a)
    assert len(c.open_incidents()) == 1
    closed += c.flush()
    assert closed == correlate(alerts)[1]
    with pytest.raises(ValueError):
        Correlator(0)


def test_incident_round_trips_and_ecs_carries_attack_in_order() -> None:
    inc = correlate(campaign(T0))[1][0]
    assert Incident.from_dict(json.loads(json.dumps(inc.to_dict()))) == inc
    doc = incident_to_ecs(inc)
    assert doc["threat"]["framework"] == "MITRE ATT&CK for ICS"
    assert doc["threat"]["technique"]["id"] == ["T0846", "T0888", "T0814"]
    assert doc["threat"]["tactic"]["name"] == ["Discovery", "Inhibit Response Function"]
    assert doc["event"]["id"] == inc.id and doc["message"] == inc.summary
    assert doc["related"]["ip"] == list(inc.related) and doc["otsentry"]["incident"]["alert_count"] == 15


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_every_rule_maps_to_attack_for_ics_except_sensor_health(rule_id: str) -> None:
    declared = RULES[rule_id]
    if rule_id.startswith("sensor."):
        assert declared.kind == "health" and declared.technique_for() is None
        return
    tech = declared.technique_for()
    assert tech is not None and tech.id in TECHNIQUES and declared.reason
    for variant in declared.variants:
        assert declared.technique_for(variant) is not None
        assert declared.step_for(declared.technique_for(variant).id) != declared.step or variant == ""


def test_the_readme_documents_every_rule_with_its_technique() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    table = text[text.index("| rule | kind | technique (tactic) |"):]
    table = table[:table.index("\n\n")]
    for rule_id, declared in RULES.items():
        row = next((line for line in table.splitlines() if f"`{rule_id}`" in line), None)
        assert row is not None, f"{rule_id} is not in the README's ATT&CK table"
        tech = declared.technique_for()
        assert (tech.id if tech else "none") in row and f"| {declared.kind} |" in row, rule_id


def test_an_incident_that_never_goes_quiet_closes_after_a_day() -> None:
    alerts = [alert("policy.first_write", T0 + 600 * i) for i in range(6 * 50)]  # every 10 min for 50 hours
    _, incidents = correlate(alerts)
    assert [i.alert_count for i in incidents] == [145, 145, 10]  # a day each, the rest: bounded state
    assert all(i.end - i.start <= 86400 + 10 for i in incidents)
