"""What the policy rules share: the ``Finding`` a rule returns, the baseline view it reads (``PolicyView``),
the wording of explanations, and the write history a write is judged against (see ``policy_rules``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping, Protocol

from otsentry.collectors.ics.ports import PROTOCOL_LABELS, service_name as ot_service_name
from otsentry.collectors.modbus_names import ZEEK_FUNCTION_CODES
from otsentry.detectors.policy_profiles import OTHER_FUNCTION_CODE, PairProfile, Range, measured_range, write_codes
from otsentry.records import FeatureEvidence, FeatureWindow

__all__ = ["Finding", "IDENTIFICATION_CODES", "PolicyView", "REMOTE_ACCESS_PORTS", "SERVICE_NAMES", "WRITE_FAMILIES",
    "compute_write_history", "evidence", "fc_label", "fc_list", "known_writer", "names", "num", "rng",
    "service_label", "span", "write_detail", "write_history", "write_margin", "writes_to"]


class PolicyView(Protocol):
    """The fitted ``PolicyBaseline`` as rules read it: its parameters and learned allow-lists (``_`` attributes)."""

    address_margin: int
    always_alert_restart: bool
    exception_burst_factor: float
    exception_burst_min: float
    exception_rate_floor: float
    exception_tail: float
    frozen_min_windows: int
    frozen_rate_factor: float
    pool_writes_per_client: bool
    replay_burst_min: float
    unanswered_burst_min: float
    unanswered_ratio: float
    value_margin: float
    value_margin_min: float
    write_margin_gaps: float
    talkers_: frozenset[str]
    pairs_: Mapping[tuple[str, str, int], PairProfile]
    assets_: Mapping[tuple[str, int], PairProfile]
    clients_: Mapping[tuple[str, int], frozenset[str]]
    writers_: Mapping[tuple[str, int], frozenset[str]]
    server_writers_: Mapping[str, frozenset[str]]
    writer_profiles_: Mapping[str, PairProfile]
    write_histories_: dict[tuple[str, str, int], PairProfile | None]
    services_: frozenset[tuple[str, int, str]]
    service_names_: Mapping[tuple[str, int, str], frozenset[str]]
    client_services_: Mapping[str, frozenset[tuple[int, str]]]

SERVICE_NAMES = {
    21: "FTP", 22: "SSH", 23: "Telnet", 53: "DNS", 69: "TFTP", 80: "HTTP", 102: "S7comm", 123: "NTP", 135: "MS RPC",
    137: "NetBIOS", 139: "NetBIOS", 161: "SNMP", 443: "HTTPS", 445: "SMB", 502: "Modbus", 2404: "IEC 104",
    3389: "RDP", 4840: "OPC UA", 5900: "VNC", 5985: "WinRM", 5986: "WinRM", 20000: "DNP3", 44818: "EtherNet/IP",
    47808: "BACnet",
}
# Write codes that do the same thing one item or several at a time: a client that wrote with one of them is not
# reported for using the other (an HMI writing one coil with FC 5 and eight with FC 15 is one habit).
WRITE_FAMILIES = (frozenset({5, 15}), frozenset({6, 16}))
# Function codes that ask a device who it is (FC 43/14 read device identification, FC 17 report server id).
IDENTIFICATION_CODES = frozenset({17, 43})
# Remote access, file sharing and lateral-movement services: high severity when they appear.
REMOTE_ACCESS_PORTS = frozenset({21, 22, 23, 69, 135, 139, 445, 3389, 5900, 5985, 5986})
# What a payload names as remote access (collectors.ics.signatures), whatever the port.
REMOTE_ACCESS_SERVICES = frozenset({"rdp", "ssh"})


@dataclass(frozen=True)
class Finding:
    """One rule's verdict on one window, before it becomes an Alert."""

    rule_id: str
    severity: str
    explanation: str
    facts: tuple[Hashable, ...]  # what is reported, for rate limiting
    evidence: tuple[FeatureEvidence, ...] = ()
    function_codes: tuple[int, ...] = ()
    score: float = 1.0
    threshold: float = 0.5
    variant: str = ""  # refines the rule's ATT&CK technique (see otsentry.detectors.rules)


# -- wording ------------------------------------------------------------------------------------------------------

def num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def span(r: Range) -> str:
    """'address 105' or 'addresses 100-110'."""
    return f"address {num(r[0])}" if r[0] == r[1] else f"addresses {num(r[0])}-{num(r[1])}"


def rng(r: Range) -> str:
    return num(r[0]) if r[0] == r[1] else f"{num(r[0])}-{num(r[1])}"


def fc_label(code: int) -> str:
    if code == OTHER_FUNCTION_CODE:
        return "an unlisted function code (fc_other)"
    name = ZEEK_FUNCTION_CODES.get(code)
    return f"FC {code} ({name})" if name else f"FC {code}"


