"""``TcpClientActor``: a client that opens TCP connections to one server, every frame marked as an attack frame.

The base of the Modbus attackers (``attacks.base.Attacker``) and of the IT sessions (``services.ServiceSession``):
``step`` drives a generator (``script``) that yields the time of its next action, so a long attack is emitted a
little at a time and never piles up frames in the simulation's heap.
"""

from __future__ import annotations

import random
from typing import Any, Iterator

from otsentry.synth.plant import Host
from otsentry.synth.sim import T_FLOW, Sim, Tag
from otsentry.synth.tcp import Endpoint, Frame, TcpConnection
from otsentry.synth.truth import AttackLog

__all__ = ["TcpClientActor"]


class TcpClientActor:
    """``client`` talks to ``server`` (a Host, or what a subclass aims at); subclasses set the TTLs and ephemeral
    port range of both ends and script what is sent."""

    client_ttl = 64
    server_ttl = 64
    client_ports = (32768, 61000)

    connections = 0  # opened so far

    def __init__(self, sim: Sim, log: AttackLog, rng: random.Random, client: Host, server: Any,
                 link_kind: str = "ethernet", vlans: tuple[int, ...] = ()) -> None:
        self.sim, self.log, self.rng, self.client, self.server = sim, log, rng, client, server
        self.link_kind, self.vlans = link_kind, vlans
        self.conn: TcpConnection | None = None
        self._script: Iterator[int] | None = None

    def step(self, ts_ns: int) -> int | None:
        if self._script is None:
            self._script = self.script(ts_ns)
        return next(self._script, None)

    def script(self, t: int) -> Iterator[int]:
        raise NotImplementedError

    def rtt(self) -> int:
        """A handshake's or teardown's round trip, in ns."""
        raise NotImplementedError

    def emit(self, frame: Frame, tag: Tag | None = None) -> int:
        self.log.mark(frame)
        self.sim.emit(frame, tag)
        return frame[0]

    def open_connection(self, t: int, client: Host, server: Host, port: int, flow: int,
                        server_window: int | None = None) -> int:
        """A new connection from ``client`` to ``server``:``port``, handshake emitted; returns its last frame time.

        The random draws come in one fixed order (client port, both ISNs, both IP ids, then the round trip), so a
        scenario's capture is the same for the same seed.
        """
        rng = self.rng
        self.connections += 1
        window = {} if server_window is None else {"server_window": server_window}
        self.conn = TcpConnection(
            Endpoint(client.ip, rng.randrange(*self.client_ports), client.mac), Endpoint(server.ip, port, server.mac),
            client_isn=rng.getrandbits(32), server_isn=rng.getrandbits(32), client_ttl=self.client_ttl,
            server_ttl=self.server_ttl, client_ip_id=rng.randrange(65536), server_ip_id=rng.randrange(65536),
            link_kind=self.link_kind, vlans=self.vlans, **window,
        )
        frames = self.conn.handshake(t, self.rtt())
        self.emit(frames[0], ((T_FLOW, flow, False),))
        for frame in frames[1:]:
            self.emit(frame)
        return frames[-1][0]

    def close(self, t: int) -> int:
        """The client closes the connection; returns the last frame's time."""
        assert self.conn is not None
        last = t
        for frame in self.conn.close(t, self.rtt(), from_client=True):
            last = self.emit(frame)
        self.conn = None
        return last
