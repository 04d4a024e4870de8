"""The scenario library: YAML specs, cached generation, and the newer attacks' captures and labels.

As in ``test_scenarios``, labels are checked against an independent view of each file: the native collector's
transactions (who asked what, what came back, in which frames) and the raw frames' addresses and ports, and the
captures are compared with the ``normal`` scenario of the same seed frame by frame.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from otsentry.detectors.rules import RULES
from otsentry.records import ModbusEvent
from otsentry.synth import library
from otsentry.synth import modbus as mb
from otsentry.synth.attacks import COVERT_MESSAGE, COVERT_REGISTER, GATEWAY_SERIAL_UNITS
from otsentry.synth.library import SpecError, generate, load_specs, timeline_of
from otsentry.synth.plant import HOLDING_REGISTERS
from otsentry.synth.scenarios import REPLAY_RECORD_BEFORE_S, REPLAY_S, SCENARIO_NAMES, ScenarioTruth, generate_scenario
from otsentry.synth.specs import scenario_spec
from tests.helpers import require_tool
from tests.unit.synth.test_scenarios import events, frames_of, ips, records, sha256

NEW = ["unit_id_sweep", "address_sweep", "replay_old_responses", "spoofed_freeze", "diag_restart", "exception_storm",
       "new_service_smb", "new_service_rdp", "covert_channel"]
MITM = ["replay_old_responses", "spoofed_freeze"]
ADDITIVE = ["unit_id_sweep", "address_sweep", "new_service_smb", "new_service_rdp"]  # change nothing in the plant
SEED = 7
LEARN_S, ATTACK_AT_S = 120.0, 150.0
HMI, HISTORIAN, ENG = "10.10.1.10", "10.10.1.11", "10.10.1.20"
ICS_TACTICS = {"Initial Access", "Execution", "Persistence", "Privilege Escalation", "Evasion", "Discovery",
               "Lateral Movement", "Collection", "Command and Control", "Inhibit Response Function",
               "Impair Process Control", "Impact"}
ANOMALY_RULES = {"anomaly.pair_ensemble", "anomaly.flow_ensemble", "anomaly.ot_ensemble"}


def total_s(name: str) -> float:
    """Short captures: 2 minutes of learning, the attack at 2.5 minutes; long enough for the attack to end."""
    return 780.0 if name == "covert_channel" else 360.0


def tcp_ports(frame: bytes) -> tuple[int, int] | None:
    """TCP source and destination port of an untagged Ethernet/IPv4 frame (None for UDP)."""
    if frame[23] != 6:
        return None
    off = 14 + (frame[14] & 0x0F) * 4
    return struct.unpack("!HH", frame[off:off + 4])


def tcp_payload(frame: bytes) -> bytes:
    off = 14 + (frame[14] & 0x0F) * 4
    return frame[off + (frame[off + 12] >> 4) * 4:]


class Capture:
    def __init__(self, path: Path, truth: ScenarioTruth) -> None:
        self.path, self.truth = path, truth
        self.frames = records(path)
        self.events = events(path)
        self.labelled = set(truth.attack_frames)

    @property
    def attack_start_us(self) -> int:
        return self.truth.attack_intervals_ns[0][0] // 1000

    def forged(self) -> list[ModbusEvent]:
        """Events whose response frame is labelled (the man in the middle's or the failing PLC's answers)."""
        return [e for e in self.events if e.response_frame in self.labelled]


@pytest.fixture(scope="module")
def caps(tmp_path_factory) -> dict[str, Capture]:
    out = tmp_path_factory.mktemp("library")
    result = {}
    for name in NEW:
        pcap, _, _, truth = generate(name, out, SEED, learn_s=LEARN_S, attack_at_s=ATTACK_AT_S, total_s=total_s(name))
        result[name] = Capture(pcap, truth)
    for total in (360.0, 780.0):
        pcap, _, _, truth = generate("normal", out, SEED, learn_s=LEARN_S, total_s=total)
        result[f"normal{total:.0f}"] = Capture(pcap, truth)
    return result


def normal_for(caps: dict[str, Capture], name: str) -> Capture:
    return caps[f"normal{total_s(name):.0f}"]


# -- specs ----------------------------------------------------------------------------------------------------------

def test_every_scenario_has_a_valid_spec():
    specs = load_specs()
    assert list(specs) == list(SCENARIO_NAMES)  # same names, the generator's order (normal first)
    attacks = [s for s in specs.values() if s["technique"] is not None]
    assert len(attacks) >= 10
    for name, spec in specs.items():
        assert spec["title"].strip() and len(spec["description"].split(". ")) >= 2, name  # a few sentences
        tl = spec["timeline"]
        assert (tl["learn_s"], tl["total_s"], spec["seed"]) == (600.0, 2400.0, 7), name
        assert set(spec["expected"]["rules"]) <= set(RULES) | ANOMALY_RULES, name
        if spec["technique"] is None:
            assert name == "normal" and tl["attack_at_s"] is None and spec["expected"]["rules"] == []
            continue
        tech = spec["technique"]
        assert re.fullmatch(r"T08\d\d", tech["id"]) and tech["tactic"] in ICS_TACTICS, name
        # the half-hour campaign starts a minute after learning so that it fits the library's 40 minutes
        assert tl["attack_at_s"] == (660.0 if name == "repeat_campaign" else 900.0), name
        assert tl["duration_s"] == scenario_spec(name).duration_s
        assert spec["expected"]["rules"] or spec["expected"].get("notes"), name  # what would catch it otherwise


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.update(colour="red"), "unknown key 'colour'"),
    (lambda s: s["technique"].update(url="https://attack.mitre.org"), "technique: unknown key 'url'"),
    (lambda s: s["timeline"].update(start_s=3), "timeline: unknown key 'start_s'"),
    (lambda s: s["expected"].update(rule="policy.new_talker"), "expected: unknown key 'rule'"),
    (lambda s: s.pop("seed"), "missing key 'seed'"),
    (lambda s: s.update(technique=None), "attack_at_s must be null exactly when there is no attack"),
    (lambda s: s["technique"].update(name=" "), "technique: name must be non-empty text"),
    (lambda s: s["timeline"].update(attack_at_s=500), "learn_s <= attack_at_s"),
    (lambda s: s["timeline"].update(total_s="40m"), "timeline.total_s must be a number"),
    (lambda s: s.update(name="fc_sweep"), "does not match the file name"),
    (lambda s: s["expected"].update(rules="policy.new_talker"), "expected.rules must be a list"),
])
def test_bad_specs_are_refused_naming_the_key(tmp_path, edit, message):
    spec = yaml.safe_load((library.SPEC_DIR / "unit_id_sweep.yaml").read_text())
    edit(spec)
    (tmp_path / "unit_id_sweep.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        load_specs(tmp_path)
    assert "unit_id_sweep.yaml" in str(info.value)


def test_spec_for_an_unknown_scenario_and_missing_folder_are_refused(tmp_path):
    spec = yaml.safe_load((library.SPEC_DIR / "normal.yaml").read_text())
    spec["name"] = "nope"
    (tmp_path / "nope.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match="no scenario 'nope' in the generator"):
        load_specs(tmp_path)
    with pytest.raises(SpecError, match="not a directory"):
        load_specs(tmp_path / "missing")
    (tmp_path / "nope.yaml").write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_specs(tmp_path)


def test_specs_are_package_data():
    assert library.SPEC_DIR == Path(library.__file__).parent / "specs"
    cfg = (Path(__file__).resolve().parents[3] / "setup.cfg").read_text()
    assert re.search(r"\[options\.package_data\]\s*\n\s*otsentry\.synth\s*=\s*specs/\*\.yaml", cfg)


def test_timeline_overrides_keep_the_attack_inside_the_capture():
    specs = load_specs()
    assert timeline_of(specs["fc_sweep"]) == (600.0, 900.0, 2400.0)
    assert timeline_of(specs["fc_sweep"], 300, None, 1000) == (300.0, 600.0, 1000.0)  # 5 minutes after learning
    assert timeline_of(specs["fc_sweep"], 300, None, 600) == (300.0, 570.0, 600.0)  # moved earlier to fit
    assert timeline_of(specs["covert_channel"], 300, None, 1000) == (300.0, 395.0, 1000.0)  # moved earlier to fit
    assert timeline_of(specs["normal"], 300, None, 600) == (300.0, None, 600.0)
    with pytest.raises(ValueError, match="no attack"):
        timeline_of(specs["normal"], attack_at_s=400)
    with pytest.raises(ValueError, match="past total_s"):
        generate("covert_channel", Path("/nonexistent-not-written"), 1, learn_s=300, total_s=600)



# Cheap scenarios that exercise the newer rules (values replayed/frozen, no response, a write just outside the
# learned range): each is cut to the attack plus a minute, after the spec's full 10 minutes of learning.
FIRING = ["fc_sweep", "setpoint_change", "replay_old_responses", "spoofed_freeze", "diag_restart", "covert_channel",
          "repeat_campaign", *(name for name, spec in load_specs().items() if spec["plant"] == "port")]


@pytest.mark.parametrize("name", FIRING)
def test_expected_rules_fire_on_the_scenario(tmp_path, name):
    """What `replay show` promises a student (``expected.rules``) is what `replay run` raises; no policy rule fires
    that the spec does not list (anomaly ensembles may add windows)."""
    from otsentry.pipeline import run

    spec = load_specs()[name]
    learn_s = spec["timeline"]["learn_s"]
    attack_at_s = learn_s + 30.0
    pcap, _, _, _ = generate(name, tmp_path, learn_s=learn_s, attack_at_s=attack_at_s,
                             total_s=attack_at_s + scenario_spec(name).duration_s + 60.0)
    fired = {a.rule_id for a in run([pcap], learn_for_s=learn_s).alerts}
    expected = set(spec["expected"]["rules"])
    assert expected <= fired, f"{name}: expected {sorted(expected - fired)} did not fire"
    assert {r for r in fired if r not in ANOMALY_RULES} <= expected, f"{name}: {sorted(fired - expected)} not listed"

# -- generation and its cache ---------------------------------------------------------------------------------------

def test_generate_writes_the_files_and_reuses_them(tmp_path, monkeypatch):
    calls = []
    real = library.generate_scenario

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(library, "generate_scenario", counting)
    short = dict(learn_s=LEARN_S, attack_at_s=ATTACK_AT_S, total_s=300.0)
    pcap, labels, intervals, truth = generate("unit_id_sweep", tmp_path, 3, **short)
    assert pcap.name == "unit_id_sweep-seed3-120-150-300.pcap" and len(calls) == 1
    assert labels.read_text().count("\n") == truth.packets + 1
    assert intervals.read_text().startswith("start;end\n") and len(intervals.read_text().splitlines()) == 2
    stamp = pcap.stat().st_mtime_ns
    again = generate("unit_id_sweep", tmp_path, 3, **short)
    assert len(calls) == 1 and again[:3] == (pcap, labels, intervals) and pcap.stat().st_mtime_ns == stamp
    assert again[3].to_dict(with_frames=True) == truth.to_dict(with_frames=True)
    assert again[3].counts == truth.counts and again[3].attack_intervals_ns == truth.attack_intervals_ns
    generate("unit_id_sweep", tmp_path, 4, **short)  # another seed: another file
    assert len(calls) == 2 and (tmp_path / "unit_id_sweep-seed4-120-150-300.pcap").is_file()
    monkeypatch.setattr(library, "generator_hash", lambda: "changed")  # the simulator's code changed
    generate("unit_id_sweep", tmp_path, 3, **short)
    assert len(calls) == 3 and sha256(pcap) == sha256(tmp_path / "unit_id_sweep-seed3-120-150-300.pcap")
    pcap.write_bytes(pcap.read_bytes()[:-10])  # a damaged capture is not reused
    generate("unit_id_sweep", tmp_path, 3, **short)
    assert len(calls) == 4


def test_generate_uses_the_specs_timeline_and_seed(tmp_path):
    started = time.perf_counter()
    pcap, _, _, truth = generate("unit_id_sweep", tmp_path)
    elapsed = time.perf_counter() - started
    assert pcap.name == "unit_id_sweep-seed7.pcap" and truth.seed == 7
    assert truth.learn_end_ns - truth.start_ns == 600 * 10**9
    start, end = truth.attack_intervals[0]
    assert 900 <= start - truth.start_ns / 1e9 < 902 and end - start < 45
    assert truth.counts.duration_s == pytest.approx(2400, abs=5)
    assert elapsed < 15, elapsed
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        generate("nope", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", NEW)
def test_forty_minutes_of_each_new_scenario_generate_in_seconds(tmp_path, name):
    started = time.perf_counter()
    truth = generate_scenario(tmp_path / "x.pcap", name, 1)
    elapsed = time.perf_counter() - started
    assert truth.counts.duration_s == pytest.approx(2400, abs=5) and elapsed < 10, elapsed


# -- determinism, and the normal traffic around the attack ----------------------------------------------------------

@pytest.mark.parametrize("name", NEW)
def test_same_seed_same_bytes_and_labels(tmp_path, name):
    args = dict(learn_s=60.0, attack_at_s=70.0, total_s=70.0 + scenario_spec(name).duration_s + 5)
    a, b, c = (generate_scenario(tmp_path / f"{i}.pcap", name, seed, **args) for i, seed in enumerate((3, 3, 4)))
    assert sha256(tmp_path / "0.pcap") == sha256(tmp_path / "1.pcap") != sha256(tmp_path / "2.pcap")
    assert a.to_dict(with_frames=True) == b.to_dict(with_frames=True) != c.to_dict(with_frames=True)


@pytest.mark.parametrize("name", NEW)
def test_learning_part_is_byte_identical_to_normal(caps, name):
    cap, normal = caps[name], normal_for(caps, name)
    assert cap.truth.learn_end_ns // 1000 <= cap.attack_start_us
    before = [r for r in cap.frames if r[0] < cap.attack_start_us]
    assert before == [r for r in normal.frames if r[0] < cap.attack_start_us]
    assert before[-1][0] > cap.truth.learn_end_ns // 1000  # the whole learning part, and more


@pytest.mark.parametrize("name", ADDITIVE)
def test_additive_attacks_only_add_frames(caps, name):
    cap = caps[name]
    rest = [r for number, r in enumerate(cap.frames, 1) if number not in cap.labelled]
    assert rest == normal_for(caps, name).frames


@pytest.mark.parametrize("name", MITM)
def test_man_in_the_middle_changes_only_the_labelled_response_bytes(caps, name):
    cap, normal = caps[name], normal_for(caps, name)
    assert len(cap.frames) == len(normal.frames)
    changed = set()
    for number, ((ts, frame), (nts, nframe)) in enumerate(zip(cap.frames, normal.frames), 1):
        assert ts == nts and len(frame) == len(nframe)
        if frame != nframe:
            changed.add(number)
            assert frame[:34] == nframe[:34]  # same Ethernet and IP headers: same hosts, same IP ID
    assert changed and changed <= cap.labelled
    # A forged answer can equal the real one (coils and setpoints rarely change), never for the measurements.
    measurements = [e for e in cap.forged() if e.function_code in (3, 4) and e.start_address == 0]
    real = {e.response_frame: e.values for e in normal.events}
    assert measurements and all(e.values != real[e.response_frame] for e in measurements)


# -- labels: what each attack is, seen through the decoder --------------------------------------------------------

def test_labels_are_inside_the_attack_interval_and_after_learning(caps):
    for name in NEW:
        cap = caps[name]
        truth = cap.truth
        assert len(truth.attack_intervals_ns) == 1 and truth.technique_id == scenario_spec(name).technique_id
        start_us, end_us = (ns // 1000 for ns in truth.attack_intervals_ns[0])
        stamps = [cap.frames[n - 1][0] for n in truth.attack_frames]
        assert min(stamps) == start_us and 0 <= end_us - max(stamps) <= 1, name  # the end is rounded up
        assert start_us >= truth.learn_end_ns // 1000 and end_us - start_us <= scenario_spec(name).duration_s * 1e6


def test_unit_id_sweep_labels_and_gateway_answers(caps):
    cap = caps["unit_id_sweep"]
    truth = cap.truth
    assert cap.labelled == {n for n, (_, f) in enumerate(cap.frames, 1) if truth.attacker_ip in ips(f)}
    sweep = [e for e in cap.events if e.client_ip == truth.attacker_ip]
    assert [e.unit_id for e in sweep] == list(range(248))
    assert {e.server_ip for e in sweep} == {truth.target_ip} and truth.target_unit is None
    units = {e.unit_id for e in cap.events if e.client_ip == HMI and e.server_ip == truth.target_ip}
    assert units == {1, 2, 3}  # the gateway's devices, as the HMI polls them
    for e in sweep:
        assert e.function_code == mb.READ_HOLDING_REGISTERS and all(cap.truth.label(f) for f in frames_of(e))
        if e.unit_id == 0:
            assert e.response_frame is None  # broadcast: no answer
        elif e.unit_id in units:
            assert e.exception_code is None and len(e.values) == 1
        elif e.unit_id in GATEWAY_SERIAL_UNITS:
            assert e.exception_code == mb.GATEWAY_TARGET_FAILED and e.latency_s >= 0.25
        else:
            assert e.exception_code == mb.GATEWAY_PATH_UNAVAILABLE
    assert truth.attacker_ip not in {ip for _, f in cap.frames[:1000] for ip in ips(f)}


def test_address_sweep_labels_one_new_connection_of_the_historian(caps):
    cap = caps["address_sweep"]
    truth = cap.truth
    assert truth.attacker_ip == HISTORIAN
    conns = {(frozenset(ips(cap.frames[n - 1][1])), tuple(sorted(tcp_ports(cap.frames[n - 1][1]))))
             for n in cap.labelled}
    assert len(conns) == 1  # one TCP connection
    (hosts, ports), = conns
    assert set(hosts) == {HISTORIAN, truth.target_ip} and 502 in ports
    same = {n for n, (_, f) in enumerate(cap.frames, 1)
            if set(ips(f)) == set(hosts) and tcp_ports(f) and tuple(sorted(tcp_ports(f))) == ports}
    assert same == cap.labelled  # handshake to teardown; the historian's polling connection is not labelled
    sweep = [e for e in cap.events if e.client_ip == HISTORIAN and e.client_port in ports]
    assert [e.start_address for e in sweep] == list(range(0, 65536, 125))
    for e in sweep:
        assert e.function_code == mb.READ_HOLDING_REGISTERS and e.response_frame, e
        inside = e.start_address + e.quantity <= HOLDING_REGISTERS
        assert e.exception_code == (None if inside else mb.ILLEGAL_DATA_ADDRESS), e
    learned = [e for e in cap.events if e.client_ip == HISTORIAN and e.ts < truth.learn_end_ts]
    assert learned and max((e.start_address or 0) + (e.quantity or 0) for e in learned) <= 125


def _read_key(e: ModbusEvent) -> tuple:
    return e.unit_id, e.function_code, e.start_address, e.quantity


def _mitm_reads(cap: Capture, start: float, end: float) -> list[ModbusEvent]:
    """The HMI's reads of the target answered without exception, requested in [start, end)."""
    return [e for e in cap.events if e.client_ip == HMI and e.server_ip == cap.truth.target_ip
            and e.function_code in (1, 2, 3, 4) and start <= e.ts < end and e.response_frame
            and e.exception_code is None]


