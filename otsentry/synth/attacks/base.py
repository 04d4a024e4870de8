"""What every attacker builds on: the target, a never-seen host, reads answered from the register banks, and
``Attacker``, a client on its own Modbus/TCP connection."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable

from otsentry.synth import modbus as mb
from otsentry.synth.actor import TcpClientActor
from otsentry.synth.plant import Host, RegisterBank
from otsentry.synth.polling import Poller
from otsentry.synth.sim import FLOW_MODBUS, T_REQUEST, T_RESPONSE, Transaction

__all__ = ["ATTACKER_OUI", "Attacker", "PLC_SUPPORTED", "Target", "WINDOWS_PORTS", "attacker_host", "peek",
           "read_response"]


_MS = 1_000_000
ATTACKER_OUI = "00:0c:29"  # VMware: the typical attacker is a VM on a laptop plugged into the OT segment
WINDOWS_PORTS = (49152, 65535)  # the ephemeral ports of the plant's Windows hosts
PLC_SUPPORTED = frozenset({1, 2, 3, 4, 5, 6, 8, 15, 16, 43})  # what the simulated PLCs answer without ILLEGAL_FUNCTION


@dataclass(frozen=True)
class Target:
    """The PLC (one unit) under attack, taken from the HMI poller that normally talks to it."""

    plc: Host
    unit: int
    bank: RegisterBank
    device_id: dict[int, str]
    nominal: list[int]  # the unit's setpoints as configured (centre of the HMI's write band)

    @classmethod
    def of(cls, poller: Poller) -> "Target":
        unit = poller.units[0]
        return cls(poller.plc, unit, poller.banks[unit], poller.device_id, poller.nominal[unit])


def attacker_host(rng: random.Random, taken: Iterable[str]) -> Host:
    """A host never seen on the segment: a free address in the control-room subnet, a VM's MAC."""
    used = set(taken)
    while True:
        ip = f"10.10.1.{rng.randrange(100, 250)}"
        if ip not in used:
            return Host("attacker", ip, ATTACKER_OUI + ":" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3)))


def peek(bank: RegisterBank, fc: int, address: int, quantity: int) -> bytes:
    """Read data as of the PLC's last scan, without advancing the process (which would draw the plant's RNG)."""
    if fc == mb.READ_HOLDING_REGISTERS:
        return bytes(bank.holding[2 * address: 2 * (address + quantity)])
    if fc == mb.READ_INPUT_REGISTERS:
        return bytes(bank.inputs[2 * address: 2 * (address + quantity)])
    return mb.pack_bits((bank.coils if fc == mb.READ_COILS else bank.discrete)[address: address + quantity])


def read_response(bank: RegisterBank, fc: int, address: int, quantity: int) -> bytes:
    data = peek(bank, fc, address, quantity)
    if fc >= mb.READ_HOLDING_REGISTERS:
        return mb.read_registers_response(fc, data)
    return mb.read_bits_response(fc, data)


class Attacker(TcpClientActor):
    """A client on a new host with its own Modbus/TCP connection to the target; subclasses script what it sends
    (a generator of step times: a flood is emitted a transaction at a time)."""

    client_ttl = 64  # a Linux VM; the plant's own Windows hosts (historian, engineering station) use 128
    client_ports = (32768, 61000)  # Linux's ephemeral range; Windows uses 49152-65535
    server_ttl = 30  # the single-unit PLCs' (a serial gateway answers with 64)

    tid = 0  # the last transaction id sent

    @property
    def host(self) -> Host:
        """The attacker's host (the client)."""
        return self.client

    @property
    def target(self) -> Target:
        """The PLC unit under attack (the server)."""
        return self.server

    # -- building blocks ----------------------------------------------------------------------------------------

    def rtt(self) -> int:
        return int(self.rng.uniform(0.1, 0.6) * _MS)

    def connect(self, t: int) -> int:
        return self.open_connection(t, self.host, self.target.plc, 502, FLOW_MODBUS, server_window=2048)

    def latency(self, load: float = 0.0) -> int:
        """The PLC's answer time (same shape as the pollers'), ``load`` times slower when it is busy."""
        return int(min(20.0, self.rng.lognormvariate(0.7, 0.4)) * (1.0 + load) * _MS)

    def transact(self, t: int, request: bytes, response: bytes, exception_code: int = 0, load: float = 0.0,
                 address: int | None = None, quantity: int | None = None, unit: int | None = None,
                 latency_ns: int | None = None) -> int:
        """One request and its response on the attacker's connection; returns the response's time.

        ``unit`` defaults to the target's, ``latency_ns`` to a draw of ``latency(load)``.
        """
        conn = self.conn
        assert conn is not None
        self.tid = (self.tid + 1) & 0xFFFF
        fc, unit = request[0], self.target.unit if unit is None else unit
        txn = self._txn(t, unit, fc, exception_code, address, quantity)
        self.emit(conn.segment(t, True, mb.adu(self.tid, unit, request)), ((T_REQUEST, fc, txn),))
        t += self.latency(load) if latency_ns is None else latency_ns
        return self.emit(conn.segment(t, False, mb.adu(self.tid, unit, response)),
                         ((T_RESPONSE, fc, exception_code, txn),))

    def request_only(self, t: int, request: bytes, ack_delay_ns: int, unit: int | None = None,
                     address: int | None = None, quantity: int | None = None) -> int:
        """A request that gets no Modbus answer: the server's TCP stack only ACKs it. Returns the ACK's time."""
        conn = self.conn
        assert conn is not None
        self.tid = (self.tid + 1) & 0xFFFF
        fc, unit = request[0], self.target.unit if unit is None else unit
        txn = self._txn(t, unit, fc, 0, address, quantity)
        self.emit(conn.segment(t, True, mb.adu(self.tid, unit, request)), ((T_REQUEST, fc, txn),))
        return self.emit(conn.ack(t + ack_delay_ns, False))

    def _txn(self, t: int, unit: int, fc: int, exception_code: int, address: int | None,
             quantity: int | None) -> Transaction | None:
        if self.sim.transactions is None:
            return None
        conn = self.conn
        assert conn is not None
        txn = Transaction(t, conn.client.ip, conn.client.port, conn.server.ip, conn.server.port, unit, self.tid,
                          fc, exception_code or None, address, quantity)
        self.sim.transactions.append(txn)
        return txn
