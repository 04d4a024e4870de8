"""The substation's masters: a DNP3 master polling an outstation (RTU), an IEC 104 controlling station.

Their normal traffic is what a SCADA front end sends: DNP3 integrity poll at connect, class 1/2/3 event polls
every couple of seconds, unsolicited responses confirmed, a select-before-operate of a breaker every few minutes;
IEC 104 STARTDT, general interrogation at connect and every five minutes, spontaneous measurements confirmed by
S-frames every 8 I-frames, a double command now and then. No clock set, restart or disable: those are attacks.
The building blocks (``Dnp3Association``, ``Iec104Session.i_frame``) are the attacks' too.
"""

from __future__ import annotations

import struct
from typing import Iterator

from otsentry.synth.ics_frames import apdu_i, apdu_s, apdu_u, dnp3_app, dnp3_frames
from otsentry.synth.ot_session import OtSession

__all__ = ["CLASS_0123", "CLASS_123", "CROB", "Dnp3Association", "Dnp3Master", "IEC104_CA", "Iec104Session",
           "Iec104Station", "float_points"]

_S = 1_000_000_000
_MS = 1_000_000
CLASS_123 = bytes([60, 2, 6, 60, 3, 6, 60, 4, 6])
CLASS_0123 = CLASS_123 + bytes([60, 1, 6])
DEVICE_RESTART = 0x8000  # IIN1.7
IEC104_CA = 7  # the RTU's common address


def CROB(index: int, code: int, status: int = 0) -> bytes:
    """One g12v1 control relay output block (qualifier 0x28: a 2-byte count, 2-byte index)."""
    return bytes([12, 1, 0x28]) + struct.pack("<HH", 1, index) + struct.pack("<BBIIB", code, 1, 500, 500, status)


class Dnp3Association:
    """Link addresses and sequence numbers of one master-outstation association: builds its link frames."""

    def __init__(self, master: int = 1, outstation: int = 10) -> None:
        self.master, self.outstation = master, outstation
        self.seq = 0  # application sequence of the master's requests
        self.uns_seq = 0
        self.transport = [0, 0]  # transport sequence per direction (master, outstation)

    def _frames(self, fragment: bytes, from_master: bool) -> bytes:
        side = 0 if from_master else 1
        dst, src = (self.outstation, self.master) if from_master else (self.master, self.outstation)
        frames = dnp3_frames(fragment, dst, src, from_master, self.transport[side])
        self.transport[side] = (self.transport[side] + len(frames)) & 0x3F
        return b"".join(frames)

    def request(self, function: int, objects: bytes = b"") -> tuple[bytes, int]:
        """The master's request and its application sequence."""
        seq = self.seq
        self.seq = (self.seq + 1) & 0x0F
        return self._frames(dnp3_app(seq, function, objects), True), seq

    def response(self, seq: int, objects: bytes = b"", iin: int = 0) -> bytes:
        return self._frames(dnp3_app(seq, 0x81, objects, iin, con=bool(objects) and objects[0] in (2, 32)), False)

    def confirm(self, seq: int, uns: bool = False) -> bytes:
        return self._frames(dnp3_app(seq, 0x00, uns=uns), True)

    def unsolicited(self, objects: bytes, iin: int = 0) -> tuple[bytes, int]:
        seq = self.uns_seq
        self.uns_seq = (self.uns_seq + 1) & 0x0F
        return self._frames(dnp3_app(seq, 0x82, objects, iin, con=True, uns=True), False), seq