def test_replay_answers_with_the_recorded_old_sequence(caps):
    cap, normal = caps["replay_old_responses"], normal_for(caps, "replay_old_responses")
    truth = cap.truth
    assert truth.attacker_ip is None  # the man in the middle answers in the PLC's name
    forged = cap.forged()
    assert forged and {(e.client_ip, e.server_ip) for e in forged} == {(HMI, truth.target_ip)}
    assert not any(e.request_frame in cap.labelled for e in cap.events)  # the HMI's requests are genuine
    for n in cap.labelled:  # responses only (with a split response's first part, or a retransmission)
        assert ips(cap.frames[n - 1][1]) == (truth.target_ip, HMI)
    at = ATTACK_AT_S + truth.start_ns / 1e9
    assert forged == _mitm_reads(cap, at, at + REPLAY_S)  # every read in the minute, nothing else
    record_to = truth.learn_end_ts - (REPLAY_RECORD_BEFORE_S - REPLAY_S)
    recorded: dict[tuple, list[tuple[int, ...]]] = {}
    for e in _mitm_reads(cap, record_to - REPLAY_S, record_to):
        recorded.setdefault(_read_key(e), []).append(e.values)
    played: dict[tuple, int] = {}
    by_frame = {e.response_frame: e for e in normal.events}
    stale = 0
    for e in forged:  # each request gets the next recorded answer to the same request, in order
        i = played.get(_read_key(e), 0)
        played[_read_key(e)] = i + 1
        old = recorded[_read_key(e)]
        assert e.values == old[i % len(old)], e
        real = by_frame[e.response_frame]  # what the PLC really answered (the normal capture, same frame)
        assert real.transaction_id == e.transaction_id and real.request_frame == e.request_frame
        stale += e.values != real.values
        if e.function_code == mb.READ_HOLDING_REGISTERS and e.start_address == 0:
            runtime, real_runtime = (v[5] << 16 | v[6] for v in (e.values, real.values))
            assert real_runtime - runtime >= 60  # the runtime counter jumps back by at least a minute
    assert stale > 0.8 * len(forged)


