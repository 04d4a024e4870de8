"""Process variables: learned per register, shown by `assets --variables`, and a value driven far outside them
alerts (policy.process_value_out_of_range) while ordinary drift, setpoint moves and counters stay quiet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from otsentry.assets import inventory_from_captures
from otsentry.assets.variables import VariableBook
from otsentry.cli import main
from otsentry.detectors.bundle import ModelBundle
from otsentry.detectors.variables import allowed_range
from otsentry.pipeline import run, train
from otsentry.records import ModbusEvent, ProcessVariable
from otsentry.synth.scenarios import generate_scenario

RULE = "policy.process_value_out_of_range"


@pytest.fixture(scope="module")
def plant(tmp_path_factory):
    d = tmp_path_factory.mktemp("variables")
    normal, attack = d / "normal.pcap", d / "setpoint.pcap"
    generate_scenario(normal, "normal", seed=7, learn_s=600, total_s=1500)
    generate_scenario(attack, "setpoint_change", seed=7, learn_s=600, attack_at_s=900, total_s=1500)
    model = train([normal], learn_for_s=600).save(d / "plant.otsb")
    return normal, attack, model


def _read(t: float, address: int, values: tuple[int, ...], client: str = "10.0.0.5") -> ModbusEvent:
    return ModbusEvent(t, client, 40000, "10.0.0.20", 502, 1, 1, 3, "READ_HOLDING_REGISTERS", start_address=address,
                       quantity=len(values), values=values, request_frame=1, response_frame=2, response_ts=t + 0.01)


def test_the_book_learns_range_change_period_and_counters() -> None:
    book = VariableBook()
    book.add_events(_read(100.0 + i, 0, (500 + (i % 3), 1000 + 7 * i)) for i in range(30))
    level, counter = book.variables()
    assert (level.address, level.low, level.high, level.reads) == (0, 500, 502, 30)
    assert level.typical_change == 1.0 and level.period_s == pytest.approx(1.0) and not level.counter
    assert counter.counter and counter.typical_change == 7.0 and counter.last_value == 1000 + 7 * 29
    lo, hi = allowed_range(level)
    assert lo < 500 and 502 < hi < 9999  # the magnitude term: a setpoint moved within its band stays quiet
    assert ProcessVariable.from_dict(json.loads(json.dumps(level.to_dict()))) == level


def test_normal_traffic_raises_no_process_value_alert(plant) -> None:
    normal, _, model = plant
    bundle = ModelBundle.load(model)
    assert len(bundle.variables) > 50 and any(v.counter for v in bundle.variables)
    assert [a for a in run([normal], bundle=bundle).alerts if a.rule_id == RULE] == []


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_setpoint_driven_to_9999_alerts_once_with_its_register(plant, jobs: int) -> None:
    _, attack, model = plant
    alerts = [a for a in run([attack], bundle=ModelBundle.load(model), jobs=jobs).alerts if a.rule_id == RULE]
    assert alerts, "the 9999 read back must alert"
    first = alerts[0]
    assert first.evidence[0].value == 9999.0 and first.evidence[0].name.startswith("holding_register_")
    assert first.technique_id == "T0831" and "far outside anything it held while learning" in first.explanation
    # one alert per register value (its first reader), not one per poller and window while the value stays
    values = [(a.server_ip, e.name, e.value) for a in alerts for e in a.evidence]
    assert len(values) == len(set(values))


def test_assets_variables_cli_marks_what_the_rule_would_call_out(plant) -> None:
    _, attack, model = plant
    res = CliRunner().invoke(main, ["assets", str(attack), "--model", str(model), "--variables", "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    out = [r for r in rows if r["status"] == "out"]
    assert out and all(r["high"] == 9999 for r in out)
    learned = CliRunner().invoke(main, ["assets", "--model", str(model), "--variables"])
    assert learned.exit_code == 0 and "holding_register" in learned.stdout and "counter" in learned.stdout


def test_inventory_pass_feeds_the_book(plant) -> None:
    normal, _, _ = plant
    book = VariableBook()
    inventory_from_captures([Path(normal)], variables=book)
    assert {v.table for v in book.variables()} >= {"coil", "holding_register"}


def test_accepting_a_process_value_alert_widens_exactly_that_register(plant, tmp_path) -> None:
    _, attack, model = plant
    bundle = ModelBundle.load(model)
    alerts = [a for a in run([attack], bundle=bundle).alerts if a.rule_id == RULE]
    accepted = bundle.with_accepted(alerts[:1], "new setpoint approved", "analyst")
    path = accepted.save(tmp_path / "accepted.otsb")
    again = [a for a in run([attack], bundle=ModelBundle.load(path)).alerts if a.rule_id == RULE]
    assert again == [a for a in alerts if a.evidence[0].name != alerts[0].evidence[0].name or
                     a.server_ip != alerts[0].server_ip]
    changed = [(v, w) for v, w in zip(bundle.variables, accepted.variables) if v != w]
    assert len(changed) == 1 and changed[0][1].high == 9999.0


def test_variable_documents_are_mapped_by_their_template(plant) -> None:
    from otsentry.alerts.ecs import variable_to_ecs
    from otsentry.alerts.elastic_template import VARIABLE_MAPPINGS, field_types

    _, _, model = plant
    types = field_types(VARIABLE_MAPPINGS)
    doc = variable_to_ecs(ModelBundle.load(model).variables[0])

    def leaves(d, path=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{path}{k}.")
            else:
                yield f"{path}{k}", v

    names = [n for n, _ in leaves(doc)]
    assert all(n in types for n in names), [n for n in names if n not in types]
    assert types["otsentry.variable.server"] == "ip" and types["otsentry.variable.counter"] == "boolean"
