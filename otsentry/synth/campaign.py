"""One attacker repeating a whole campaign every few minutes: the scenario that suppression must not hide.

Each round, from the same never-seen host: an address scan (TCP connections to 80 and 502 of every PLC), a
function-code scan of the target unit (codes 1-24 and device identification, FC 43/14), force listen-only (FC 8/4:
the PLC answers nobody for ``listen_s``, until the attacker sends restart communications), then injected setpoint
writes (FC 6). Field reports of lab captures like this one are where a one-hour re-alert suppression swallowed the
second force-listen-only seven minutes after the first.
"""

from __future__ import annotations

import random
from typing import Iterable, Iterator

from otsentry.synth import modbus as mb
from otsentry.synth.attacks import Attacker, Target, sweep_pdus
from otsentry.synth.plant import SETPOINTS, Host
from otsentry.synth.sim import Sim
from otsentry.synth.tcp import Endpoint, TcpConnection
from otsentry.synth.truth import AttackLog

__all__ = ["ListenOnlyPeriods", "RepeatedCampaign"]

_MS = 1_000_000
SCAN_PORTS = (80, 502)
SCAN_CODES = tuple(range(1, 25)) + (mb.ENCAPSULATED_INTERFACE,)


class ListenOnlyPeriods:
    """When the target is silent (force listen-only), over several rounds: the ``ListenOnly`` interface."""

    def __init__(self) -> None:
        self.periods: list[list[int | None]] = []  # [since, until]

    def start(self, t: int) -> None:
        self.periods.append([t, None])

    def end(self, t: int) -> None:
        self.periods[-1][1] = t

    def silent(self, t: int) -> bool:
        return any(since is not None and since <= t and (until is None or t < until) for since, until in self.periods)


class RepeatedCampaign(Attacker):
    """``rounds`` campaigns ``every_s`` apart from one host against ``target``, scanning ``scanned`` first."""

    def __init__(self, sim: Sim, log: AttackLog, rng: random.Random, host: Host, target: Target,
                 scanned: Iterable[Host], state: ListenOnlyPeriods, rounds: int = 6, every_s: float = 300.0,
                 listen_s: float = 20.0) -> None:
        super().__init__(sim, log, rng, host, target)
        self._t = 0
        self.scanned = tuple(scanned)
        self.state, self.rounds = state, rounds
        self.every_ns, self.listen_ns = int(every_s * 1e9), int(listen_s * 1e9)

    def script(self, t: int) -> Iterator[int]:
        start = t
        for round_no in range(self.rounds):
            t = max(t, start + round_no * self.every_ns)
            yield t
            for host in self.scanned:
                for port in SCAN_PORTS:
                    t = self._probe(t, host, port)
                    yield t
            yield from self._campaign_round(t)
            t = self._t

    def _probe(self, t: int, host: Host, port: int) -> int:
        """A full TCP connection opened and closed at once: what a connect() scan leaves on the wire."""
        rng = self.rng
        conn = TcpConnection(Endpoint(self.host.ip, rng.randrange(*self.client_ports), self.host.mac),
                             Endpoint(host.ip, port, host.mac), client_isn=rng.getrandbits(32),
                             server_isn=rng.getrandbits(32), client_ttl=self.client_ttl, server_ttl=self.server_ttl,
                             client_ip_id=rng.randrange(65536), server_ip_id=rng.randrange(65536))
        for frame in conn.handshake(t, int(rng.uniform(0.1, 0.6) * _MS)):
            t = self.emit(frame)
        for frame in conn.close(t + int(rng.uniform(1, 5) * _MS), int(rng.uniform(0.1, 0.6) * _MS)):
            t = self.emit(frame)
        return t + int(rng.uniform(20, 80) * _MS)

    def _campaign_round(self, t: int) -> Iterator[int]:
        rng, target = self.rng, self.target
        t = self.connect(t) + int(rng.uniform(5, 30) * _MS)
        for fc in SCAN_CODES:
            if fc == mb.DIAGNOSTICS:
                continue  # FC 8 comes as the listen-only command below
            request, response, code = sweep_pdus(fc, target)
            t = self.transact(t, request, response, code) + int(rng.uniform(30, 120) * _MS)
            yield t
        t += int(rng.uniform(2.0, 5.0) * 1e9)
        listen = mb.diagnostics(mb.DIAG_FORCE_LISTEN_ONLY, b"\x00\x00")
        self.state.start(t)
        t = self.request_only(t, listen, int(rng.uniform(1, 40) * _MS)) + self.listen_ns
        yield t
        restart = mb.diagnostics(mb.DIAG_RESTART_COMMUNICATIONS, b"\x00\x00")
        self.state.end(t + int(rng.uniform(0.5, 1.5) * 1e9))
        t = self.request_only(t, restart, int(rng.uniform(1, 40) * _MS)) + int(rng.uniform(2.0, 4.0) * 1e9)
        yield t
        for _ in range(3):
            address = SETPOINTS + rng.randrange(10)
            value = rng.randrange(30000, 60000)
            request = mb.write_single_register(address, value)
            t = self.transact(t, request, request, address=address, quantity=1)
            target.bank.write_registers(address, [value])
            t += int(rng.uniform(0.5, 2.0) * 1e9)
            yield t
        self._t = self.close(t)
        yield self._t