def test_freeze_answers_with_the_last_real_values(caps):
    cap, normal = caps["spoofed_freeze"], normal_for(caps, "spoofed_freeze")
    truth = cap.truth
    at = ATTACK_AT_S + truth.start_ns / 1e9
    forged = cap.forged()
    assert forged == _mitm_reads(cap, at, at + 120.0)
    assert {e.client_ip for e in forged} == {HMI} and not any(e.request_frame in cap.labelled for e in cap.events)
    last = {}
    for e in _mitm_reads(cap, 0, at):
        last[_read_key(e)] = e.values
    by_frame = {e.response_frame: e for e in normal.events}
    moving = set()
    for e in forged:
        assert e.values == last[_read_key(e)], e  # frozen: the same values every poll
        moving.add((_read_key(e), by_frame[e.response_frame].values))
    # Meanwhile the real process changes: the holding block really took many values, which the historian saw.
    level = {values for key, values in moving if key[1:] == (mb.READ_HOLDING_REGISTERS, 0, 10)}
    assert len(level) > 50
    historian = [e.values[0] for e in cap.events if e.client_ip == HISTORIAN and e.server_ip == truth.target_ip
                 and e.function_code == mb.READ_HOLDING_REGISTERS and at <= e.ts < at + 120 and e.values]
    assert len(set(historian)) >= 10
    assert 120 - 2 <= truth.attack_intervals[0][1] - truth.attack_intervals[0][0] <= 120


