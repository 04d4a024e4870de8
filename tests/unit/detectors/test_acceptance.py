""""Learn this as normal": exactly what an accepted alert reported is allowed, nothing more, with an audit trail."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from otsentry.alerts.ecs import alert_from_ecs, to_ecs
from otsentry.cli import main
from otsentry.detectors.acceptance import NotAcceptable, facts_of
from otsentry.detectors.policy import PolicyBaseline
from tests.unit.detectors.test_policy import (AFTER, ATTACKER, HMI, PLC1, flow_window, hmi_reads, hmi_writes, learning_windows,
                                    only, rules)


@pytest.fixture(scope="module")
def baseline() -> PolicyBaseline:
    return PolicyBaseline().fit(learning_windows())


def test_an_accepted_written_value_passes_and_a_larger_one_still_alerts(baseline: PolicyBaseline) -> None:
    alert = only(baseline.detect([hmi_writes(AFTER, 103, 9999)]), "policy.write_value_out_of_range")
    accepted = baseline.accept([alert])
    assert accepted.detect([hmi_writes(AFTER + 60, 103, 9999)]) == []
    assert rules(accepted.detect([hmi_writes(AFTER + 60, 103, 10500)])) == ["policy.write_value_out_of_range"]
    assert rules(baseline.detect([hmi_writes(AFTER + 60, 103, 9999)])) == ["policy.write_value_out_of_range"]  # unchanged


def test_an_accepted_address_range_passes_and_one_register_further_alerts(baseline: PolicyBaseline) -> None:
    alert = only(baseline.detect([hmi_reads(AFTER, addr_max=5000)]), "policy.address_out_of_range")
    accepted = baseline.accept([alert])
    assert accepted.detect([hmi_reads(AFTER + 10, addr_max=5000)]) == []
    assert accepted.detect([hmi_reads(AFTER + 10, addr_min=100, addr_max=4000)]) == []
    assert rules(accepted.detect([hmi_reads(AFTER + 10, addr_max=5001)])) == ["policy.address_out_of_range"]


def test_counts_codes_talkers_and_services_are_accepted_exactly(baseline: PolicyBaseline) -> None:
    burst = only(baseline.detect([hmi_reads(AFTER, exceptions=30, exc_2=30)]), "policy.exception_burst")
    code = only(baseline.detect([hmi_reads(AFTER, fc_43=1)]), "policy.new_function_code")
    talker = only(baseline.detect([flow_window(AFTER, ATTACKER, PLC1, 502)]), "policy.new_talker")
    service = only(baseline.detect([flow_window(AFTER, HMI, PLC1, 445)]), "policy.new_service")
    accepted = baseline.accept([burst, code, talker, service])
    assert accepted.detect([hmi_reads(AFTER + 10, exceptions=30, exc_2=30), hmi_reads(AFTER + 20, fc_43=1),
                            flow_window(AFTER + 30, ATTACKER, PLC1, 502), flow_window(AFTER + 40, HMI, PLC1, 445)]) == []
    still = accepted.detect([hmi_reads(AFTER + 10, exceptions=31, exc_2=31), hmi_reads(AFTER + 20, fc_43=1, fc_17=1),
                             flow_window(AFTER + 30, "10.0.0.67", PLC1, 502), flow_window(AFTER + 40, HMI, PLC1, 3389)])
    assert sorted(rules(still)) == ["policy.exception_burst", "policy.new_function_code", "policy.new_service",
                                    "policy.new_talker"]
    # a finding holding an accepted and a new fact alerts whole (its text still names both)
    assert only(still, "policy.new_function_code").function_codes == (17, 43)


def test_accepted_facts_survive_the_state_and_refusals_are_one_line(baseline: PolicyBaseline) -> None:
    alert = only(baseline.detect([hmi_writes(AFTER, 103, 9999)]), "policy.write_value_out_of_range")
    accepted = baseline.accept([alert])
    restored = PolicyBaseline.from_state(json.loads(json.dumps(accepted.to_state())))
    assert restored.to_state() == accepted.to_state() and restored.detect([hmi_writes(AFTER, 103, 9999)]) == []
    assert "accepted" not in baseline.to_state()  # a baseline nobody edited keeps its old state
    for rule_id in ("anomaly.pair_ensemble", "sensor.packet_loss", "policy.evasion"):
        with pytest.raises(NotAcceptable, match="cannot be accepted"):
            facts_of(replace(alert, rule_id=rule_id))


def test_alerts_read_back_from_ecs_are_the_alerts(baseline: PolicyBaseline) -> None:
    for alert in baseline.detect([hmi_writes(AFTER, 300, 9999), flow_window(AFTER, ATTACKER, PLC1, 502)]):
        back = alert_from_ecs(json.loads(json.dumps(to_ecs(alert))))
        assert back == alert
        assert facts_of(back) == facts_of(alert)


def test_cli_accept_removes_exactly_the_accepted_alerts_and_keeps_an_audit_trail(tmp_path: Path) -> None:
    from otsentry.synth.scenarios import generate_scenario

    normal, attack = tmp_path / "normal.pcap", tmp_path / "sweep.pcap"
    generate_scenario(normal, "normal", seed=3, learn_s=300, total_s=320)
    generate_scenario(attack, "fc_sweep", seed=3, learn_s=300, attack_at_s=420, total_s=600)
    runner = CliRunner()
    model, model2, before, after = (tmp_path / n for n in ("m.otsb", "m2.otsb", "a.jsonl", "b.jsonl"))
    assert runner.invoke(main, ["train", str(normal), "-o", str(model)]).exit_code == 0
    run = runner.invoke(main, ["run", str(attack), "--model", str(model), "--alerts-out", str(before), "--format",
                               "json", "--no-progress"])
    assert run.exit_code == 0, run.output
    docs = [json.loads(line) for line in before.read_text().splitlines()]
    chosen = [d["event"]["id"] for d in docs if d["rule"]["id"] in ("policy.new_function_code", "policy.diagnostics")]
    assert len(chosen) == 2
    args = ["baseline", "accept", "-m", str(model), "--alerts", str(before), "--reason", "vendor laptop, CHG-4711",
            "--by", "analyst1", "-o", str(model2)]
    result = runner.invoke(main, [*args, *[x for i in chosen for x in ("--id", i)]])
    assert result.exit_code == 0, result.output
    rerun = runner.invoke(main, ["run", str(attack), "--model", str(model2), "--alerts-out", str(after),
                                 "--no-progress"])
    assert rerun.exit_code == 0, rerun.output
    remaining = {json.loads(line)["event"]["id"] for line in after.read_text().splitlines()}
    assert remaining == {d["event"]["id"] for d in docs} - set(chosen)
    shown = json.loads(runner.invoke(main, ["baseline", "show", str(model2), "--json"]).stdout)
    (entry,) = shown["audit"]
    assert (entry["by"], entry["reason"], sorted(entry["alerts"])) == ("analyst1", "vendor laptop, CHG-4711",
                                                                       sorted(chosen))
    assert shown["accepted_facts"]
    anomaly = next(d["event"]["id"] for d in docs if d["rule"]["id"].startswith("anomaly."))
    refused = runner.invoke(main, [*args, "--id", anomaly])
    assert refused.exit_code == 2 and "retrain" in refused.output
    assert runner.invoke(main, [*args, "--id", "nope"]).exit_code == 2
    incident = docs[0]["otsentry"]["incident"]["id"]
    whole = runner.invoke(main, [*args[:-1], str(tmp_path / "m3.otsb"), "--incident", incident])
    assert whole.exit_code == 0 and "not accepted" in whole.stderr
