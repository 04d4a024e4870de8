"""Writes an operator did not make: from a new host, a setpoint far out of band, a covert channel in values."""

from __future__ import annotations

import random
from typing import Iterator

from otsentry.synth import modbus as mb
from otsentry.synth.attacks.base import Attacker, Target, read_response
from otsentry.synth.plant import SETPOINTS
from otsentry.synth.polling import Poller
from otsentry.synth.truth import AttackLog

__all__ = ["COVERT_MESSAGE", "COVERT_REGISTER", "CovertChannel", "SetpointChange", "WriteFromNewHost", "covert_value"]


_MS = 1_000_000


class WriteFromNewHost(Attacker):
    """A never-seen host reads the setpoints, then writes some (FC 16 and FC 6), seconds apart, and leaves.

    The values are inside the HMI's normal band on purpose: the only anomaly is who writes, which isolates the
    new-talker / new-pair / write-from-new-client detections from the value checks (``setpoint_change``).
    """

    def script(self, t: int) -> Iterator[int]:
        rng, target = self.rng, self.target
        t = self.connect(t) + int(rng.uniform(50, 300) * _MS)
        t = self.transact(t, mb.read_request(mb.READ_HOLDING_REGISTERS, SETPOINTS, 20),
                          read_response(target.bank, mb.READ_HOLDING_REGISTERS, SETPOINTS, 20),
                          address=SETPOINTS, quantity=20)
        t += int(rng.uniform(0.5, 2.0) * 1e9)  # the operator of the tool looks at what came back
        yield t
        for i in range(4):
            if i % 2 == 0:  # FC 16 on the block the HMI writes with FC 16
                address, quantity = SETPOINTS + 10, 3
                values = [self._value(address + j) for j in range(quantity)]
                request = mb.write_multiple_registers_request(address, values)
                response = mb.write_multiple_response(mb.WRITE_MULTIPLE_REGISTERS, address, quantity)
            else:
                address, quantity = SETPOINTS + rng.randrange(10), 1
                values = [self._value(address)]
                request = response = mb.write_single_register(address, values[0])
            t = self.transact(t, request, response, address=address, quantity=quantity)
            target.bank.write_registers(address, values)
            t += int(rng.uniform(1.0, 4.0) * 1e9)
            yield t
        self.close(t)

    def _value(self, address: int) -> int:
        nominal = self.target.nominal[address - SETPOINTS]
        width = max(1, nominal // 20)
        return nominal + self.rng.randint(-width, width)


class SetpointChange:
    """Wraps the HMI's poller of the target: on its usual connection, the HMI writes a never-seen setpoint.

    The write (FC 6, as the HMI writes single setpoints) goes out at the poller's first cycle at or after
    ``at_ns``; ``restore_after_s`` later the operator puts the previous value back with an ordinary write.
    The attack interval covers both, because in between every read of the setpoints returns the bad value.
    Only the malicious request and its response are attack frames.
    """

    def __init__(self, poller: Poller, log: AttackLog, rng: random.Random, at_ns: int, value: int = 9999,
                 restore_after_s: float = 60.0) -> None:
        self.poller, self.log, self.rng, self.at_ns, self.value = poller, log, rng, at_ns, value
        self.restore_after_ns = int(restore_after_s * 1e9)
        self.target = Target.of(poller)
        self.address = SETPOINTS + rng.randrange(10)
        self.previous: int | None = None
        self.written_ns: int | None = None
        self.restored = False

    def step(self, ts_ns: int) -> int | None:
        t = ts_ns
        poller, bank, unit = self.poller, self.target.bank, self.target.unit
        if poller.conn is not None and not self.restored:
            if self.written_ns is None and t >= self.at_ns:
                self.previous = bank.register(self.address)
                pdu = mb.write_single_register(self.address, self.value)
                frames = poller.inject(t, unit, pdu, pdu, self._latency())
                for frame in frames:
                    self.log.mark(frame)
                bank.write_registers(self.address, [self.value])
                self.written_ns = frames[0][0]
                t = frames[-1][0] + _MS
            elif self.written_ns is not None and t >= self.written_ns + self.restore_after_ns:
                assert self.previous is not None
                pdu = mb.write_single_register(self.address, self.previous)
                frames = poller.inject(t, unit, pdu, pdu, self._latency())
                bank.write_registers(self.address, [self.previous])
                self.log.extend(frames[-1][0])
                self.restored = True
                t = frames[-1][0] + _MS
        return poller.step(t)

    def _latency(self) -> int:
        return int(min(20.0, self.rng.lognormvariate(0.7, 0.4)) * _MS)


COVERT_REGISTER = SETPOINTS + 19  # a spare setpoint slot: read by the HMI and the historian, never written
COVERT_MESSAGE = b"vpn=10.10.9.1;user=svc_ops;pw=Quay-Crane-7"


def covert_value(byte: int) -> int:
    """The register value that carries one byte: 256 + the byte, inside the setpoints' usual 100-900."""
    return 256 + byte


class CovertChannel:
    """Wraps the HMI's poller of the target: on its usual connection it writes one byte of a message at a time.

    A FC 6 write to ``COVERT_REGISTER`` every 20-30 s for ``duration_s``, each value 256 + the next byte of
    ``message`` (printable ASCII, so 288-382: ordinary setpoint values). The register is inside the block the HMI
    and the historian read, so the data lands in the historian's database, where whoever has access to it (or its
    replica on the corporate network) reads it back. Each write (request and response) is an attack frame.
    """

    def __init__(self, poller: Poller, log: AttackLog, rng: random.Random, at_ns: int, duration_s: float = 600.0,
                 message: bytes = COVERT_MESSAGE) -> None:
        self.poller, self.log, self.rng = poller, log, rng
        self.target = Target.of(poller)
        self.next_ns, self.end_ns = at_ns, at_ns + int(duration_s * 1e9)
        self.message = message
        self.sent: list[int] = []  # values written

    def step(self, ts_ns: int) -> int | None:
        t = ts_ns
        poller = self.poller
        if poller.conn is not None and self.next_ns <= t < self.end_ns:
            value = covert_value(self.message[len(self.sent) % len(self.message)])
            pdu = mb.write_single_register(COVERT_REGISTER, value)
            frames = poller.inject(t, self.target.unit, pdu, pdu,
                                   int(min(20.0, self.rng.lognormvariate(0.7, 0.4)) * _MS))
            for frame in frames:
                self.log.mark(frame)
            self.target.bank.write_registers(COVERT_REGISTER, [value])
            self.sent.append(value)
            self.next_ns = t + int(self.rng.uniform(20, 30) * 1e9)
            t = frames[-1][0] + _MS
        return poller.step(t)
