"""Denial: a query flood, and FC 8 restart / force listen-only that silences a PLC for its pollers."""

from __future__ import annotations

import random
from typing import Iterator

from otsentry.synth import modbus as mb
from otsentry.synth.attacks.base import WINDOWS_PORTS, Attacker, Target, read_response
from otsentry.synth.plant import Host
from otsentry.synth.polling import Poller
from otsentry.synth.sim import Sim
from otsentry.synth.truth import AttackLog

__all__ = ["DiagnosticsRestart", "ListenOnly", "QueryFlood", "SilencedPoller"]


_MS = 1_000_000


class QueryFlood(Attacker):
    """A never-seen host sends read requests back to back for ``duration_s``: the PLC slows and gets busy.

    One synchronous client (next request as soon as the answer arrives) reaches about 200 requests/s, around
    80 times the HMI's rate to that PLC; latency doubles as the load ramps up and a few requests get
    SERVER_DEVICE_BUSY.
    """

    def __init__(self, sim: Sim, log: AttackLog, rng: random.Random, host: Host, target: Target,
                 link_kind: str = "ethernet", vlans: tuple[int, ...] = (), duration_s: float = 30.0) -> None:
        super().__init__(sim, log, rng, host, target, link_kind, vlans)
        self.duration_ns = int(duration_s * 1e9)

    def script(self, t: int) -> Iterator[int]:
        rng, bank = self.rng, self.target.bank
        t = self.connect(t) + int(rng.uniform(1, 5) * _MS)
        start = t
        request = mb.read_request(mb.READ_HOLDING_REGISTERS, 0, 10)
        while t - start < self.duration_ns:
            load = min(1.0, (t - start) / 5e9)  # saturates after 5 s
            if rng.random() < 0.02 * load:
                code = mb.SERVER_DEVICE_BUSY
                response = mb.exception_response(mb.READ_HOLDING_REGISTERS, code)
            else:
                code, response = 0, read_response(bank, mb.READ_HOLDING_REGISTERS, 0, 10)
            t = self.transact(t, request, response, code, load, address=0, quantity=10)
            t += rng.randrange(100_000, 600_000)  # the tool's turnaround
            yield t
        self.close(t)


class ListenOnly:
    """When a PLC's Modbus application is silent (force listen-only mode): from ``since_ns`` until ``until_ns``."""

    def __init__(self) -> None:
        self.since_ns: int | None = None
        self.until_ns: int | None = None

    def silent(self, t: int) -> bool:
        return self.since_ns is not None and self.since_ns <= t and (self.until_ns is None or t < self.until_ns)


class DiagnosticsRestart(Attacker):
    """FC 8 from the engineering workstation: restart communications, then force listen-only mode.

    Sub-function 1 (restart communications) is answered (an echo, sent before the port restarts); sub-function
    4 (force listen-only) gets no answer by definition, and from then on the PLC answers nobody (``state``). After
    ``listen_s`` the attacker sends sub-function 1 again, which brings the device back (unanswered too: a device
    in listen-only mode answers nothing), and leaves. The host is a known one (it browses the PLCs' web pages)
    that never spoke Modbus: the engineering station, as in most real incidents with diagnostics commands.
    """

    client_ttl = 128
    client_ports = WINDOWS_PORTS

    def __init__(self, sim: Sim, log: AttackLog, rng: random.Random, host: Host, target: Target, state: ListenOnly,
                 listen_s: float = 60.0, link_kind: str = "ethernet", vlans: tuple[int, ...] = ()) -> None:
        super().__init__(sim, log, rng, host, target, link_kind, vlans)
        self.state = state
        self.listen_ns = int(listen_s * 1e9)

    def script(self, t: int) -> Iterator[int]:
        rng = self.rng
        t = self.connect(t) + int(rng.uniform(50, 300) * _MS)
        restart = mb.diagnostics(mb.DIAG_RESTART_COMMUNICATIONS, b"\x00\x00")  # keep the event log
        t = self.transact(t, restart, restart)
        t += int(rng.uniform(2.0, 5.0) * 1e9)
        yield t
        listen = mb.diagnostics(mb.DIAG_FORCE_LISTEN_ONLY, b"\x00\x00")
        self.state.since_ns = t
        t = self.request_only(t, listen, int(rng.uniform(1, 40) * _MS))
        t += self.listen_ns
        yield t
        self.state.until_ns = t + int(rng.uniform(0.5, 1.5) * 1e9)  # the port restarts, then answers again
        t = self.request_only(t, restart, int(rng.uniform(1, 40) * _MS))
        t += int(rng.uniform(0.5, 2.0) * 1e9)
        yield t
        self.close(t)


class SilencedPoller:
    """Wraps a poller of the PLC in listen-only mode: while silent, each cycle's first request gets no answer.

    The client (HMI or historian) sends its usual first read, the PLC's TCP stack ACKs it, and the client gives up
    on the cycle at its response timeout and tries again a period later. These unanswered requests are labelled:
    they are what a defender sees of the outage. Outside the silent period the poller runs as usual.
    """

    def __init__(self, poller: Poller, state: ListenOnly, log: AttackLog, rng: random.Random) -> None:
        self.poller, self.state, self.log, self.rng = poller, state, log, rng

    def step(self, ts_ns: int) -> int | None:
        poller = self.poller
        if not self.state.silent(ts_ns):
            return poller.step(ts_ns)
        jitter = poller.opts.jitter
        nxt = ts_ns + int(poller.period_ns * (1 + self.rng.uniform(-jitter, jitter)))
        if poller.conn is None:  # between a disconnect and its reconnect: wait for the outage to end
            return nxt
        request, _ = poller.send_unanswered(ts_ns, int(self.rng.uniform(1, 40) * _MS))
        self.log.mark(request)
        return nxt