def test_diag_restart_labels_the_commands_and_the_unanswered_polls(caps):
    cap = caps["diag_restart"]
    truth = cap.truth
    plc = truth.target_ip
    assert truth.attacker_ip == ENG
    eng = [e for e in cap.events if e.client_ip == ENG]
    assert [(e.function_code, e.sub_function, e.response_frame is not None) for e in eng] == [
        (8, 1, True), (8, 4, False), (8, 1, False)]  # restart (echoed), listen-only and restart (no answer)
    assert not [e for e in cap.events if e.client_ip == ENG and e.ts < truth.learn_end_ts]  # never spoke Modbus
    port = eng[0].client_port
    eng_frames = {n for n, (_, f) in enumerate(cap.frames, 1)
                  if set(ips(f)) == {ENG, plc} and tcp_ports(f) and port in tcp_ports(f)}
    silent_from, silent_to = eng[1].ts, eng[2].ts + 1.5
    polls = [e for e in cap.events if e.client_ip in (HMI, HISTORIAN) and e.server_ip == plc]
    unanswered = [e for e in polls if e.response_frame is None and silent_from <= e.ts <= silent_to]
    assert {e.client_ip for e in unanswered} == {HMI, HISTORIAN} and len(unanswered) >= 50
    assert cap.labelled == eng_frames | {e.request_frame for e in unanswered}
    for e in polls:  # outside the outage every poll is answered
        if not silent_from - 0.05 <= e.ts <= silent_to:
            assert e.response_frame is not None, e
    assert truth.attack_intervals[0][1] >= eng[2].ts


