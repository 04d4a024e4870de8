"""Non-Modbus traffic on the OT segment (DNS lookups, an engineer browsing a PLC's web page).

Real OT captures are never Modbus-only, and the flow summariser and the "non-Modbus service" policy need
something to see; these flows are valid enough that Wireshark dissects them without complaint.
"""

from __future__ import annotations

import struct

from otsentry.synth.frames import Direction, Link
from otsentry.synth.plant import Host
from otsentry.synth.sim import FLOW_TCP, FLOW_UDP, T_FLOW, Sim
from otsentry.synth.tcp import Endpoint, TcpConnection

__all__ = ["DnsClient", "WebBrowser", "dns_query", "dns_response"]

_MS = 1_000_000


def dns_query(query_id: int, name: str, qtype: int = 1) -> bytes:
    """A recursive DNS query for one name."""
    return struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + _qname(name) + struct.pack("!HH", qtype, 1)


def dns_response(query_id: int, name: str, address: bytes, ttl: int = 300) -> bytes:
    """An answer with one A (4-byte) or AAAA (16-byte) record, the name compressed to the question's."""
    qtype = 1 if len(address) == 4 else 28
    question = _qname(name) + struct.pack("!HH", qtype, 1)
    answer = struct.pack("!HHHIH", 0xC00C, qtype, 1, ttl, len(address)) + address
    return struct.pack("!HHHHHH", query_id, 0x8180, 1, 1, 0, 0) + question + answer


def _qname(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split(".")) + b"\0"


class DnsClient:
    """A host resolving plant names now and then, each query from a fresh port (one UDP flow each)."""

    def __init__(self, sim: Sim, client: Host, server: Host, names: list[tuple[str, bytes]], link_kind: str,
                 vlans: tuple[int, ...], every_s: tuple[float, float] = (20.0, 60.0)) -> None:
        self.sim, self.client, self.server, self.names = sim, client, server, names
        self.link = Link(client.mac, server.mac, link_kind, vlans)
        self.every_s = every_s

    def step(self, ts_ns: int) -> int:
        rng = self.sim.rng
        name, address = self.names[rng.randrange(len(self.names))]
        port, qid = self.sim.ephemeral_port(), rng.randrange(65536)
        there = Direction(self.client.ip, self.server.ip, port, 53, self.link, 128)
        back = Direction(self.server.ip, self.client.ip, 53, port, self.link.reverse(), 64)
        self.sim.emit((ts_ns, there.udp(dns_query(qid, name, 1 if len(address) == 4 else 28),
                                        rng.randrange(65536))), ((T_FLOW, FLOW_UDP, False),))
        reply_ns = ts_ns + int(rng.uniform(0.3, 2.0) * _MS)
        self.sim.emit((reply_ns, back.udp(dns_response(qid, name, address), rng.randrange(65536))))
        return ts_ns + int(rng.uniform(*self.every_s) * 1e9)


class WebBrowser:
    """An engineering workstation fetching a PLC's status page over short-lived HTTP connections."""

    def __init__(self, sim: Sim, client: Host, servers: list[Host], link_kind: str, vlans: tuple[int, ...],
                 every_s: tuple[float, float] = (120.0, 600.0)) -> None:
        self.sim, self.client, self.servers = sim, client, servers
        self.link_kind, self.vlans = link_kind, vlans
        self.every_s = every_s

    def step(self, ts_ns: int) -> int:
        sim, rng = self.sim, self.sim.rng
        server = self.servers[rng.randrange(len(self.servers))]
        conn = TcpConnection(
            Endpoint(self.client.ip, sim.ephemeral_port(), self.client.mac), Endpoint(server.ip, 80, server.mac),
            client_isn=rng.getrandbits(32), server_isn=rng.getrandbits(32), link_kind=self.link_kind,
            vlans=self.vlans, client_ip_id=rng.randrange(65536), server_ip_id=rng.randrange(65536),
            server_window=8192,
        )
        rtt = int(rng.uniform(0.2, 1.0) * _MS)
        hs = conn.handshake(ts_ns, rtt)
        sim.emit(hs[0], ((T_FLOW, FLOW_TCP, False),))
        sim.emit_all(hs[1:])
        t = hs[-1][0] + 100_000
        request = (f"GET /status.html HTTP/1.1\r\nHost: {server.ip}\r\nUser-Agent: Mozilla/5.0\r\n"
                   "Accept: text/html\r\nConnection: close\r\n\r\n").encode("ascii")
        sim.emit(conn.segment(t, True, request))
        body = b"<html><head><title>PLC status</title></head><body><h1>" + server.name.encode() + b"</h1>"
        body += b"<table>" + b"".join(b"<tr><td>R%d</td><td>%d</td></tr>" % (i, rng.randrange(1000))
                                      for i in range(12)) + b"</table></body></html>"
        response = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
                    b"Connection: close\r\n\r\n" % len(body)) + body
        t += int(rng.uniform(2, 8) * _MS)
        sim.emit(conn.segment(t, False, response))
        last = sim.emit_all(conn.close(t + 200_000, rtt, from_client=False))
        return max(last + _MS, ts_ns + int(rng.uniform(*self.every_s) * 1e9))
