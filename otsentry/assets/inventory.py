"""Transactions, flows and link observations -> one ``Asset`` per host, with roles and their evidence.

Pure and order-independent: ``Inventory`` only accumulates (``add_events``, ``add_flows``), and ``assets()`` derives
the records at the end, so several captures (or a live stream) can feed one inventory. Roles come from
``otsentry.assets.roles``; multicast, broadcast and unspecified addresses are not hosts and get no record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from otsentry.assets.observe import LinkObservations
from otsentry.assets.roles import HostFacts, infer_roles
from otsentry.assets.vendors import Vendors, vendors
from otsentry.collectors.ics.ports import service_name as ot_service_name
from otsentry.detectors.discovery import is_group
from otsentry.contracts.events import OperationEvent
from otsentry.records import Asset, FlowEvent, ModbusEvent

__all__ = ["Inventory", "ip_sort_key"]


@dataclass
class _Host:
    first: float = float("inf")
    last: float = float("-inf")
    facts: HostFacts = field(default_factory=HostFacts)

    def seen(self, t0: float, t1: float) -> None:
        self.first, self.last = min(self.first, t0), max(self.last, t1)


class Inventory:
    """Accumulates what each host did; ``assets()`` is the inventory so far."""

    def __init__(self, links: LinkObservations | None = None, vendor_db: Vendors | None = None) -> None:
        self.links = links or LinkObservations()
        self._vendors = vendor_db
        self._hosts: dict[str, _Host] = {}

    def _host(self, ip: str) -> _Host | None:
        if not ip or is_group(ip) or ip in ("0.0.0.0", "::"):
            return None
        host = self._hosts.get(ip)
        if host is None:
            host = self._hosts[ip] = _Host()
        return host

    def add_events(self, events: Iterable[ModbusEvent]) -> None:
        for e in events:
            end = e.response_ts if e.response_ts is not None else e.ts
            client, server = self._host(e.client_ip), self._host(e.server_ip)
            if client is not None:
                client.seen(e.ts, end)
                client.facts.used(e, e.server_ip)
            if server is not None:
                server.seen(e.ts, end)
                server.facts.served(e, e.client_ip)

    def add_operations(self, operations: Iterable[OperationEvent]) -> None:
        """DNP3, IEC 104, S7 and EtherNet/IP operations; what a server said of itself joins its identity."""
        for op in operations:
            end = op.ts + (op.latency_s or 0.0)
            client, server = self._host(op.client_ip), self._host(op.server_ip)
            if client is not None:
                client.seen(op.ts, end)
                client.facts.operated(op)
            if server is not None:
                server.seen(op.ts, end)
                server.facts.answered(op)
                if op.identity:
                    merged = dict(self.links.identity.get(op.server_ip, ()))
                    merged.update(op.identity)
                    self.links.identity[op.server_ip] = tuple(merged.items())

    def add_flows(self, flows: Iterable[FlowEvent]) -> None:
        for f in flows:
            orig, resp = self._host(f.orig_ip), self._host(f.resp_ip)
            if orig is not None:
                orig.seen(f.ts_first, f.ts_last)
                orig.facts.connected(f, f.resp_ip)
            if resp is not None:
                resp.seen(f.ts_first, f.ts_last)
                resp.facts.accepted(f, f.orig_ip)

    def assets(self) -> list[Asset]:
        db = self._vendors if self._vendors is not None else vendors()
        shared = {mac for mac, ips in self.links.ips_by_mac().items() if len(ips) > 1}
        servers = frozenset(ip for ip, h in self._hosts.items() if h.facts.clients or h.facts.ot_served)
        out = []
        for ip in sorted(self._hosts, key=ip_sort_key):
            h = self._hosts[ip]
            f = h.facts
            mac = self.links.mac_of(ip)
            identity = self.links.identity.get(ip, ())
            out.append(Asset(
                ip=ip, mac=mac, vendor=db.lookup(mac) if mac else "",
                roles=infer_roles(f, identity, mac_shared=bool(mac) and int(mac.replace(":", ""), 16) in shared,
                                  modbus_servers=servers),
                unit_ids=tuple(sorted(f.units_served)), served_function_codes=tuple(sorted(f.codes_served)),
                used_function_codes=tuple(sorted(f.codes_used)), services=_services(f),
                peers=tuple(sorted(f.peers, key=ip_sort_key)), first_seen=h.first if h.first != float("inf") else 0.0,
                last_seen=h.last if h.last != float("-inf") else 0.0, identity=identity,
                transactions=f.transactions,
            ))
        return out


def ip_sort_key(ip: str) -> tuple[int, ...]:
    """IPv4 before IPv6, each in numeric order; anything else last."""
    import ipaddress

    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (9, 0)
    return (addr.version, int(addr))


def _services(f: HostFacts) -> tuple[str, ...]:
    """'port/transport', with the protocol its payload showed when one did (``20001/tcp (dnp3)``), else the OT
    protocol usually on that port (``3671/udp (knxnet-ip, by port)``)."""
    return tuple(f"{s} ({f.service_names[s]})" if s in f.service_names else _by_port(s)
                 for s in sorted(f.services, key=_svc_key))


def _by_port(service: str) -> str:
    port, _, transport = service.partition("/")
    name = ot_service_name(transport, int(port)) if port.isdigit() else None
    return f"{service} ({name}, by port)" if name else service


def _svc_key(s: str) -> tuple[str, int]:
    port, _, transport = s.partition("/")
    return transport, int(port) if port.isdigit() else 0