def test_exception_storm_labels_the_exception_responses(caps):
    cap = caps["exception_storm"]
    truth = cap.truth
    forged = cap.forged()
    assert {e.client_ip for e in forged} == {HMI, HISTORIAN} and {e.server_ip for e in forged} == {truth.target_ip}
    assert {e.exception_code for e in forged} == {mb.SERVER_DEVICE_FAILURE, mb.SERVER_DEVICE_BUSY}
    assert all(e.function_code in (1, 2, 3, 4) for e in forged)
    for n in cap.labelled:
        assert ips(cap.frames[n - 1][1])[0] == truth.target_ip  # the PLC's answers only
    start, end = truth.attack_intervals[0]
    hmi_reads = [e for e in cap.events if e.client_ip == HMI and e.server_ip == truth.target_ip
                 and e.function_code in (1, 2, 3, 4) and start + 5 <= e.ts <= end]
    assert sum(e.exception_code is not None for e in hmi_reads) > 0.6 * len(hmi_reads)
    assert 55 <= end - start <= 61


@pytest.mark.parametrize("name, port, client, connections", [
    ("new_service_smb", 445, ENG, 2), ("new_service_rdp", 3389, None, 1)])
def test_new_service_labels_every_frame_of_its_connections(caps, name, port, client, connections):
    cap = caps[name]
    truth = cap.truth
    assert truth.target_ip == HMI and (client is None or truth.attacker_ip == client)
    on_port = {n for n, (_, f) in enumerate(cap.frames, 1) if tcp_ports(f) and port in tcp_ports(f)}
    assert on_port == cap.labelled
    syns = [f for n, (_, f) in enumerate(cap.frames, 1) if n in on_port and f[47] == 0x02]
    assert len(syns) == connections and all(ips(f) == (truth.attacker_ip, HMI) for f in syns)
    assert not any(tcp_ports(f) and port in tcp_ports(f) for _, f in normal_for(caps, name).frames)
    first = next(tcp_payload(f) for n, (_, f) in enumerate(cap.frames, 1) if n in on_port and tcp_payload(f))
    if port == 445:
        assert first[4:8] == b"\xfeSMB"  # NetBIOS session message, SMB2 negotiate
    else:
        assert first[:2] == b"\x03\x00" and b"Cookie: mstshash=" in first  # TPKT, X.224 connection request
    if client is None:
        assert truth.attacker_ip not in {ip for ts, f in cap.frames if ts < cap.attack_start_us for ip in ips(f)}