def fc_list(codes: Iterable[int]) -> str:
    codes = sorted(codes)
    listed = [c for c in codes if c != OTHER_FUNCTION_CODE]
    text = "FC " + ", ".join(str(c) for c in listed) if listed else ""
    if OTHER_FUNCTION_CODE in codes:
        text = f"{text} and an unlisted code" if text else "an unlisted function code"
    return text or "no function code"


def names(ips: Iterable[str]) -> str:
    ips = sorted(ips)
    return ips[0] if len(ips) == 1 else ", ".join(ips[:-1]) + " and " + ips[-1]


def service_label(port: int, transport: str, service: str = "") -> str:
    """'502/tcp (modbus)': the port's usual protocol, or what the payload showed (``service``) when it differs:
    '20001/tcp (dnp3, by its payload)', '502/tcp (rdp by its payload, on modbus's port)'."""
    if port == 0:
        return transport.upper() or "a portless protocol"
    usual = (SERVICE_NAMES.get(port), ot_service_name(transport, port))  # then the OT protocols named by port
    name = usual[0] or usual[1]
    label = PROTOCOL_LABELS.get(service, service)
    said = [bool(n) and any(x.lower().replace("-", "") in n.lower().replace("-", "") for x in (service, label))
            for n in usual] if service else []
    if said and not said[0]:
        name = label if said[1] else f"{label} by its payload, on {name}'s port" if name else f"{label}, by its payload"
    return f"{port}/{transport} ({name})" if name else f"{port}/{transport}"


def evidence(name: str, value: float, baseline: Range | None = None, drove: bool = True) -> FeatureEvidence:
    low, high = baseline if baseline is not None else (0.0, 0.0)
    return FeatureEvidence(name, float(value), float(low), float(high), 1.0 if drove else 0.0)


def write_detail(w: FeatureWindow) -> str:
    """'FC 16, addresses 100-110' for the writes of a window."""
    parts = [fc_list(write_codes(w))] if write_codes(w) else []
    addrs = measured_range(w, "write_addr_min", "write_addr_max", "writes")
    if addrs is not None:
        parts.append(span(addrs))
    return ", ".join(parts) or "writes"


# -- history lookups -----------------------------------------------------------------------------------------------

def known_writer(b: PolicyView, w: FeatureWindow) -> bool:
    """Did this client write to this unit while learning (or, when pooling, to another unit of this server)?

    Units behind one gateway IP are one device to the network and to whoever is allowed to write to it; ten
    minutes of learning easily miss the rare write to one of them.
    """
    return writes_to(b, w.client_ip, w.server_ip, w.unit_id)


def writes_to(b: PolicyView, client: str, server: str, unit: int) -> bool:
    if client in b.writers_.get((server, unit), frozenset()):
        return True
    return b.pool_writes_per_client and client in b.server_writers_.get(server, frozenset())


def write_history(b: PolicyView, w: FeatureWindow) -> PairProfile | None:
    """What a known writer's writes are judged against: its pair, plus its other assets when pooling.

    Learned pairs read the table ``write_histories_`` that learning computed once (several rules ask on every
    window, and merging profiles each time was a good share of the scoring time); detection never writes into the
    baseline. A pair never learned is computed here: only a known writer of a gateway's other unit has one.
    """
    history = b.write_histories_.get(w.pair, _NOT_LEARNED)
    return history if history is not _NOT_LEARNED else compute_write_history(b, w.pair)


_NOT_LEARNED = PairProfile()


def compute_write_history(b: PolicyView, pair: tuple[str, str, int]) -> PairProfile | None:
    client, server, unit = pair
    if not writes_to(b, client, server, unit):
        return None
    if not b.pool_writes_per_client:
        return b.pairs_[pair]
    return b.writer_profiles_[client].merge(b.pairs_.get(pair, PairProfile()))


def write_margin(b: PolicyView, w: FeatureWindow, learned: Range) -> float:
    """Registers tolerated beyond a known writer's learned write range: ``address_margin``, shrinking with evidence.

    n writes spread over a range leave gaps of about range / (n + 1) between them, so a register beyond the range
    by several such gaps was most likely never meant to be written: the margin is ``write_margin_gaps`` gaps, at most
    ``address_margin``. Writes learned are the client's over every asset when pooling (its writer profile already
    holds this pair), else the pair's.
    """
    profile = b.writer_profiles_.get(w.client_ip) if b.pool_writes_per_client else b.pairs_.get(w.pair)
    n = profile.total("writes") if profile is not None else 0.0
    gap = (learned[1] - learned[0] + 1) / (n + 1)
    return min(float(b.address_margin), b.write_margin_gaps * gap)


# -- pair rules ----------------------------------------------------------------------------------------------------
