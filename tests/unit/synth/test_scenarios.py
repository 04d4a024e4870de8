"""Scenario captures: deterministic, labelled exactly, and the attacks are what their descriptions say.

Labels are checked against an independent view of the file: the native collector's transactions (who asked
what, in which frames) and the raw frames' IP addresses, not against the generator's own bookkeeping.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.source import decode_capture
from otsentry.records import ModbusEvent
from otsentry.synth import modbus as mb
from otsentry.synth.attacks import PLC_SUPPORTED
from otsentry.synth.plant import SETPOINTS
from otsentry.synth.polling import generate_polling
from otsentry.synth.scenarios import SCENARIO_NAMES, ScenarioTruth, generate_scenario
from otsentry.synth.specs import scenario_spec
from tests.helpers import require_tool

ATTACKS = ["write_new_host", "fc_sweep", "query_flood", "setpoint_change"]
ORIGINAL = ["normal"] + ATTACKS  # the later scenarios (some longer than SHORT) are in test_scenarios_library
NEW_HOST = ["write_new_host", "fc_sweep", "query_flood"]
SEED = 7
# Short captures for most tests: 2 minutes of learning, the attack 30 s later, 4 minutes in all.
SHORT = {"learn_s": 120.0, "attack_at_s": 150.0, "total_s": 240.0}


def short(path: Path, name: str, seed: int = SEED, **kwargs: object) -> ScenarioTruth:
    args = dict(SHORT, **kwargs)
    if name == "normal":
        args.pop("attack_at_s")
    return generate_scenario(path, name, seed, **args)  # type: ignore[arg-type]


def records(path: Path) -> list[tuple[int, bytes]]:
    """(ts_us, frame) of a little-endian microsecond Ethernet pcap: an independent reader."""
    raw = path.read_bytes()
    out, off = [], 24
    while off < len(raw):
        sec, usec, caplen, _ = struct.unpack("<IIII", raw[off:off + 16])
        out.append((sec * 1_000_000 + usec, raw[off + 16:off + 16 + caplen]))
        off += 16 + caplen
    return out


def ips(frame: bytes) -> tuple[str, str]:
    """IPv4 source and destination of an untagged Ethernet frame."""
    return str(ipaddress.ip_address(frame[26:30])), str(ipaddress.ip_address(frame[30:34]))


def events(path: Path) -> list[ModbusEvent]:
    run = decode_capture(path, CollectorConfig())
    return [e for batch in run for e in batch.modbus.events(run.conns)]


def frames_of(event: ModbusEvent) -> list[int]:
    return [f for f in (event.request_frame, event.response_frame) if f is not None]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> dict[str, tuple[Path, ScenarioTruth, list[ModbusEvent]]]:
    out = {}
    for name in ORIGINAL:
        path = tmp_path_factory.mktemp("scenarios") / f"{name}.pcap"
        truth = short(path, name)
        out[name] = (path, truth, events(path))
    return out


# -- determinism --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["fc_sweep", "setpoint_change"])
def test_same_seed_same_bytes_and_truth(tmp_path, name):
    a, b, c = (short(tmp_path / f"{i}.pcap", name, seed) for i, seed in enumerate((3, 3, 4)))
    assert sha256(tmp_path / "0.pcap") == sha256(tmp_path / "1.pcap") != sha256(tmp_path / "2.pcap")
    assert a.to_dict(with_frames=True) == b.to_dict(with_frames=True) != c.to_dict(with_frames=True)


def test_plant_draw_order_unchanged_the_bundled_demo_still_reproduces(tmp_path):
    """Scenarios share ``build_plant`` with ``generate_polling``: its draw order pins every seed's bytes."""
    demo = Path(__file__).resolve().parents[3] / "replays" / "demo-polling.pcap"
    generate_polling(tmp_path / "demo.pcap", 5000, 42)
    assert sha256(tmp_path / "demo.pcap") == sha256(demo)