def test_covert_channel_writes_the_secret_slowly_on_the_hmis_connection(caps):
    cap = caps["covert_channel"]
    truth = cap.truth
    assert truth.attacker_ip == HMI
    labelled = [e for e in cap.events if any(truth.label(f) for f in frames_of(e))]
    assert len(cap.labelled) == 2 * len(labelled)
    for e in labelled:
        assert (e.client_ip, e.server_ip, e.unit_id, e.function_code) == (HMI, truth.target_ip, truth.target_unit, 6)
        assert e.start_address == COVERT_REGISTER and 100 <= e.values[0] <= 900  # an ordinary setpoint value
        assert set(frames_of(e)) <= cap.labelled
    secret = bytes(e.values[0] - 256 for e in labelled)
    assert len(labelled) >= 20 and secret == (COVERT_MESSAGE * 2)[:len(secret)]
    gaps = [b.ts - a.ts for a, b in zip(labelled, labelled[1:])]
    assert all(20 <= g <= 31.5 for g in gaps), gaps
    polls = [e for e in cap.events if e.client_ip == HMI and e.server_ip == truth.target_ip and e.ts < labelled[0].ts]
    assert polls[-1].client_port == labelled[0].client_port  # the HMI's usual connection
    writes = [e for e in cap.events if e.client_ip == HMI and e.function_code in (6, 16) and e.ts < truth.learn_end_ts]
    assert writes and not any(e.start_address <= COVERT_REGISTER < e.start_address + len(e.values) for e in writes)
    reads = [e for e in cap.events if e.client_ip == HISTORIAN and e.server_ip == truth.target_ip
             and e.function_code == 3 and e.ts > labelled[3].ts and e.values]
    assert reads and reads[0].values[COVERT_REGISTER] - 256 in COVERT_MESSAGE  # what the historian stores


