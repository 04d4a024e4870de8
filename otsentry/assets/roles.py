"""Roles from a fixed vocabulary (``records.ASSET_ROLES``), each with the evidence that gave it.

Why rules and not a model: an analyst must be able to check a role against the traffic in one look, so every role
names what the host did ("answers Modbus/TCP for units 1, 2 and 3", "writes FC 6, 16 to 10.10.2.11").

* ``plc`` - answers Modbus/TCP requests;
* ``gateway`` - answers for several unit ids behind one address, or with gateway exceptions (10, 11);
* ``hmi`` - a Modbus client that reads and writes;
* ``historian`` - a Modbus client that only reads, from two servers or more;
* ``engineering_workstation`` - uses engineering and diagnostic function codes (FC 8, 20-24, vendor codes such as
  90; FC 17 and 43 identification only when it does not poll), or opens engineering services (web, S7comm,
  EtherNet/IP, Telnet, SSH, FTP, TFTP, SNMP) on a device that serves Modbus;
* ``other`` - none of these (DNS, domain controller, printers...): what it offered is the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from otsentry.collectors.ics.ports import PROTOCOL_LABELS
from otsentry.contracts.events import OperationEvent
from otsentry.records import FlowEvent, ModbusEvent

__all__ = ["ENGINEERING_CODES", "ENGINEERING_PORTS", "IDENTIFICATION_CODES", "HostFacts", "infer_roles"]

ENGINEERING_CODES = frozenset({8, 20, 21, 22, 23, 24, 90})  # diagnostics, file records, vendor programming
IDENTIFICATION_CODES = frozenset({17, 43})  # pollers ask these too: engineering evidence only for a non-poller
ENGINEERING_PORTS = frozenset({21, 22, 23, 69, 80, 102, 161, 443, 44818})
GATEWAY_EXCEPTIONS = frozenset({10, 11})
WRITE_CODES = frozenset({5, 6, 15, 16, 21, 22, 23})
MAX_LISTED = 4
OT_WRITE_CLASSES = frozenset({"write", "control"})
OT_ENGINEERING_CLASSES = frozenset({"program", "file"})


@dataclass
class HostFacts:
    """What one host did, accumulated from its transactions and flows."""

    transactions: int = 0
    servers: set[str] = field(default_factory=set)  # it asked them (Modbus client)
    written: set[str] = field(default_factory=set)
    clients: set[str] = field(default_factory=set)  # they asked it (Modbus server)
    units_served: set[int] = field(default_factory=set)
    codes_served: set[int] = field(default_factory=set)
    codes_used: set[int] = field(default_factory=set)
    gateway_exceptions: set[int] = field(default_factory=set)
    services: set[str] = field(default_factory=set)  # port/transport it accepted connections on
    service_names: dict[str, str] = field(default_factory=dict)  # port/transport -> protocol its payload showed
    opened: set[tuple[str, int, str]] = field(default_factory=set)  # (responder, port, transport) it connected to
    peers: set[str] = field(default_factory=set)
    ot_served: dict[str, set[str]] = field(default_factory=dict)  # DNP3/IEC 104/S7/CIP: protocol -> its clients
    ot_stations: dict[str, set[int]] = field(default_factory=dict)  # protocol -> stations it answered for
    ot_used: dict[str, set[str]] = field(default_factory=dict)  # protocol -> operation classes it sent
    ot_written: set[str] = field(default_factory=set)  # servers it sent control, write or program operations to

    def operated(self, op: OperationEvent) -> None:
        """Sent a DNP3, IEC 104, S7 or EtherNet/IP operation (the client side)."""
        self.transactions += 1
        self.servers.add(op.server_ip)
        self.peers.add(op.server_ip)
        self.ot_used.setdefault(op.protocol, set()).add(op.operation_class)
        if op.operation_class in OT_WRITE_CLASSES:
            self.ot_written.add(op.server_ip)

    def answered(self, op: OperationEvent) -> None:
        """Received one (the server side); answering it is the evidence of serving."""
        self.transactions += 1
        self.peers.add(op.client_ip)
        if op.response_frame is None:
            return
        self.ot_served.setdefault(op.protocol, set()).add(op.client_ip)
        if op.station is not None and op.station >= 0:
            self.ot_stations.setdefault(op.protocol, set()).add(op.station)
        self.services.add(f"{op.server_port}/{op.transport}")

    def used(self, e: ModbusEvent, server: str) -> None:
        self.transactions += 1
        self.servers.add(server)
        self.peers.add(server)
        self.codes_used.add(e.function_code)
        if e.function_code in WRITE_CODES:
            self.written.add(server)

    def served(self, e: ModbusEvent, client: str) -> None:
        self.transactions += 1
        self.peers.add(client)
        if e.response_frame is None and e.response_ts is None:
            return  # never answered: not evidence of serving
        self.clients.add(client)
        self.units_served.add(e.unit_id)
        if e.exception_code is None:
            self.codes_served.add(e.function_code)
        elif e.exception_code in GATEWAY_EXCEPTIONS:
            self.gateway_exceptions.add(e.exception_code)
        self.services.add(f"{e.server_port}/tcp")

    def connected(self, f: FlowEvent, responder: str) -> None:
        self.peers.add(responder)
        self.opened.add((responder, f.resp_port, f.transport))

    def accepted(self, f: FlowEvent, originator: str) -> None:
        self.peers.add(originator)
        if f.packets_resp > 0 and (f.transport != "tcp" or "S" not in f.tcp_flags or "R" not in f.tcp_flags
                                   or f.packets_resp > 1):
            service = f"{f.resp_port}/{f.transport}" if f.resp_port else f.transport
            self.services.add(service)
            if f.service:
                self.service_names.setdefault(service, f.service)


def _names(items, limit: int = MAX_LISTED) -> str:
    items = sorted(items)
    shown = [str(i) for i in items[:limit]] + ([f"{len(items) - limit} more"] if len(items) > limit else [])
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def infer_roles(f: HostFacts, identity: tuple[tuple[str, str], ...] = (), *, mac_shared: bool = False,
                modbus_servers: frozenset[str] = frozenset()) -> tuple[tuple[str, str], ...]:
    """The roles of one host with their evidence (``modbus_servers``: every host that answered Modbus)."""
    roles: list[tuple[str, str]] = []
    said = " ".join(v for k, v in identity if k in ("vendor_name", "product_code", "product_name", "order_number",
                                                     "module_name") and v)
    if f.ot_served and not f.clients:
        parts = []
        for protocol, clients in sorted(f.ot_served.items()):
            stations = f.ot_stations.get(protocol)
            where = f" (station {_names(stations)})" if stations else ""
            parts.append(f"answers {PROTOCOL_LABELS.get(protocol, protocol)} requests from {_names(clients)}{where}")
        roles.append(("plc", "; ".join(parts) + (f"; identifies as {said}" if said else "")))
    if f.clients:
        what = f"answers Modbus/TCP requests from {_names(f.clients)} (unit {_names(f.units_served)}; " \
               f"FC {_names(f.codes_served) if f.codes_served else 'none without exception'})"
        if said:
            what += "; identifies as " + said
        roles.append(("plc", what))
        if len(f.units_served) > 1 or f.gateway_exceptions:
            why = (f"answers for unit ids {_names(f.units_served)} behind one address" if len(f.units_served) > 1
                   else f"answers gateway exceptions ({_names(f.gateway_exceptions)})")
            roles.append(("gateway", why))
    engineering = f.codes_used & ENGINEERING_CODES
    tools = sorted((r, p, t) for r, p, t in f.opened if p in ENGINEERING_PORTS and r in modbus_servers)
    poller = False
    ot_engineering = sorted(f"{PROTOCOL_LABELS.get(p, p)} {c}" for p, cs in f.ot_used.items()
                            for c in cs & OT_ENGINEERING_CLASSES)
    if f.servers:
        if f.written or f.ot_written:
            poller = True
            if f.written:
                roles.append(("hmi", f"reads from and writes (FC {_names(f.codes_used & WRITE_CODES)}) to "
                                     f"{_names(f.written)}"))
            else:
                protocols = _names({PROTOCOL_LABELS.get(p, p) for p, cs in f.ot_used.items() if cs & OT_WRITE_CLASSES})
                roles.append(("hmi", f"sends {protocols} controls or writes to {_names(f.ot_written)}"))
        elif len(f.servers) >= 2 and not engineering:
            poller = True
            roles.append(("historian", f"reads from {_names(f.servers)}, never writes"))
    if not poller:
        engineering |= f.codes_used & IDENTIFICATION_CODES
    if engineering or tools or ot_engineering:
        parts = []
        if engineering:
            parts.append(f"uses engineering function codes (FC {_names(engineering)})")
        if ot_engineering:
            parts.append(f"sends {_names(ot_engineering)} operations")
        if tools:
            parts.append("opens " + _names({f"{p}/{t} on {r}" for r, p, t in tools}))
        roles.append(("engineering_workstation", "; ".join(parts)))
    if not roles:
        offered = f"offers {_names(f.services)}" if f.services else "no Modbus traffic, offers no service"
        if mac_shared:
            offered += "; its MAC is shared with other addresses (a router or a proxy)"
        roles.append(("other", offered))
    return tuple(roles)
