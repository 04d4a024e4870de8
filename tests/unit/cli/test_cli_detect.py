"""`otsentry train`, `run` and `evaluate` through the CLI: bundles, ECS output, idempotent JSONL, user errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from otsentry.cli import main
from otsentry.synth.scenarios import generate_scenario

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    pcap = folder / "sweep.pcap"
    truth = generate_scenario(pcap, "fc_sweep", seed=3, learn_s=300, attack_at_s=420, total_s=600)
    labels = folder / "sweep.csv"
    truth.write_labels_csv(labels)
    return folder, pcap, labels, truth


@pytest.fixture(scope="module")
def model(scenario):
    folder, pcap, _, _ = scenario
    path = folder / "plant.otsb"
    res = CliRunner().invoke(main, ["train", str(pcap), "--learn-for", "5m", "-o", str(path), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "model written to" in res.output and path.exists()
    return path


def test_run_with_model_prints_ecs_and_writes_jsonl_once(scenario, model):
    folder, pcap, _, truth = scenario
    out = folder / "alerts.jsonl"
    args = ["run", str(pcap), "--model", str(model), "--format", "json", "--alerts-out", str(out), "--no-progress"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    docs = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert docs, res.output
    for doc in docs:
        assert doc["event"]["kind"] == "alert" and doc["network"]["protocol"] == "modbus"
        assert doc["message"] and doc["rule"]["id"]
    assert any(doc["source"]["ip"] == truth.attacker_ip for doc in docs)
    written = out.read_text().splitlines()
    assert len(written) == len({d["event"]["id"] for d in docs})
    # A second run over the same capture appends nothing: alert ids are deterministic.
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0
    assert out.read_text().splitlines() == written


def test_run_table_and_learn_for(scenario):
    _, pcap, _, truth = scenario
    res = CliRunner().invoke(main, ["run", str(pcap), "--learn-for", "5m", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert truth.attacker_ip in res.stdout and "policy.new_talker" in res.stdout


def test_evaluate_json(scenario, model):
    _, pcap, labels, _ = scenario
    res = CliRunner().invoke(main, ["evaluate", str(pcap), "--labels", str(labels), "--model", str(model), "--json",
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)
    assert {"precision", "recall", "f1", "roc_auc", "time_to_detect_s", "false_alerts_per_hour"} <= set(ev)
    assert ev["detected"] and ev["recall"] == 1.0


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "{pcap}"], "either --model MODEL or --learn-for"),
        (["run", "{pcap}", "--model", "{pcap}"], "not an otsentry model bundle"),
        (["run", "{pcap}", "--learn-for", "soon"], "duration"),
        (["evaluate", "{pcap}", "--labels", "{pcap}", "--learn-for", "5m"], "labels"),
        (["train", "{pcap}", "-o", "{folder}/x.otsb", "--learn-for", "1s"], "no traffic to learn from"),
    ],
)
def test_user_errors_are_one_line(scenario, args, needle):
    folder, pcap, _, _ = scenario
    argv = [a.format(pcap=pcap, folder=folder) for a in args] + ["--no-progress"]
    res = CliRunner().invoke(main, argv)
    assert res.exit_code == 2, res.output
    assert needle in res.output.lower() or needle in res.output
    assert "Traceback" not in res.output