# -- tshark -------------------------------------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize("name", NEW)
def test_tshark_decodes_new_scenarios_cleanly(caps, name):
    cap = caps[name]
    tshark = require_tool("tshark")

    def run(*args: str) -> str:
        result = subprocess.run([tshark, "-r", str(cap.path), "-n", *args], capture_output=True, text=True,
                                check=False)
        errors = [line for line in result.stderr.splitlines() if line and "Running as user" not in line]
        assert result.returncode == 0 and not errors, result.stderr
        return result.stdout

    assert run("-Y", "_ws.malformed || _ws.expert.severity == error "
                     "|| (tcp.analysis.flags && !tcp.analysis.retransmission)") == ""
    ids = run("-T", "fields", "-e", "mbtcp.trans_id").split()
    assert len(",".join(ids).split(",")) == cap.truth.counts.modbus_adus
    if name == "new_service_smb":  # the clear-text part of the session: NTLM login, user and domain visible
        users = run("-Y", "ntlmssp.messagetype == 3", "-T", "fields", "-e", "ntlmssp.auth.username",
                    "-e", "ntlmssp.auth.domain").split()
        assert users == ["eng", "PLANT"] * 2
    if name == "new_service_rdp":  # Wireshark 4.0 does not follow RDP into TLS by itself; decoded as TLS it is
        hello = run("-d", "tcp.port==3389,tls", "-Y", "tls.handshake.type == 2", "-T", "fields",
                    "-e", "tls.handshake.extensions.supported_version")
        assert hello.split() == ["0x0304"]
        assert run("-d", "tcp.port==3389,tls", "-Y", "_ws.malformed || _ws.expert.severity >= warning") == ""
    if name == "diag_restart":
        subs = run("-Y", "modbus.func_code == 8", "-T", "fields", "-e", "modbus.diagnostic_code").split()
        assert subs == ["1", "1", "4", "1"]  # restart request + echo, listen-only, restart
