"""``otsentry pcap extract``: the packets of an alert's window and pair, byte for byte, checked with scapy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from otsentry.cli import main

ATTACK_AT = 1_709_280_000 + 420


@pytest.fixture(scope="module")
def alerts(tmp_path_factory) -> tuple[Path, Path, list[dict]]:
    from otsentry.synth.scenarios import generate_scenario

    d = tmp_path_factory.mktemp("extract")
    capture, out = d / "sweep.pcap", d / "alerts.jsonl"
    generate_scenario(capture, "fc_sweep", seed=3, learn_s=300, attack_at_s=420, total_s=600)
    res = CliRunner().invoke(main, ["run", str(capture), "--learn-for", "5m", "--alerts-out", str(out),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    return capture, out, [json.loads(line) for line in out.read_text().splitlines()]


def test_alerts_name_their_capture_and_frames(alerts) -> None:
    capture, _, docs = alerts
    for d in docs:
        assert d["otsentry"]["capture"]["path"] == str(capture)
        assert 0 < d["otsentry"]["capture"]["first_frame"] <= d["otsentry"]["capture"]["last_frame"]


def test_extract_writes_the_windows_packets_of_the_pair(alerts, tmp_path: Path) -> None:
    from scapy.all import IP, rdpcap

    capture, path, docs = alerts
    doc = next(d for d in docs if d["rule"]["id"] == "policy.diagnostics")
    out = tmp_path / "evidence.pcap"
    res = CliRunner().invoke(main, ["pcap", "extract", "--alert", doc["event"]["id"], "--alerts", str(path),
                                    "-o", str(out)])
    assert res.exit_code == 0, res.output
    a, b = doc["source"]["ip"], doc["destination"]["ip"]
    from otsentry.alerts.ecs import alert_from_ecs

    alert = alert_from_ecs(doc)
    expected = [bytes(p) for p in rdpcap(str(capture))
                if IP in p and {p[IP].src, p[IP].dst} == {a, b}
                and alert.window_start <= float(p.time) < alert.window_end]
    got = [bytes(p) for p in rdpcap(str(out))]
    assert got == expected and len(got) > 10
    assert f"{len(got)} packets written" in res.output


def test_extract_refuses_what_it_cannot_do_in_one_line(alerts, tmp_path: Path) -> None:
    _, path, docs = alerts
    runner = CliRunner()
    base = ["pcap", "extract", "--alerts", str(path), "-o", str(tmp_path / "x.pcap")]
    missing = runner.invoke(main, [*base, "--alert", "nope"])
    assert missing.exit_code == 2 and "no alert with id nope" in missing.output
    gone = runner.invoke(main, [*base, "--alert", docs[0]["event"]["id"], "--capture", str(tmp_path / "gone.pcap")])
    assert gone.exit_code == 2 and "no such file" in gone.output.lower() and "Traceback" not in gone.output