def test_normal_traffic_is_the_same_in_every_scenario_until_the_attack(captures):
    """One baseline learned on any scenario's learning part fits all of them; read-only attacks add frames only."""
    normal = records(captures["normal"][0])
    for name in ATTACKS:
        path, truth, _ = captures[name]
        start_us = truth.attack_intervals_ns[0][0] // 1000
        assert start_us >= truth.learn_end_ns // 1000
        rest = [r for number, r in enumerate(records(path), 1) if not truth.label(number)]
        before = [r for r in rest if r[0] < start_us]
        assert before == [r for r in normal if r[0] < start_us], name
        if name in ("fc_sweep", "query_flood"):  # nothing in the plant changed: every normal frame is the same
            assert rest == normal, name


# -- labels -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NEW_HOST)
def test_new_host_labels_are_exactly_the_attackers_frames(captures, name):
    path, truth, evs = captures[name]
    frames = records(path)
    assert truth.packets == len(frames)
    involving = {n for n, (_, frame) in enumerate(frames, 1) if truth.attacker_ip in ips(frame)}
    assert set(truth.attack_frames) == involving  # handshake, requests, responses, teardown
    attacker_events = [e for e in evs if e.client_ip == truth.attacker_ip]
    assert attacker_events and all(e.server_ip == truth.target_ip for e in attacker_events)
    for e in attacker_events:
        assert e.request_frame and e.response_frame, e  # every request answered
        assert all(truth.label(f) for f in frames_of(e)), e
    for e in evs:
        if e.client_ip != truth.attacker_ip:
            assert not any(truth.label(f) for f in frames_of(e)), e


def test_setpoint_change_labels_exactly_the_malicious_write(captures):
    path, truth, evs = captures["setpoint_change"]
    hmi = truth.attacker_ip
    labelled = [e for e in evs if any(truth.label(f) for f in frames_of(e))]
    assert len(labelled) == 1 and len(truth.attack_frames) == 2
    write = labelled[0]
    assert (write.client_ip, write.server_ip, write.unit_id) == (hmi, truth.target_ip, truth.target_unit)
    assert write.function_code == mb.WRITE_SINGLE_REGISTER and write.values == (9999,)
    assert list(truth.attack_frames) == [write.request_frame, write.response_frame]
    assert SETPOINTS <= (write.start_address or 0) < SETPOINTS + 10
    # On the HMI's usual connection: the same client port as its polls of that PLC just before.
    polls = [e for e in evs if e.client_ip == hmi and e.server_ip == truth.target_ip and e.ts < write.ts]
    assert polls and polls[-1].client_port == write.client_port
    # Never written or read for that register while learning; the HMI writes it within a band.
    register = write.start_address
    seen = set()
    for e in evs:
        if e.ts < truth.learn_end_ts and e.server_ip == truth.target_ip and e.function_code in (3, 6, 16):
            start = e.start_address or 0
            if start <= register < start + max(1, len(e.values)):
                seen.add(e.values[register - start])
    assert seen and 9999 not in seen and max(seen) < 2000
    # The operator restores the value the register had before, with an ordinary write, inside the interval.
    before = [e for e in evs if e.ts < write.ts and e.server_ip == truth.target_ip and e.values
              and e.function_code in (3, 6, 16) and (e.start_address or 0) <= register < (e.start_address or 0)
              + len(e.values)]
    previous = before[-1].values[register - (before[-1].start_address or 0)]
    start, end = truth.attack_intervals[0]
    restore = [e for e in evs if e.client_ip == hmi and e.function_code == 6 and e.start_address == register
               and write.ts < e.ts <= end]
    assert restore and restore[-1].values == (previous,)
    assert restore[-1].response_ts == pytest.approx(end, abs=2e-6)  # the interval is rounded outwards to us


def test_normal_scenario_has_no_attack(captures, tmp_path):
    path, truth, evs = captures["normal"]
    assert len(truth.attack_frames) == 0 and truth.attack_intervals == [] and truth.technique_id is None
    truth.write_labels_csv(tmp_path / "labels.csv")
    lines = (tmp_path / "labels.csv").read_text().splitlines()
    assert lines[0] == "frame;label" and len(lines) == truth.packets + 1
    assert {line.split(";")[1] for line in lines[1:]} == {"0"}
    truth.write_intervals_csv(tmp_path / "intervals.csv")
    assert (tmp_path / "intervals.csv").read_text() == "start;end\n"
    clients = {e.client_ip for e in evs}
    assert clients == {"10.10.1.10", "10.10.1.11"}  # the HMI and the historian only


