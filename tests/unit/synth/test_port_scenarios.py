"""The port's OT systems in the simulator (substation, crane, yard) and the scenarios that attack them.

Checked against independent views: tshark's message counts on the generated capture, the Modbus plant's frames
of the ``normal`` scenario (unchanged by the OT systems beside them), the labelled frames' addresses, and what
the pipeline raises (every expected rule, in the attack's windows only).
"""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import pytest

from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.source import decode_capture
from otsentry.pipeline import run
from otsentry.synth.library import generate, load_specs
from otsentry.synth.specs import SpecError, read_specs
from tests.helpers import require_tool

PORT_SCENARIOS = [name for name, spec in load_specs().items() if spec["plant"] == "port"]
OT_PORTS = {20000, 2404, 102, 44818}
SHORT = dict(learn_s=60.0, attack_at_s=90.0, total_s=180.0)


def _frames(path: Path) -> list[tuple[int, bytes]]:
    """(timestamp in us, frame bytes) of a little-endian microsecond pcap."""
    raw = path.read_bytes()
    out, pos = [], 24
    while pos + 16 <= len(raw):
        sec, usec, incl, _ = struct.unpack_from("<IIII", raw, pos)
        out.append((sec * 10**6 + usec, raw[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    return out


def _ports(frame: bytes) -> tuple[int, int] | None:
    """TCP/UDP ports of an untagged Ethernet IPv4 frame."""
    if frame[12:14] != b"\x08\x00" or frame[23] not in (6, 17):
        return None
    ihl = (frame[14] & 0x0F) * 4
    return struct.unpack_from(">HH", frame, 14 + ihl)


def test_every_ot_protocol_of_the_port_plant_agrees_with_tshark(tmp_path):
    from tests.unit.collectors.ics.test_shared_captures import TSHARK_FIELDS, tshark_counts

    require_tool("tshark")
    pcap, _, _, _ = generate("s7_block_download", tmp_path, **SHORT)
    run_ = decode_capture(pcap, CollectorConfig())
    for _ in run_:
        pass
    stats = run_.stats
    theirs = tshark_counts(pcap)
    for protocol in TSHARK_FIELDS:
        assert stats.protocols[protocol].messages == theirs[protocol] > 50, protocol
        assert stats.protocols[protocol].malformed == 0 and stats.protocols[protocol].unanswered == 0, protocol
    expert = subprocess.run([require_tool("tshark"), "-r", str(pcap), "-q", "-z", "expert,warn"],
                            capture_output=True, text=True, timeout=120, check=True).stdout
    assert "Malformed" not in expert and "Duplicate ACK" not in expert, expert


def test_the_modbus_plant_is_unchanged_by_the_ot_systems(tmp_path):
    """Until the attack, a port scenario is the ``normal`` scenario of its seed plus the OT sessions' frames."""
    port, _, _, truth = generate("dnp3_cold_restart", tmp_path, **SHORT)
    normal, _, _, _ = generate("normal", tmp_path, learn_s=60.0, total_s=180.0)
    before = truth.attack_intervals[0][0] * 10**6
    ours = [f for f in _frames(port) if f[0] < before and not (OT_PORTS & set(_ports(f[1]) or ()))]
    theirs = [f for f in _frames(normal) if f[0] < before]
    assert len(ours) > 1000 and ours == theirs
    ot = [f for f in _frames(port) if OT_PORTS & set(_ports(f[1]) or ())]
    assert len(ot) > 500  # the substation, crane and yard talk all along


@pytest.mark.parametrize("name", PORT_SCENARIOS)
def test_port_scenario_labels_are_the_attack_and_its_effect(tmp_path, name):
    pcap, _, _, truth = generate(name, tmp_path, **SHORT)
    frames = _frames(pcap)
    marked = [frames[n - 1][1] for n in truth.attack_frames]
    assert marked and truth.target_ip and truth.attacker_ip
    for frame in marked:  # every labelled frame is between the attacker and the target, or the target's answer
        src, dst = frame[26:30], frame[30:34]
        ips = {".".join(map(str, src)), ".".join(map(str, dst))}
        assert truth.target_ip in ips, (name, ips)
    start, end = truth.attack_intervals[0]
    assert 90.0 <= start - truth.start_ns / 1e9 < 95.0 and end - start <= load_specs()[name]["timeline"]["duration_s"]


def test_thirty_minutes_of_the_port_plant_raise_nothing_but_the_attack(tmp_path):
    """The spec's full timeline: 10 minutes of learning, 25 minutes after it of which 15 seconds are an attack."""
    pcap, _, _, truth = generate("dnp3_direct_operate", tmp_path)
    start, end = truth.attack_intervals[0]
    alerts = run([pcap], learn_for_s=600.0).alerts
    assert alerts and all(start - 10 <= a.window_start <= end + 10 for a in alerts), [
        (a.rule_id, a.window_start - start, a.explanation) for a in alerts if not start - 10 <= a.window_start <= end]
    assert truth.counts.duration_s == pytest.approx(2400, abs=5)


def test_a_spec_names_a_known_plant(tmp_path):
    spec = (Path(__file__).resolve().parents[3] / "otsentry/synth/specs/cip_reset.yaml").read_text()
    (tmp_path / "cip_reset.yaml").write_text(spec.replace("plant: port", "plant: harbour"))
    with pytest.raises(SpecError, match="plant must be one of modbus, port, got 'harbour'"):
        read_specs(tmp_path)


def test_the_s7_identity_reaches_the_asset_inventory(tmp_path):
    from otsentry.assets.inventory import Inventory

    pcap, _, _, _ = generate("s7_plc_stop", tmp_path, **SHORT)
    inventory = Inventory()
    for batch in decode_capture(pcap, CollectorConfig()):
        inventory.add_operations(batch.operations)
    assets = {a.ip: a for a in inventory.assets()}
    assert dict(assets["10.10.4.11"].identity)["order_number"] == "6ES7 315-2EH14-0AB0"
    assert dict(assets["10.10.4.21"].identity)["product_name"] == "1756-L71/B LOGIX5571"
    assert any("S7" in r or "s7" in r for r in map(str, assets["10.10.4.11"].roles)), assets["10.10.4.11"].roles
