"""Attacks on the substation, the crane and the yard: each is an OT session of its own whose every frame is an
attack frame; some change the device (a restart silences it, disabling unsolicited stops its reports), and the
normal session's frames while it is silent are marked as the attack's consequences.
"""

from __future__ import annotations

import struct
from typing import Iterator

from otsentry.synth.crane import EnipSession, S7Session, s7_item
from otsentry.synth.ics_frames import apdu_u, cip_request, s7_job, tpkt_dt
from otsentry.synth.ot_session import OtSession
from otsentry.synth.substation import CLASS_123, CROB, Dnp3Association, Iec104Session

__all__ = ["CipReset", "Dnp3ColdRestart", "Dnp3DirectOperate", "Dnp3DisableUnsolicited", "Iec104Command",
           "InterrogationFlood", "S7BlockDownload", "S7PlcStop"]

_S = 1_000_000_000
_MS = 1_000_000
RESTART_S = 20.0  # how long a restarted device does not answer


def _silence(victim: OtSession, t: int, seconds: float) -> None:
    """The device does not answer from ``t`` for ``seconds``; the victim session's frames then are consequences."""
    end = t + int(seconds * _S)
    victim.device.silent_from_ns, victim.device.silent_until_ns = t, end
    victim.affected = (t, end)
    victim.log.extend(end)


class _Dnp3Attack(OtSession):
    """A DNP3 master of the attacker's, using the SCADA's master address (outstations check it)."""

    marked = True

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.dnp3 = Dnp3Association()

    def command(self, t: int, function: int, objects: bytes = b"", answer: bytes = b"") -> int:
        request, seq = self.dnp3.request(function, objects)
        return self.exchange(t, request, [self.dnp3.response(seq, answer)])


