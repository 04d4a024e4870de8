"""Discovery chatter (IGMP, MLD, mDNS, SSDP, WS-Discovery, NetBIOS, DHCP) is not an intruder; a new unicast host is."""

from __future__ import annotations

from pathlib import Path

import pytest

from otsentry.detectors.discovery import is_discovery, is_group, is_provisional
from otsentry.pipeline import run
from tests.unit.capture_builders import ether, ipv4, ipv6, pcap_file, udp
from tests.unit.detectors.test_policy import flow_window

T0 = 1_700_000_000
HOST, PEER, STRANGER = "10.0.0.5", "10.0.0.6", "10.0.0.99"
HOST6 = "fe80::5"


def _frames() -> list[tuple[int, bytes]]:
    frames = []
    # learning: 10 minutes of one ordinary UDP conversation between two known hosts
    for i in range(120):
        frames.append(((T0 + 5 * i) * 10**9, ether(ipv4(HOST, PEER, 17, udp(40000, 9000, b"x" * 20)))))
    t = T0 + 700
    chatter = [
        ipv4(HOST, "224.0.0.22", 2, bytes(16)),  # IGMPv3 membership report
        ipv4(HOST, "224.0.0.251", 17, udp(5353, 5353, bytes(30))),  # mDNS
        ipv4(HOST, "239.255.255.250", 17, udp(50000, 1900, b"M-SEARCH * HTTP/1.1\r\n")),  # SSDP
        ipv4(HOST, "239.255.255.250", 17, udp(50001, 3702, bytes(40))),  # WS-Discovery
        ipv4(HOST, "10.0.0.255", 17, udp(137, 137, bytes(50))),  # NetBIOS name service, subnet broadcast
        ipv4(HOST, "224.0.0.252", 17, udp(50002, 5355, bytes(30))),  # LLMNR
        ipv4("0.0.0.0", "255.255.255.255", 17, udp(68, 67, bytes(240))),  # DHCP discover
    ]
    chatter6 = [
        ipv6(HOST6, "ff02::16", 58, bytes([143, 0]) + bytes(26)),  # MLDv2 report
        ipv6(HOST6, "ff02::fb", 17, udp(5353, 5353, bytes(30))),  # mDNS over IPv6
        ipv6("::", "ff02::1:ff00:5", 58, bytes([135, 0]) + bytes(22)),  # ND neighbour solicitation (DAD)
    ]
    for j, pkt in enumerate(chatter):
        frames.append(((t + j) * 10**9, ether(pkt)))
    for j, pkt in enumerate(chatter6):
        frames.append(((t + 20 + j) * 10**9, ether(pkt, 0x86DD)))
    frames.append(((t + 40) * 10**9, ether(ipv4(HOST, PEER, 17, udp(40000, 9000, b"x" * 20)))))
    return frames


@pytest.fixture
def chatter_capture(tmp_path: Path) -> Path:
    path = tmp_path / "chatter.pcap"
    path.write_bytes(pcap_file(_frames()))
    return path


def _policy(alerts):
    """Policy alerts only: the flow anomaly model still judges discovery windows (a multicast flood must show), and
    ten minutes of one conversation teach it nothing about chatter."""
    return [a for a in alerts if a.category == "policy"]


def test_discovery_chatter_of_an_ordinary_host_raises_no_policy_alert(chatter_capture: Path) -> None:
    result = run([chatter_capture], learn_for_s=600.0)
    assert result.windows > 0
    assert len([a for a in result.alerts if a.category == "anomaly"]) > 0  # the chatter was scored, not dropped
    assert [(a.rule_id, a.client_ip, a.server_ip) for a in _policy(result.alerts)] == []


def test_a_new_unicast_host_still_alerts_even_when_it_only_sends_discovery(tmp_path: Path) -> None:
    frames = _frames()
    frames.append(((T0 + 760) * 10**9, ether(ipv4(STRANGER, "224.0.0.251", 17, udp(5353, 5353, bytes(30))))))
    path = tmp_path / "stranger.pcap"
    path.write_bytes(pcap_file(frames))
    alerts = _policy(run([path], learn_for_s=600.0).alerts)
    assert [(a.rule_id, a.client_ip, a.server_ip, a.technique_id) for a in alerts] == [
        ("policy.new_talker", STRANGER, "224.0.0.251", "T0846")]
    assert STRANGER in alerts[0].explanation and "224.0.0.251 was never seen" not in alerts[0].explanation


def test_address_classes() -> None:
    assert is_group("224.0.0.251") and is_group("ff02::16") and is_group("255.255.255.255")
    assert not is_group("10.0.0.255") and not is_group("10.0.0.5") and not is_group("not an ip")
    assert is_provisional("0.0.0.0") and is_provisional("fe80::1") and is_provisional("169.254.3.4")
    assert not is_provisional("10.0.0.5")
    assert is_discovery(flow_window(0, HOST, "10.0.0.255", 137, "udp"))
    assert not is_discovery(flow_window(0, HOST, "10.0.0.255", 502, "tcp"))
    assert not is_discovery(flow_window(0, HOST, PEER, 5353, "udp"))  # unicast mDNS to a host: a conversation