class Dnp3Master(OtSession):
    """The SCADA front end's DNP3 master, polling one outstation."""

    def __init__(self, *args: object, period_s: float = 2.0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.dnp3 = Dnp3Association()
        self.period_ns = int(period_s * _S)
        self.analogs = [self.rng.randrange(2000, 8000) for _ in range(8)]
        self.counters = [self.rng.randrange(10**6) for _ in range(4)]

    def static_data(self) -> bytes:
        rng = self.rng
        self.analogs = [min(9999, max(0, v + rng.randrange(-20, 21))) for v in self.analogs]
        self.counters = [c + rng.randrange(0, 5) for c in self.counters]
        return (bytes([1, 2, 0, 0, 15]) + bytes(0x81 if i in (0, 3) else 0x01 for i in range(16))
                + bytes([30, 1, 0, 0, 7]) + b"".join(struct.pack("<Bi", 1, v) for v in self.analogs)
                + bytes([20, 1, 0, 0, 3]) + b"".join(struct.pack("<BI", 1, c) for c in self.counters))

    def events(self, most: int = 3) -> bytes:
        n = self.rng.randrange(most + 1)
        if not n:
            return b""
        points = sorted(self.rng.sample(range(8), n))
        return bytes([32, 1, 0x28]) + struct.pack("<H", n) + b"".join(
            struct.pack("<HBi", i, 1, self.analogs[i]) for i in points)

    def iin(self) -> int:
        return DEVICE_RESTART if self.device.restarted else 0

    def poll(self, t: int, classes: bytes) -> int:
        request, seq = self.dnp3.request(0x01, classes)
        objects = self.static_data() if classes == CLASS_0123 else self.events()
        iin = self.iin()
        if classes == CLASS_0123:
            self.device.restarted = False  # the outstation clears DEVICE_RESTART once it has been read
        t = self.exchange(t, request, [self.dnp3.response(seq, objects, iin)])
        if objects and objects[0] == 32 and not self.device.silent(t):
            t = self.send(t + int(self.rng.uniform(1, 4) * _MS), True, self.dnp3.confirm(seq))
        return t

    def operate(self, t: int) -> int:
        """Select before operate of a breaker (latch on or off)."""
        crob = CROB(self.rng.randrange(4), self.rng.choice((0x03, 0x04)))
        for function in (0x03, 0x04):
            request, seq = self.dnp3.request(function, crob)
            t = self.exchange(t, request, [self.dnp3.response(seq, crob, self.iin())]) + int(
                self.rng.uniform(50, 200) * _MS)
        return t

    def script(self, t: int) -> Iterator[int]:
        rng = self.rng
        t = self.poll(self.connect(t) + 5 * _MS, CLASS_0123)
        next_poll, next_unsolicited = t + self.period_ns, t + int(rng.uniform(5, 20) * _S)
        next_operate = t + int(rng.uniform(60, 240) * _S)
        last = t
        while True:
            due = min(next_poll, next_unsolicited, next_operate)
            t = max(due, last + _MS)  # one action at a time: a late timer waits for the one before it
            yield t
            if due == next_unsolicited:
                last = t
                if self.device.reporting and not self.device.silent(t):
                    objects = self.events(2) or bytes([32, 1, 0x28, 1, 0, 0, 0, 1]) + struct.pack("<i", 0)
                    frames, seq = self.dnp3.unsolicited(objects, self.iin())
                    last = self.send(t, False, frames)
                    last = self.send(last + int(rng.uniform(2, 8) * _MS), True, self.dnp3.confirm(seq, uns=True))
                next_unsolicited = t + int(rng.uniform(5, 20) * _S)
            elif due == next_operate:
                last = self.operate(t)
                next_operate = t + int(rng.uniform(120, 300) * _S)
            else:
                last = self.client_ack(self.poll(t, CLASS_0123 if self.device.restarted else CLASS_123))
                next_poll = t + int(self.period_ns * rng.uniform(0.95, 1.05))


def float_points(rng_values: list[float], points: list[int], base: int = 1001) -> bytes:
    """M_ME_NC_1 objects (short floats with a quality byte) for ``points``, IOAs from ``base``."""
    return b"".join(struct.pack("<I", base + i)[:3] + struct.pack("<fB", rng_values[i], 0) for i in points)


class Iec104Session(OtSession):
    """An IEC 104 connection: I-frame send/receive counters and the building blocks of its APDUs."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.sent = [0, 0]  # I-frames sent by the client, by the server
        self.unacked = 0  # server I-frames the client has not confirmed yet

    def i_frame(self, from_client: bool, type_id: int, cause: int, objects: bytes, count: int = 1) -> bytes:
        me, peer = (0, 1) if from_client else (1, 0)
        apdu = apdu_i(type_id, cause, IEC104_CA, objects, count, tx=self.sent[me], rx=self.sent[peer])
        self.sent[me] += 1
        if not from_client:
            self.unacked += 1
        return apdu

    def start(self, t: int) -> int:
        return self.exchange(self.connect(t) + 3 * _MS, apdu_u(0x07), [apdu_u(0x0B)])

    def confirm(self, t: int) -> int:
        """The client's S-frame for what it received."""
        self.unacked = 0
        return self.send(t, True, apdu_s(self.sent[1]))

    def interrogation(self, t: int, values: list[float]) -> int:
        """General interrogation: activation, confirmation, the station's points, termination."""
        gi = struct.pack("<I", 0)[:3] + b"\x14"
        request = self.i_frame(True, 100, 6, gi)
        answers = [self.i_frame(False, 100, 7, gi),
                   self.i_frame(False, 13, 20, float_points(values, list(range(len(values)))), len(values)),
                   self.i_frame(False, 1, 20, b"".join(struct.pack("<I", 2001 + i)[:3] + bytes([i & 1])
                                                       for i in range(8)), 8),
                   self.i_frame(False, 100, 10, gi)]
        return self.exchange(t, request, answers)

    def command(self, t: int, type_id: int, ioa: int, value: int) -> int:
        """A command's activation, confirmation and termination."""
        obj = struct.pack("<I", ioa)[:3] + bytes([value])
        return self.exchange(t, self.i_frame(True, type_id, 6, obj),
                             [self.i_frame(False, type_id, 7, obj), self.i_frame(False, type_id, 10, obj)])


class Iec104Station(Iec104Session):
    """The SCADA front end's IEC 104 controlling station for one RTU."""

    def script(self, t: int) -> Iterator[int]:
        rng = self.rng
        values = [round(rng.uniform(10, 400), 2) for _ in range(12)]
        t = self.interrogation(self.start(t) + 5 * _MS, values)
        t = self.confirm(t + int(rng.uniform(5, 20) * _MS))
        next_spont, next_gi = t + int(rng.uniform(1.5, 4) * _S), t + 300 * _S
        next_command = t + int(rng.uniform(90, 240) * _S)
        last = t
        while True:
            due = min(next_spont, next_gi, next_command)
            t = max(due, last + _MS)
            yield t
            if due == next_gi:
                last = self.interrogation(t, values)
                next_gi = t + int(rng.uniform(295, 305) * _S)
            elif due == next_command:
                last = self.command(t, 46, 3001 + rng.randrange(4), rng.choice((1, 2)))
                next_command = t + int(rng.uniform(120, 300) * _S)
            else:
                points = sorted(rng.sample(range(len(values)), rng.randrange(1, 4)))
                for i in points:
                    values[i] = round(values[i] * rng.uniform(0.98, 1.02), 2)
                last = self.send(t, False, self.i_frame(False, 13, 3, float_points(values, points), len(points)))
                next_spont = t + int(rng.uniform(1.5, 4) * _S)
            if self.unacked >= 8:
                last = self.confirm(last + int(rng.uniform(5, 20) * _MS))