class Dnp3ColdRestart(_Dnp3Attack):
    """COLD_RESTART from the engineering station: the outstation answers its restart time, then is silent."""

    def __init__(self, *args: object, victim: OtSession, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.victim = victim

    def script(self, t: int) -> Iterator[int]:
        t = self.connect(t) + int(self.rng.uniform(0.5, 2) * _S)
        t = self.command(t, 0x0D, answer=bytes([52, 2, 0x07, 1]) + struct.pack("<H", int(RESTART_S * 1000)))
        _silence(self.victim, t + _MS, RESTART_S)
        self.device.restarted = True
        yield t + 2 * _MS
        self.close(t + 5 * _MS)


class Dnp3DisableUnsolicited(_Dnp3Attack):
    """DISABLE_UNSOLICITED for classes 1-3 from the (compromised) SCADA host: the RTU stops reporting events."""

    def script(self, t: int) -> Iterator[int]:
        t = self.connect(t) + int(self.rng.uniform(0.2, 1) * _S)
        t = self.command(t, 0x15, CLASS_123)
        self.device.reporting = False
        yield t + _MS
        self.close(t + int(self.rng.uniform(0.2, 1) * _S))


class Dnp3DirectOperate(_Dnp3Attack):
    """DIRECT_OPERATE of every breaker (trip: latch off) from a never-seen host, two seconds apart."""

    client_ttl = 64
    client_ports = (32768, 61000)

    def script(self, t: int) -> Iterator[int]:
        t = self.connect(t) + int(self.rng.uniform(1, 3) * _S)
        for index in range(4):
            crob = CROB(index, 0x04)
            t = self.command(t, 0x05, crob, crob) + int(self.rng.uniform(1.5, 2.5) * _S)
            yield t
        self.close(t)


class Iec104Command(Iec104Session):
    """A single command (C_SC_NA_1, select then execute) from a never-seen controlling station."""

    marked = True
    client_ttl = 64
    client_ports = (32768, 61000)

    def script(self, t: int) -> Iterator[int]:
        t = self.start(t) + int(self.rng.uniform(0.5, 2) * _S)
        for value in (0x81, 0x01):  # select ON, execute ON
            t = self.command(t, 45, 3101, value) + int(self.rng.uniform(0.3, 1) * _S)
            yield t
        t = self.confirm(t)
        self.close(t + int(self.rng.uniform(0.5, 2) * _S))


class InterrogationFlood(Iec104Session):
    """General interrogations back to back for ``duration_s`` from the SCADA's own address, on a new connection."""

    marked = True

    def __init__(self, *args: object, duration_s: float = 60.0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.duration_ns = int(duration_s * _S)

    def script(self, t: int) -> Iterator[int]:
        values = [round(self.rng.uniform(10, 400), 2) for _ in range(12)]
        t = self.start(t) + 10 * _MS
        end = t + self.duration_ns
        while t < end:
            t = self.interrogation(t, values) + int(self.rng.uniform(20, 60) * _MS)
            if self.unacked >= 8:
                t = self.confirm(t) + _MS
            yield t
        t = self.send(t, True, apdu_u(0x13))  # STOPDT act
        self.close(t + 5 * _MS)


class S7PlcStop(S7Session):
    """PLC STOP (P_PROGRAM) from the engineering station: the crane's program stops."""

    marked = True

    def script(self, t: int) -> Iterator[int]:
        t = self.identify(self.open(t) + 5 * _MS) + int(self.rng.uniform(1, 3) * _S)
        t = self.job(t, b"\x29\x00\x00\x00\x00\x00\x09P_PROGRAM")
        yield t + _MS
        self.close(t + int(self.rng.uniform(0.5, 2) * _S))


class S7BlockDownload(S7Session):
    """A block download of OB1 from the engineering station: request, the PLC's download-block and download-ended
    jobs answered with the block, then the PI service ``_INSE`` that activates it."""

    marked = True

    def script(self, t: int) -> Iterator[int]:
        rng = self.rng
        t = self.identify(self.open(t) + 5 * _MS) + int(rng.uniform(1, 3) * _S)
        name = b"_0800001P"
        head = b"\x00\x01\x00\x00\x00\x00\x00" + bytes([len(name)]) + name
        t = self.job(t, b"\x1a" + head + b"\x0d1000124000094", ack_params=b"\x1a")
        block = bytes(rng.randrange(256) for _ in range(124))
        for function, data in ((0x1B, struct.pack(">H", len(block)) + b"\x00\xfb" + block), (0x1C, b"")):
            self.ref = (self.ref + 1) & 0xFFFF  # the PLC's job to the engineering station, and its answer
            t = self.send(t + self.latency(), False, tpkt_dt(s7_job(bytes([function]) + head, ref=self.ref)))
            t = self.send(t + int(rng.uniform(1, 5) * _MS), True,
                          tpkt_dt(s7_job(bytes([function, 0]), data, ref=self.ref, rosctr=3)))
            yield t
        t = self.job(t + 20 * _MS, b"\x28\x00\x00\x00\x00\x00\x00\xfd\x00\x0a\x01\x000800001P\x05_INSE",
                     ack_params=b"\x28")
        t = self.job(t + 20 * _MS, b"\x05\x01" + s7_item(20, 0, 2), b"\x00\x04\x00\x10\x00\x01", ack_data=b"\xff")
        yield t + _MS
        self.close(t + int(rng.uniform(0.5, 2) * _S))


class CipReset(EnipSession):
    """CIP Reset of the yard PLC's Identity object from a never-seen host: the PLC restarts and is silent."""

    marked = True
    client_ttl = 64
    client_ports = (32768, 61000)

    def __init__(self, *args: object, victim: OtSession, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.victim = victim

    def script(self, t: int) -> Iterator[int]:
        t = self.open(t) + int(self.rng.uniform(0.5, 2) * _S)
        t = self.cip(t, cip_request(0x05, b"\x20\x01\x24\x01"), b"\x85\x00\x00\x00")
        _silence(self.victim, t + _MS, RESTART_S / 2)
        yield t + _MS
        self.close(t + 2 * _MS)
