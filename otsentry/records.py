"""Records exchanged between stages: frozen, versioned, JSON-friendly.

Every record carries ``RECORD_SCHEMA_VERSION`` in its dict form so that a consumer (a Kafka worker, a student's notebook)
can refuse data it does not understand instead of misreading it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Mapping

from otsentry.errors import InputError

__all__ = ["ASSET_ROLES", "Alert", "Asset", "EvasionNote", "FeatureEvidence", "FeatureWindow", "FlowEvent",
    "Incident", "IncidentStep", "ModbusEvent", "PacketLoss", "ProcessVariable", "RECORD_SCHEMA_VERSION",
    "SchemaError", "alert_id", "event_from_dict"]

RECORD_SCHEMA_VERSION = 1



class SchemaError(InputError, ValueError):
    """A record dict that this version cannot read."""


def _check_version(kind: str, data: Mapping[str, Any]) -> None:
    version = data.get("schema_version")
    if version != RECORD_SCHEMA_VERSION:
        raise SchemaError(f"{kind}: schema_version {version!r} is not supported (expected {RECORD_SCHEMA_VERSION})")


def _from_dict(cls: type, kind: str, data: Mapping[str, Any]) -> Any:
    _check_version(kind, data)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names - {"schema_version", "kind"}
    if unknown:
        raise SchemaError(f"{kind}: unknown field(s) {', '.join(sorted(unknown))}")
    return cls(**{k: data[k] for k in names if k in data})


@dataclass(frozen=True, slots=True)
class ModbusEvent:
    """One Modbus/TCP transaction: a request and its response when seen.

    ``ts`` is when the transaction started (the request, or the response when no request was seen), in epoch
    seconds. ``values`` are the register/coil values written by the request or returned by the response, as
    numbers. Frame numbers are 1-based positions in the capture, as Wireshark counts them, so labels in
    ``frame;label`` form can be joined to events.
    """

    ts: float
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    unit_id: int
    transaction_id: int
    function_code: int
    function_name: str
    sub_function: int | None = None
    exception_code: int | None = None
    start_address: int | None = None
    quantity: int | None = None
    values: tuple[int, ...] = ()
    request_frame: int | None = None
    response_frame: int | None = None
    response_ts: float | None = None
    latency_s: float | None = None
    flags: tuple[str, ...] = ()

    kind: ClassVar[str] = "modbus"

    @property
    def is_exception(self) -> bool:
        return self.exception_code is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["values"] = list(self.values)
        d["flags"] = list(self.flags)
        d["kind"] = self.kind
        d["schema_version"] = RECORD_SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModbusEvent":
        event = _from_dict(cls, "ModbusEvent", data)
        return _replace_sequences(event)


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """One TCP/UDP/other connection summarised, Modbus or not, so new talkers and services are visible.

    The originator is the host that sent the first SYN (or the first packet seen when the handshake was
    missed). ``tcp_flags`` is the union of flags seen, as letters (S, A, F, R, P, U).
    """

    ts_first: float
    ts_last: float
    orig_ip: str
    orig_port: int
    resp_ip: str
    resp_port: int
    transport: str
    packets_orig: int
    packets_resp: int
    bytes_orig: int
    bytes_resp: int
    tcp_flags: str = ""
    syn: int = 0
    rst: int = 0
    fin: int = 0
    retransmissions: int = 0
    modbus: bool = False
    service: str = ""  # the OT protocol its payload was recognised as, whatever the port ("" when none)

    kind: ClassVar[str] = "flow"

    @property
    def packets(self) -> int:
        return self.packets_orig + self.packets_resp

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind
        d["schema_version"] = RECORD_SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FlowEvent":
        return _from_dict(cls, "FlowEvent", data)


def _replace_sequences(event: ModbusEvent) -> ModbusEvent:
    """JSON gives lists; records hold tuples so they stay hashable and immutable."""
    object.__setattr__(event, "values", tuple(event.values))
    object.__setattr__(event, "flags", tuple(event.flags))
    return event


def event_from_dict(data: Mapping[str, Any]) -> ModbusEvent | FlowEvent:
    """Read either event kind from its dict form (one line of ``otsentry inspect --json``)."""
    kind = data.get("kind")
    if kind == ModbusEvent.kind:
        return ModbusEvent.from_dict(data)
    if kind == FlowEvent.kind:
        return FlowEvent.from_dict(data)
    raise SchemaError(f"unknown record kind {kind!r}")


@dataclass(frozen=True, slots=True)
class FeatureWindow:
    """One time window for one asset pair (``kind="pair"``), one conversation (``kind="flow"``), or what the sensor
    could not see or saw forged (``kind="sensor"``).

    ``values`` follow the names of ``otsentry.contracts.schema`` for ``schema`` and ``kind``; the dict form maps
    names to values so that a reader never depends on positions. ``unit_id`` is -1 for flow windows;
    ``port``/``transport`` are the responder's service for flow windows (0 / "" for pair windows).
    """

    window_start: float
    window_end: float
    kind: str
    client_ip: str
    server_ip: str
    unit_id: int
    values: tuple[float, ...]
    schema: str
    port: int = 0
    transport: str = ""
    first_frame: int = 0  # frame numbers covered, for labels in frame;label form
    last_frame: int = 0
    operations: tuple[str, ...] = ()  # "ot" windows: the distinct operations, "class/name" ("control/SELECT")
    service: str = ""  # "flow" windows: the protocol the responder's payload showed (collectors.ics.signatures)

    @property
    def pair(self) -> tuple[str, str, int]:
        return (self.client_ip, self.server_ip, self.unit_id)

    def feature_names(self) -> tuple[str, ...]:
        from otsentry.contracts.schema import FLOW_FEATURES, OT_FEATURES, PAIR_FEATURES, SENSOR_FEATURES

        return {"pair": PAIR_FEATURES, "sensor": SENSOR_FEATURES, "ot": OT_FEATURES}.get(self.kind, FLOW_FEATURES)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies the ~100 values one by one, and a collector publishing to Kafka
        # encodes every window (the fields besides ``values`` are scalars, so a shallow copy is the same dict).
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["values"] = dict(zip(self.feature_names(), self.values))
        d["record"] = "feature_window"
        d["schema_version"] = RECORD_SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureWindow":
        _check_version("FeatureWindow", data)
        d = {k: v for k, v in data.items() if k not in ("record", "schema_version")}
        tmp = cls(**{**d, "values": ()})
        named = data["values"]
        missing = [n for n in tmp.feature_names() if n not in named]
        if missing:
            raise SchemaError(f"FeatureWindow: missing feature(s) {', '.join(missing[:5])}")
        return cls(**{**d, "values": tuple(float(named[n]) for n in tmp.feature_names()),
                      "operations": tuple(d.get("operations", ()))})


@dataclass(frozen=True, slots=True)
class FeatureEvidence:
    """A feature that drove an alert: its value and the range seen while learning."""

    name: str
    value: float
    baseline_low: float
    baseline_high: float
    contribution: float = 0.0  # share of the score (models) or 1.0 (policy rules)


@dataclass(frozen=True, slots=True)
class Alert:
    """What fired, on which window and asset pair, why, and how sure. ``id`` is deterministic (see ``alert_id``).

    ``technique_id`` names the ATT&CK for ICS technique the rule maps to; ``incident_id`` the incident the alert
    belongs to, once correlation has seen it.
    """

    id: str
    rule_id: str
    rule_name: str
    category: str  # "policy" or "anomaly"
    detector: str
    severity: str  # low | medium | high | critical
    risk_score: float  # 0-100
    score: float
    threshold: float
    window_start: float
    window_end: float
    client_ip: str
    server_ip: str
    unit_id: int
    explanation: str
    evidence: tuple[FeatureEvidence, ...] = ()
    function_codes: tuple[int, ...] = ()
    server_port: int = 0
    transport: str = "tcp"
    technique_id: str = ""  # ATT&CK for ICS technique (otsentry.contracts.attack); "" for sensor health
    incident_id: str = ""  # set by correlation (otsentry.correlation); not part of ``id``
    first_frame: int = 0  # the window's frames in its capture (0: not known, e.g. live)
    last_frame: int = 0
    capture: str = ""  # the capture file the window came from, when it came from one
    protocol: str = ""  # the OT protocol of the alert's traffic ("" : Modbus/TCP, or no protocol: a flow)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = [asdict(e) for e in self.evidence]
        d["function_codes"] = list(self.function_codes)
        d["record"] = "alert"
        d["schema_version"] = RECORD_SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Alert":
        _check_version("Alert", data)
        d = {k: v for k, v in data.items() if k not in ("record", "schema_version")}
        d["evidence"] = tuple(FeatureEvidence(**e) for e in d.get("evidence", ()))
        d["function_codes"] = tuple(d.get("function_codes", ()))
        return cls(**d)


def alert_id(window_start: float, window_end: float, client_ip: str, server_ip: str, unit_id: int, rule_id: str) -> str:
    """Deterministic alert id: replaying or re-indexing the same capture never duplicates an alert."""
    import hashlib

    key = f"{window_start:.6f}|{window_end:.6f}|{client_ip}|{server_ip}|{unit_id}|{rule_id}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class EvasionNote:
    """Evidence the sensor saw of an evasion attempt: overlapping bytes that differ, a tiny fragment.

    ``kind`` is one of the reassemblers' note names (``overlap_conflict``, ``fragment_overlap_conflict``,
    ``tiny_fragment``); ports are 0 for IP fragments.
    """

    kind: str
    frame: int
    ts_ns: int
    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    nbytes: int


@dataclass(frozen=True, slots=True)
class PacketLoss:
    """Packets the sensor never saw: dropped by the kernel (capture ring full) or by the interface, up to ``ts``."""

    ts: float
    kernel_drops: int
    interface_drops: int


@dataclass(frozen=True, slots=True)
class IncidentStep:
    """What one actor did in an incident under one rule (and variant): the alerts folded into one phrase.

    ``targets`` are the servers in order of first alert; ``services`` the ``port/transport`` of flow alerts;
    ``units`` the distinct unit ids addressed.
    """

    first_ts: float
    last_ts: float
    actor: str
    rule_id: str
    technique_id: str
    alerts: int
    targets: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    units: int = 0
    function_codes: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Incident:
    """Alerts of one attack (same actor or target, close in window time), as an analyst works them.

    ``id`` is derived from the first alert's id, so a replay or a restarted correlator builds the same incident.
    ``techniques`` are ATT&CK for ICS technique ids in order of first appearance; ``severity`` is the highest of the
    alerts, raised one level when the incident escalates across tactics (see ``otsentry.correlation``).
    """

    id: str
    start: float
    end: float
    severity: str
    risk_score: float
    actors: tuple[str, ...]  # clients of the alerts (not of a silent device's pollers)
    targets: tuple[str, ...]  # servers of the alerts
    related: tuple[str, ...]  # every host of the alerts, sorted (ECS related.ip)
    techniques: tuple[str, ...]
    alert_count: int
    rules: tuple[tuple[str, int], ...]  # (rule id, alerts) in order of first appearance
    steps: tuple[IncidentStep, ...]
    summary: str
    first_alert_id: str
    last_alert_id: str
    escalated: bool = False
    merged: tuple[str, ...] = ()  # incidents folded into this one (their early alerts carry those ids)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["actors"], d["targets"], d["techniques"] = list(self.actors), list(self.targets), list(self.techniques)
        d["merged"], d["related"] = list(self.merged), list(self.related)
        d["rules"] = [list(r) for r in self.rules]
        d["steps"] = [{**asdict(s), "targets": list(s.targets), "services": list(s.services),
                       "function_codes": list(s.function_codes)} for s in self.steps]
        d["record"] = "incident"
        d["schema_version"] = RECORD_SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Incident":
        _check_version("Incident", data)
        d = {k: v for k, v in data.items() if k not in ("record", "schema_version")}
        d["steps"] = tuple(IncidentStep(**{**s, "targets": tuple(s["targets"]), "services": tuple(s["services"]),
                                           "function_codes": tuple(s["function_codes"])}) for s in d["steps"])
        d["rules"] = tuple((str(r), int(n)) for r, n in d["rules"])
        for key in ("actors", "targets", "related", "techniques", "merged"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)


ASSET_ROLES = ("plc", "gateway", "hmi", "historian", "engineering_workstation", "other")


@dataclass(frozen=True, slots=True)
class Asset:
    """One host of the OT network as otsentry saw it: addresses, roles with their evidence, what it served and used.

    ``roles`` are ``(role, evidence)`` pairs from ``ASSET_ROLES``; ``identity`` holds what the device said of itself
    (FC 43/14 read device identification: ``vendor_name``, ``product_code``, ``revision``...). ``services`` are the
    ``port/transport`` it answered on; ``peers`` the hosts it talked to.
    """

    ip: str
    mac: str = ""
    vendor: str = ""
    roles: tuple[tuple[str, str], ...] = ()
    unit_ids: tuple[int, ...] = ()
    served_function_codes: tuple[int, ...] = ()
    used_function_codes: tuple[int, ...] = ()
    services: tuple[str, ...] = ()
    peers: tuple[str, ...] = ()
    first_seen: float = 0.0
    last_seen: float = 0.0
    identity: tuple[tuple[str, str], ...] = ()
    transactions: int = 0  # Modbus transactions it took part in (either side)

    @property
    def id(self) -> str:
        import hashlib

        return hashlib.sha256(f"asset|{self.ip}".encode()).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["roles"] = [{"role": r, "evidence": e} for r, e in self.roles]
        d["identity"] = [list(pair) for pair in self.identity]  # pairs: object order survives sort_keys
        for key in ("unit_ids", "served_function_codes", "used_function_codes", "services", "peers"):
            d[key] = list(d[key])
        d["record"] = "asset"
        d["schema_version"] = RECORD_SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Asset":
        _check_version("Asset", data)
        d = {k: v for k, v in data.items() if k not in ("record", "schema_version")}
        d["roles"] = tuple((r["role"], r["evidence"]) for r in d.get("roles", ()))
        d["identity"] = tuple((str(k), str(v)) for k, v in d.get("identity", ()))
        for key in ("unit_ids", "served_function_codes", "used_function_codes", "services", "peers"):
            d[key] = tuple(d.get(key, ()))
        return cls(**d)


@dataclass(frozen=True, slots=True)
class ProcessVariable:
    """One register of one device as polling showed it (``otsentry assets --variables``)."""

    server: str
    unit: int
    table: str
    address: int
    reads: int
    low: float
    high: float
    typical_change: float  # median |change| between consecutive reads
    period_s: float  # median time between reads (0: read once)
    last_value: float
    last_ts: float
    counter: bool = False  # it only ever went up while learning (a counter: wraps, so no range is judged)
    written: bool = False  # inside the range clients wrote while learning (a setpoint: the write rules judge it)

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.server, self.unit, self.table, self.address)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ProcessVariable":
        return cls(str(d["server"]), int(d["unit"]), str(d["table"]), int(d["address"]), int(d["reads"]),
                   float(d["low"]), float(d["high"]), float(d["typical_change"]), float(d["period_s"]),
                   float(d["last_value"]), float(d["last_ts"]), bool(d.get("counter", False)),
                   bool(d.get("written", False)))