def test_normal_traffic_has_the_variation_detectors_must_tolerate(captures):
    _, truth, evs = captures["normal"]
    counts = truth.counts
    assert counts.exceptions > 0 and counts.retransmissions > 0 and counts.split_adus > 0
    assert counts.non_modbus_flows > 0  # DNS and HTTP
    assert counts.modbus_connections > counts.midstream_connections  # handshakes: historian, reconnects
    writes = [e for e in evs if e.function_code in (5, 6, 15, 16)]
    assert writes and {e.client_ip for e in writes} == {"10.10.1.10"}
    assert not any(e.exception_code == mb.ILLEGAL_FUNCTION for e in evs)


@pytest.mark.parametrize("name", ATTACKS)
def test_csv_files_and_attack_times_inside_the_intervals(captures, name, tmp_path):
    path, truth, evs = captures[name]
    spec = scenario_spec(name)
    assert (truth.technique_id, truth.technique_name) == (spec.technique_id, spec.technique_name)
    assert len(truth.attack_intervals) == 1
    start, end = truth.attack_intervals[0]
    assert truth.learn_end_ts <= start < end
    stamps = dict(enumerate((ts for ts, _ in records(path)), 1))
    start_us, end_us = (ns // 1000 for ns in truth.attack_intervals_ns[0])
    assert all(start_us <= stamps[f] <= end_us for f in truth.attack_frames)
    for e in evs:
        if any(truth.label(f) for f in frames_of(e)):
            assert start <= e.ts <= end and start <= (e.response_ts or e.ts) <= end, e
    truth.write_labels_csv(tmp_path / "labels.csv")
    rows = [line.split(";") for line in (tmp_path / "labels.csv").read_text().splitlines()]
    assert rows[0] == ["frame", "label"] and [int(r[0]) for r in rows[1:]] == list(range(1, truth.packets + 1))
    assert [int(r[0]) for r in rows[1:] if r[1] == "1"] == list(truth.attack_frames)
    truth.write_intervals_csv(tmp_path / "intervals.csv")
    lines = (tmp_path / "intervals.csv").read_text().splitlines()
    assert lines[0] == "start;end" and len(lines) == 2
    assert [float(x) for x in lines[1].split(";")] == pytest.approx([start, end], abs=1e-6)


# -- what each attack looks like ------------------------------------------------------------------------------------

def test_write_new_host_writes_registers_a_few_times(captures):
    _, truth, evs = captures["write_new_host"]
    attacker = [e for e in evs if e.client_ip == truth.attacker_ip]
    writes = [e for e in attacker if e.function_code in (mb.WRITE_SINGLE_REGISTER, mb.WRITE_MULTIPLE_REGISTERS)]
    assert len(writes) >= 3 and {e.function_code for e in writes} == {6, 16}
    assert all(e.exception_code is None for e in attacker)
    assert truth.attacker_ip not in {e.client_ip for e in evs if e.ts < truth.learn_end_ts}


def test_fc_sweep_probes_every_code_and_gets_illegal_function(captures):
    _, truth, evs = captures["fc_sweep"]
    attacker = [e for e in evs if e.client_ip == truth.attacker_ip]
    assert sorted(e.function_code for e in attacker) == list(range(1, 128))
    assert {e.unit_id for e in attacker} == {truth.target_unit}
    for e in attacker:
        if e.function_code not in PLC_SUPPORTED:
            assert e.exception_code == mb.ILLEGAL_FUNCTION, e
        else:
            assert e.exception_code != mb.ILLEGAL_FUNCTION, e


def test_query_flood_is_at_least_50_times_the_normal_rate(captures):
    _, truth, evs = captures["query_flood"]
    start, end = truth.attack_intervals[0]
    assert 25 <= end - start <= 35
    to_target = [e for e in evs if e.server_ip == truth.target_ip and e.request_frame]
    learning = [e for e in to_target if e.ts < truth.learn_end_ts]
    normal_rate = len(learning) / (truth.learn_end_ts - min(e.ts for e in learning))
    flood_rate = sum(1 for e in to_target if e.client_ip == truth.attacker_ip) / (end - start)
    assert flood_rate >= 50 * normal_rate, (flood_rate, normal_rate)
    assert all(e.function_code == mb.READ_HOLDING_REGISTERS for e in to_target if e.client_ip == truth.attacker_ip)


# -- size, speed, errors, entry point -------------------------------------------------------------------------------

def test_forty_minutes_generate_in_seconds_and_stay_small(tmp_path):
    started = time.perf_counter()
    truth = generate_scenario(tmp_path / "flood.pcap", "query_flood", 1)  # the largest: 10 + 30 min, flood
    elapsed = time.perf_counter() - started
    assert truth.counts.duration_s == pytest.approx(2400, abs=5)
    assert elapsed < 15, elapsed
    assert (tmp_path / "flood.pcap").stat().st_size < 16_000_000
    assert 0 < len(truth.attack_frames) < truth.packets


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown scenario"):
        generate_scenario(tmp_path / "x.pcap", "nope", 1)
    with pytest.raises(ValueError, match="learning part"):
        generate_scenario(tmp_path / "x.pcap", "fc_sweep", 1, learn_s=120, attack_at_s=60, total_s=300)
    with pytest.raises(ValueError, match="past total_s"):
        generate_scenario(tmp_path / "x.pcap", "query_flood", 1, learn_s=60, attack_at_s=90, total_s=100)
    with pytest.raises(ValueError, match="no attack"):
        generate_scenario(tmp_path / "x.pcap", "normal", 1, attack_at_s=700)


def test_main_prints_the_truth_and_writes_the_same_file(tmp_path):
    truth = short(tmp_path / "a.pcap", "fc_sweep", 5)
    out = subprocess.run(
        [sys.executable, "-m", "otsentry.synth.scenarios", "fc_sweep", str(tmp_path / "b.pcap"), "--seed", "5",
         "--learn-s", "120", "--attack-at-s", "150", "--total-s", "240", "--labels", str(tmp_path / "l.csv")],
        capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert sha256(tmp_path / "a.pcap") == sha256(tmp_path / "b.pcap")
    assert result["technique"]["id"] == "T0888" and result["attack_packets"] == len(truth.attack_frames)
    assert result["attack_intervals"] == [list(i) for i in truth.attack_intervals]
    assert len((tmp_path / "l.csv").read_text().splitlines()) == truth.packets + 1


@pytest.mark.integration
@pytest.mark.parametrize("name", ORIGINAL)
def test_tshark_decodes_scenarios_cleanly(captures, name):
    path, truth, _ = captures[name]
    tshark = require_tool("tshark")

    def run(*args: str) -> str:
        result = subprocess.run([tshark, "-r", str(path), "-n", *args], capture_output=True, text=True, check=False)
        errors = [line for line in result.stderr.splitlines() if line and "Running as user" not in line]
        assert result.returncode == 0 and not errors, result.stderr
        return result.stdout

    assert run("-Y", "_ws.malformed || _ws.expert.severity == error "
                     "|| (tcp.analysis.flags && !tcp.analysis.retransmission)") == ""
    ids = run("-T", "fields", "-e", "mbtcp.trans_id").split()
    assert len(",".join(ids).split(",")) == truth.counts.modbus_adus
    if truth.attacker_ip and name in NEW_HOST:
        numbers = run("-Y", f"ip.addr == {truth.attacker_ip}", "-T", "fields", "-e", "frame.number").split()
        assert [int(n) for n in numbers] == list(truth.attack_frames)
    requests = run("-Y", "mbtcp && tcp.dstport == 502", "-T", "fields", "-e", "modbus.func_code").split()
    assert sum(len(r.split(",")) for r in requests) == truth.counts.modbus_requests
