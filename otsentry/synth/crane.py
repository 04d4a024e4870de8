"""The crane and yard PLCs' clients: an S7 HMI reading the crane PLC, an EtherNet/IP HMI reading the yard PLC.

Normal traffic: the S7 HMI connects (COTP, setup communication, an SZL read of the CPU's order number), reads
three data-block items every half second and writes a hoist-speed setpoint every few minutes; the EtherNet/IP HMI
asks ListIdentity, registers a session and reads two tags every second (Read Tag), writing one now and then.
The building blocks (``S7Session.job``, ``EnipSession.cip``) are the attacks' too.
"""

from __future__ import annotations

import struct
from typing import Iterator

from otsentry.synth.ics_frames import cip_request, cip_rr, cotp_connect, enip, enip_identity, s7_job, s7_szl, tpkt_dt
from otsentry.synth.ot_session import OtSession

__all__ = ["CRANE_ORDER_NUMBER", "EnipSession", "S7Session", "S7Hmi", "YardHmi", "s7_item", "tag_path"]

_S = 1_000_000_000
_MS = 1_000_000
CRANE_ORDER_NUMBER = "6ES7 315-2EH14-0AB0"


def s7_item(db: int, byte: int, count: int, area: int = 0x84) -> bytes:
    """An S7 ANY pointer to ``count`` bytes of data block ``db`` at ``byte``."""
    return bytes([0x12, 0x0A, 0x10, 0x02]) + struct.pack(">HHB", count, db, area) + (byte * 8).to_bytes(3, "big")


class S7Session(OtSession):
    """An ISO-on-TCP connection to an S7 PLC: COTP, setup communication, jobs with their PDU references."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.ref = self.rng.randrange(1, 0x4000)

    def job(self, t: int, params: bytes, data: bytes = b"", ack_params: bytes | None = None,
            ack_data: bytes = b"") -> int:
        """A job and its ack_data (with the job's function as parameters unless given)."""
        self.ref = (self.ref + 1) & 0xFFFF
        request = tpkt_dt(s7_job(params, data, ref=self.ref))
        if ack_params is None:  # read and write answer with their function and item count
            ack_params = params[:2] if params[0] in (4, 5) else params[:1]
        ack = tpkt_dt(s7_job(ack_params, ack_data, ref=self.ref, rosctr=3))
        return self.exchange(t, request, [ack])

    def open(self, t: int) -> int:
        t = self.exchange(self.connect(t) + 2 * _MS, cotp_connect(), [cotp_connect(confirm=True)])
        setup = bytes([0xF0, 0, 0, 1, 0, 1, 0x01, 0xE0])
        return self.job(t + _MS, setup, ack_params=setup)

    def identify(self, t: int) -> int:
        """SZL 0x0011 record 1: the CPU's order number (what engineering tools and HMIs read first)."""
        self.ref = (self.ref + 1) & 0xFFFF
        record = struct.pack(">H", 1) + CRANE_ORDER_NUMBER.ljust(20).encode() + struct.pack(">HHH", 0, 0x2000, 0x2000)
        return self.exchange(t, tpkt_dt(s7_szl(0x0011, self.ref)),
                             [tpkt_dt(s7_szl(0x0011, self.ref, record, len(record), 1, response=True))])


class S7Hmi(S7Session):
    """The crane HMI: three DB items every 500 ms, a hoist-speed setpoint written every few minutes."""

    def script(self, t: int) -> Iterator[int]:
        rng = self.rng
        last = self.identify(self.open(t) + 2 * _MS)
        items = (s7_item(10, 0, 8), s7_item(10, 8, 4), s7_item(11, 0, 2))
        position = [rng.randrange(1000, 30000) for _ in range(3)]
        next_write = last + int(rng.uniform(60, 240) * _S)
        while True:
            t = max(last + int(rng.uniform(480, 520) * _MS), last + _MS)
            yield t
            if t >= next_write:
                speed = rng.randrange(40, 60)
                last = self.job(t, b"\x05\x01" + s7_item(20, 4, 2), b"\x00\x04\x00\x10" + struct.pack(">H", speed),
                                ack_data=b"\xff")
                next_write = t + int(rng.uniform(120, 300) * _S)
                continue
            position = [max(0, min(65535, p + rng.randrange(-50, 51))) for p in position]
            values = [struct.pack(">HHHH", *position, 1), struct.pack(">HH", rng.randrange(100), 0), b"\x00\x01"]
            data = b"".join(b"\xff\x04" + struct.pack(">H", 8 * len(v)) + v for v in values)
            last = self.client_ack(self.job(t, bytes([0x04, len(items)]) + b"".join(items), ack_data=data))


def tag_path(name: str) -> bytes:
    """An ANSI extended symbolic segment naming a tag."""
    return bytes([0x91, len(name)]) + name.encode() + (b"\0" if len(name) % 2 else b"")


class EnipSession(OtSession):
    """An EtherNet/IP session to a Logix PLC: ListIdentity, RegisterSession, explicit messages (SendRRData)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.session = 0
        self.context = self.rng.getrandbits(64)

    def _ctx(self) -> bytes:
        self.context = (self.context + 1) & (2**64 - 1)
        return struct.pack("<Q", self.context)

    def open(self, t: int) -> int:
        t = self.connect(t) + 2 * _MS
        ip = bytes(int(x) for x in self.device.host.ip.split("."))
        ctx = self._ctx()
        identity = enip_identity(1, 0x0E, 0x36, (20, 11), 0x00C0FFEE ^ ip[3], "1756-L71/B LOGIX5571", ip)
        t = self.exchange(t, enip(0x0063, session=0, context=ctx), [enip(0x0063, identity, session=0, context=ctx)])
        handle = 0x1000_0000 | self.rng.getrandbits(24)
        ctx = self._ctx()
        body = struct.pack("<HH", 1, 0)
        t = self.exchange(t + _MS, enip(0x0065, body, session=0, context=ctx),
                          [enip(0x0065, body, session=handle, context=ctx)])
        self.session = handle
        return t

    def cip(self, t: int, request: bytes, reply: bytes) -> int:
        ctx = self._ctx()
        return self.exchange(t, enip(0x006F, cip_rr(request), self.session, ctx),
                             [enip(0x006F, cip_rr(reply), self.session, ctx)])


class YardHmi(EnipSession):
    """The yard HMI: reads two tags every second, writes a conveyor speed every few minutes."""

    def script(self, t: int) -> Iterator[int]:
        rng = self.rng
        last = self.open(t)
        level = rng.randrange(100, 900)
        next_write = last + int(rng.uniform(60, 240) * _S)
        while True:
            t = last + int(rng.uniform(0.95, 1.05) * _S)
            yield t
            if t >= next_write:
                value = struct.pack("<HHi", 0xC4, 1, rng.randrange(20, 80))
                last = self.cip(t, cip_request(0x4D, tag_path("Conveyor_Speed"), value), b"\xcd\x00\x00\x00")
                next_write = t + int(rng.uniform(120, 300) * _S)
                continue
            last = t - _MS
            for tag in ("Reefer_Temp", "Gate_Count"):
                level = max(0, level + rng.randrange(-5, 6))
                last = self.cip(last + _MS, cip_request(0x4C, tag_path(tag), b"\x01\x00"),
                                b"\xcc\x00\x00\x00" + struct.pack("<Hi", 0xC4, level))
            last = self.client_ack(last)
