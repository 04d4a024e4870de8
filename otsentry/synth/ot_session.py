"""``OtSession``: one master's TCP connection to an OT device (DNP3, IEC 104, S7, EtherNet/IP), and ``Device``,
the state of the device it talks to that an attack can change (silent while it restarts, reporting disabled).

A session is normal plant traffic unless ``marked`` (an attacker's session: every frame is an attack frame);
frames of a normal session that fall inside ``affected`` (the attack's consequences: unanswered polls while the
device restarts) are marked too. Sessions draw only from their own RNG, never from the Modbus plant's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

from otsentry.synth.actor import TcpClientActor
from otsentry.synth.plant import Host
from otsentry.synth.sim import FLOW_TCP, Sim, Tag
from otsentry.synth.tcp import Frame
from otsentry.synth.truth import AttackLog

__all__ = ["Device", "OtSession"]

_MS = 1_000_000


@dataclass
class Device:
    """An OT device (outstation, RTU, PLC) as the sessions to it see it."""

    host: Host
    port: int
    silent_from_ns: int | None = None  # the device does not answer in [silent_from_ns, silent_until_ns)
    silent_until_ns: int | None = None
    reporting: bool = True  # DNP3 unsolicited responses enabled
    restarted: bool = False  # DNP3 IIN1.7 DEVICE_RESTART until the master clears it

    def silent(self, t: int) -> bool:
        return self.silent_from_ns is not None and self.silent_from_ns <= t < (self.silent_until_ns or t + 1)


class OtSession(TcpClientActor):
    """A client's connection to ``device`` (``server`` is its Host); subclasses script the dialogue."""

    client_ttl = 128  # the plant's Windows hosts
    server_ttl = 64
    client_ports = (49152, 65535)
    marked = False  # every frame is an attack frame

    def __init__(self, sim: Sim, log: AttackLog, rng: random.Random, client: Host, device: Device) -> None:
        super().__init__(sim, log, rng, client, device.host)
        self.device = device
        self.affected: tuple[int, int] | None = None  # frames in [start, end) are an attack's consequences
        self.owes_ack = False  # the device sent data the master has not acknowledged

    def emit(self, frame: Frame, tag: Tag | None = None) -> int:
        ts = frame[0]
        if self.marked or (self.affected is not None and self.affected[0] <= ts < self.affected[1]):
            self.log.mark(frame)
        self.sim.emit(frame, tag)
        return ts

    def rtt(self) -> int:
        return int(self.rng.uniform(0.2, 0.8) * _MS)

    def latency(self) -> int:
        """The device's answer time: about 3 ms, rarely over 6 (an RTU or PLC answers from its last scan)."""
        return int(min(30.0, self.rng.lognormvariate(1.2, 0.3)) * _MS)

    def connect(self, t: int) -> int:
        return self.open_connection(t, self.client, self.device.host, self.device.port, FLOW_TCP)

    def send(self, t: int, from_client: bool, payload: bytes) -> int:
        assert self.conn is not None
        self.owes_ack = not from_client
        return self.emit(self.conn.segment(t, from_client, payload))

    def exchange(self, t: int, request: bytes, answers: list[bytes] | tuple[bytes, ...]) -> int:
        """A request and the device's answer segments (or only a TCP ACK while it is silent); the last time."""
        t = self.send(t, True, request)
        if self.device.silent(t):
            assert self.conn is not None
            return self.emit(self.conn.ack(t + int(self.rng.uniform(0.1, 0.3) * _MS), False))
        for answer in answers:
            t = self.send(t + self.latency(), False, answer)
        return t

    def client_ack(self, t: int) -> int:
        """The master's delayed ACK after the device's last segment (none when the master spoke last)."""
        assert self.conn is not None
        if not self.owes_ack:
            return t
        self.owes_ack = False
        return self.emit(self.conn.ack(t + int(self.rng.uniform(20, 60) * _MS), True))

    def script(self, t: int) -> Iterator[int]:
        raise NotImplementedError
