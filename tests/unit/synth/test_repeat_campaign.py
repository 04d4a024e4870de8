"""One attacker repeating a campaign every 5 minutes: every repeat is detected and visible, folded into incidents."""

from __future__ import annotations

import pytest

from otsentry.correlation import correlate
from otsentry.pipeline import run
from otsentry.synth.library import generate, load_specs

ROUNDS, EVERY_S = 6, 300.0


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> tuple[list, list, float]:
    spec = load_specs()["repeat_campaign"]
    pcap, _, _, truth = generate("repeat_campaign", tmp_path_factory.mktemp("campaign"))
    result = run([pcap], learn_for_s=spec["timeline"]["learn_s"])
    return result.alerts, result.incidents, truth.attack_intervals_ns[0][0] / 1e9


def _listen_only(alerts) -> list:
    return [a for a in alerts if a.rule_id == "policy.diagnostics" and "listen-only" in a.explanation]


def test_every_force_listen_only_of_every_round_alerts(campaign) -> None:
    alerts, _, start = campaign
    listen = _listen_only(alerts)
    assert len(listen) == ROUNDS, [a.window_start - start for a in listen]
    rounds = sorted(int((a.window_start - start) // EVERY_S) for a in listen)
    assert rounds == list(range(ROUNDS))
    assert all(a.severity == "critical" and a.technique_id == "T0814" for a in listen)


def test_every_round_shows_its_writes_and_its_function_code_scan(campaign) -> None:
    alerts, _, start = campaign
    for rule_id in ("policy.new_function_code", "policy.write_value_out_of_range", "policy.exception_burst"):
        rounds = {int((a.window_start - start) // EVERY_S) for a in alerts if a.rule_id == rule_id}
        assert rounds == set(range(ROUNDS)), rule_id


def test_the_rounds_fold_into_one_incident_that_counts_them(campaign) -> None:
    alerts, incidents, _ = campaign
    assert len(incidents) == 1
    inc = incidents[0]
    assert {a.incident_id for a in alerts} == {inc.id} and inc.alert_count == len(alerts)
    assert f"sent FC 8 force listen-only to it ({ROUNDS} windows)" in inc.summary
    assert inc.severity == "critical" and "T0814" in inc.techniques and "T0846" in inc.techniques


def test_with_an_idle_gap_shorter_than_the_pause_each_round_is_its_own_incident(campaign) -> None:
    alerts, _, _ = campaign
    regrouped, incidents = correlate(alerts, idle_gap_s=120.0)
    assert len(incidents) == ROUNDS
    assert all(len(_listen_only([a for a in regrouped if a.incident_id == i.id])) == 1 for i in incidents)
