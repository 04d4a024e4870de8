"""Attackers injected into the plant simulation, and the bookkeeping that labels their frames.

Each attacker is one more actor of ``Sim``: it emits frames with the usual ground-truth tags, and every frame it
sends or that answers it is marked in an ``AttackLog``. The frame number is only known when the frame is
written (the simulation writes frames from a time-ordered heap), so ``LabellingWriter`` resolves marked frames by
identity as it writes them: no per-frame state is kept for normal traffic, and memory stays bounded.

Attackers draw from their own RNG, never from the plant's, and answer reads from the register banks without
advancing the process simulation (which draws from the plant's RNG). So a scenario's traffic is byte-identical to
the "normal" scenario of the same seed until the attack starts, and for the attacks that change nothing in the
plant (sweeps, flood) the normal frames stay identical after it too: the difference between the two captures is
exactly the attack.

Besides attackers with their own connection, three other shapes: wrappers of a plant poller that act on its
connection (``SetpointChange``, ``CovertChannel``, ``SilencedPoller`` for a PLC in listen-only mode), and
``polling.ResponseTamper`` implementations that replace a poller's responses on the way (``ReplayOldResponses``
and ``FreezeResponses``, men in the middle; ``ExceptionStorm``, a failing PLC). The men in the middle keep every
response's length, so their captures differ from "normal" only in the forged responses' bytes.
"""

from __future__ import annotations

import os
import random
from array import array
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

from otsentry.synth import modbus as mb
from otsentry.synth.plant import HOLDING_REGISTERS, SETPOINTS, Host, RegisterBank
from otsentry.synth.polling import Poller
from otsentry.synth.pcapwriter import LINKTYPE_ETHERNET, PcapWriter
from otsentry.synth.sim import FLOW_MODBUS, T_FLOW, T_REQUEST, T_RESPONSE, Sim, Tag, Transaction
from otsentry.synth.tcp import Endpoint, Frame, TcpConnection

__all__ = ["ATTACKER_OUI", "AddressSweep", "AttackLog", "Attacker", "COVERT_MESSAGE", "COVERT_REGISTER",
    "CovertChannel", "DiagnosticsRestart", "ExceptionStorm", "FreezeResponses", "FunctionCodeSweep",
    "GATEWAY_SERIAL_UNITS", "LabellingWriter", "ListenOnly", "PLC_SUPPORTED", "QueryFlood", "ReplayOldResponses",
    "SetpointChange", "SilencedPoller", "Target", "UnitIdSweep", "WriteFromNewHost", "attacker_host", "covert_value",
    "peek", "read_response", "sweep_pdus"]

_MS = 1_000_000
ATTACKER_OUI = "00:0c:29"  # VMware: the typical attacker is a VM on a laptop plugged into the OT segment
PLC_SUPPORTED = frozenset({1, 2, 3, 4, 5, 6, 8, 15, 16, 43})  # what the simulated PLCs answer without ILLEGAL_FUNCTION


class AttackLog:
    """The attack's frames: marked when emitted, numbered when written, plus the attack's time span."""

    def __init__(self) -> None:
        self._pending: dict[int, bytes] = {}  # id(frame bytes) -> the bytes, held so the id cannot be reused
        self.frames = array("L")  # 1-based frame numbers, ascending
        self.start_ns: int | None = None
        self.end_ns: int | None = None

    def mark(self, frame: Frame) -> None:
        """Label a frame that is about to be emitted (or was just emitted) as part of the attack."""
        self._pending[id(frame[1])] = frame[1]
        self.extend(frame[0])

    def extend(self, ts_ns: int) -> None:
        """Widen the attack interval to include ``ts_ns`` (also for consequences that are not attack frames)."""
        self.start_ns = ts_ns if self.start_ns is None else min(self.start_ns, ts_ns)
        self.end_ns = ts_ns if self.end_ns is None else max(self.end_ns, ts_ns)

    def resolve(self, first_number: int, packets: list[tuple[int, bytes]]) -> None:
        """Record the numbers of marked frames among ``packets``, whose first is frame ``first_number``."""
        pending = self._pending
        if not pending:
            return
        for i, (_, raw) in enumerate(packets):
            if id(raw) in pending:  # the held reference makes the id unique among live objects
                del pending[id(raw)]
                self.frames.append(first_number + i)

    @property
    def unresolved(self) -> int:
        """Marked frames never written (the capture ended first): should be 0."""
        return len(self._pending)


class LabellingWriter(PcapWriter):
    """A ``PcapWriter`` that tells an ``AttackLog`` the frame number of each marked frame it writes."""

    def __init__(self, fileobj_or_path: str | os.PathLike[str] | BinaryIO, log: AttackLog,
                 linktype: int = LINKTYPE_ETHERNET, nanosecond: bool = False) -> None:
        super().__init__(fileobj_or_path, linktype=linktype, nanosecond=nanosecond)
        self.log = log

    def write(self, ts_ns: int, frame: bytes, wirelen: int | None = None) -> None:
        self.log.resolve(self.packets + 1, [(ts_ns, frame)])
        super().write(ts_ns, frame, wirelen)

    def write_many(self, packets: Iterable[tuple[int, bytes]]) -> int:
        batch = packets if isinstance(packets, list) else list(packets)
        self.log.resolve(self.packets + 1, batch)
        return super().write_many(batch)


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


class Attacker:
    """A client on a new host with its own TCP connection to the target; subclasses script what it sends.

    ``step`` drives a generator (``script``) that yields the time of its next action, so a long attack (a
    flood) is emitted a transaction at a time and never piles up frames in the simulation's heap.
    """

    client_ttl = 64  # a Linux VM; the plant's own Windows hosts (historian, engineering station) use 128
    client_ports = (32768, 61000)  # Linux's ephemeral range; Windows uses 49152-65535
    server_ttl = 30  # the single-unit PLCs' (a serial gateway answers with 64)

    def __init__(self, sim: Sim, log: AttackLog, rng: random.Random, host: Host, target: Target,
                 link_kind: str = "ethernet", vlans: tuple[int, ...] = ()) -> None:
        self.sim, self.log, self.rng, self.host, self.target = sim, log, rng, host, target
        self.link_kind, self.vlans = link_kind, vlans
        self.conn: TcpConnection | None = None
        self.tid = 0
        self._script: Iterator[int] | None = None

    def step(self, ts_ns: int) -> int | None:
        if self._script is None:
            self._script = self.script(ts_ns)
        return next(self._script, None)

    def script(self, t: int) -> Iterator[int]:
        raise NotImplementedError

    # -- building blocks ----------------------------------------------------------------------------------------

    def emit(self, frame: Frame, tag: Tag | None = None) -> int:
        self.log.mark(frame)
        self.sim.emit(frame, tag)
        return frame[0]

    def connect(self, t: int) -> int:
        rng = self.rng
        self.conn = TcpConnection(
            Endpoint(self.host.ip, rng.randrange(*self.client_ports), self.host.mac),
            Endpoint(self.target.plc.ip, 502, self.target.plc.mac),
            client_isn=rng.getrandbits(32), server_isn=rng.getrandbits(32), client_ttl=self.client_ttl,
            server_ttl=self.server_ttl,
            client_ip_id=rng.randrange(65536), server_ip_id=rng.randrange(65536), server_window=2048,
            link_kind=self.link_kind, vlans=self.vlans,
        )
        frames = self.conn.handshake(t, int(rng.uniform(0.1, 0.6) * _MS))
        self.emit(frames[0], ((T_FLOW, FLOW_MODBUS, False),))
        for frame in frames[1:]:
            self.emit(frame)
        return frames[-1][0]

    def close(self, t: int) -> int:
        assert self.conn is not None
        last = t
        for frame in self.conn.close(t, int(self.rng.uniform(0.1, 0.6) * _MS), from_client=True):
            last = self.emit(frame)
        self.conn = None
        return last

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


def sweep_pdus(fc: int, target: Target) -> tuple[bytes, bytes, int]:
    """Probe request PDU for one function code, and the PLC's answer: (request, response, exception code).

    Requests are well formed for the codes the specification defines (so Wireshark dissects them cleanly);
    writes aim at an address the PLC does not have, the way careful scanners avoid side effects, so a supported
    write code answers ILLEGAL_DATA_ADDRESS and an unsupported one ILLEGAL_FUNCTION. Codes without a public
    format carry no data.
    """
    bank = target.bank
    if fc in (mb.READ_COILS, mb.READ_DISCRETE_INPUTS):
        return mb.read_request(fc, 0, 8), read_response(bank, fc, 0, 8), 0
    if fc in (mb.READ_HOLDING_REGISTERS, mb.READ_INPUT_REGISTERS):
        return mb.read_request(fc, 0, 1), read_response(bank, fc, 0, 1), 0
    if fc == mb.DIAGNOSTICS:  # return query data: harmless, echoed
        request = mb.diagnostics(0, b"\x12\x34")
        return request, request, 0
    if fc == mb.ENCAPSULATED_INTERFACE:  # read device identification: make and model, what recon is after
        return mb.read_device_id_request(1, 0), mb.read_device_id_response(target.device_id), 0
    requests = {
        mb.WRITE_SINGLE_COIL: mb.write_single_coil(0xFFF0, False),
        mb.WRITE_SINGLE_REGISTER: mb.write_single_register(0xFFF0, 0),
        mb.WRITE_MULTIPLE_COILS: mb.write_multiple_coils_request(0xFFF0, [0]),
        mb.WRITE_MULTIPLE_REGISTERS: mb.write_multiple_registers_request(0xFFF0, [0]),
        20: bytes.fromhex("14 07 06 0001 0000 0001"),  # read file record: file 1, record 0, 1 register
        21: bytes.fromhex("15 09 06 0001 0000 0001 0000"),  # write file record
        22: bytes.fromhex("16 fff0 ffff 0000"),  # mask write register
        23: bytes.fromhex("17 0000 0001 fff0 0001 02 0000"),  # read/write multiple registers
        24: bytes.fromhex("18 0000"),  # read FIFO queue
    }
    request = requests.get(fc, bytes([fc]))
    code = mb.ILLEGAL_DATA_ADDRESS if fc in PLC_SUPPORTED else mb.ILLEGAL_FUNCTION
    return request, mb.exception_response(fc, code), code


class FunctionCodeSweep(Attacker):
    """A never-seen host probes function codes 1..127 on one unit, one request each, as a scanner does."""

    def script(self, t: int) -> Iterator[int]:
        rng = self.rng
        t = self.connect(t) + int(rng.uniform(5, 30) * _MS)
        for fc in range(1, 128):
            request, response, code = sweep_pdus(fc, self.target)
            t = self.transact(t, request, response, code)
            t += int(rng.uniform(30, 120) * _MS)
            yield t
        self.close(t)


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


# -- reconnaissance -------------------------------------------------------------------------------------------------

GATEWAY_SERIAL_UNITS = range(1, 32)  # unit ids a serial gateway routes to its RS-485 line (present or not)
_WINDOWS_PORTS = (49152, 65535)


class UnitIdSweep(Attacker):
    """A never-seen host reads one holding register (FC 3) from unit ids 0..247 of one IP: who is behind it?

    The target is a serial gateway (its units share the IP): the units that exist answer after the serial line's
    delay; unit 0 (broadcast on a serial line) gets no answer at all, the scanner waits out its timeout; units the
    gateway routes to its serial line but nobody answers on get GATEWAY_TARGET_FAILED (0x0B) after the gateway's
    own serial timeout; unit ids it has no route for get GATEWAY_PATH_UNAVAILABLE (0x0A) at once.
    """

    server_ttl = 64  # the gateway's

    def __init__(self, sim: Sim, log: AttackLog, rng: random.Random, host: Host, target: Target,
                 banks: dict[int, RegisterBank], link_kind: str = "ethernet", vlans: tuple[int, ...] = ()) -> None:
        super().__init__(sim, log, rng, host, target, link_kind, vlans)
        self.banks = banks

    def script(self, t: int) -> Iterator[int]:
        rng = self.rng
        t = self.connect(t) + int(rng.uniform(5, 30) * _MS)
        request = mb.read_request(mb.READ_HOLDING_REGISTERS, 0, 1)
        for unit in range(0, 248):
            if unit == 0:  # broadcast: the gateway forwards it and answers nothing; the scanner times out
                t = self.request_only(t, request, int(rng.uniform(1, 40) * _MS), unit, 0, 1)
                t += int(rng.uniform(0.9, 1.0) * 1e9)
            elif unit in self.banks:
                latency = int((rng.uniform(12, 30) + 0.25) * _MS)
                t = self.transact(t, request, read_response(self.banks[unit], mb.READ_HOLDING_REGISTERS, 0, 1),
                                  address=0, quantity=1, unit=unit, latency_ns=latency)
            elif unit in GATEWAY_SERIAL_UNITS:  # routed to the serial line, nobody there: the gateway times out
                code = mb.GATEWAY_TARGET_FAILED
                t = self.transact(t, request, mb.exception_response(mb.READ_HOLDING_REGISTERS, code), code,
                                  address=0, quantity=1, unit=unit, latency_ns=int(rng.uniform(250, 300) * _MS))
            else:
                code = mb.GATEWAY_PATH_UNAVAILABLE
                t = self.transact(t, request, mb.exception_response(mb.READ_HOLDING_REGISTERS, code), code,
                                  address=0, quantity=1, unit=unit, latency_ns=int(rng.uniform(0.5, 2.0) * _MS))
            t += int(rng.uniform(20, 60) * _MS)
            yield t
        self.close(t)


class AddressSweep(Attacker):
    """Reads every holding register address (0..65535) in blocks of 125 (FC 3), on a new connection.

    The host is the plant's historian (a compromised historian: the attacker lives off a host that polls the PLC
    anyway, so no new talker or new pair gives it away). Blocks inside the PLC's 200 registers are answered; all
    others get ILLEGAL_DATA_ADDRESS. 525 requests, 20-60 ms apart: about half a minute.
    """

    client_ttl = 128
    client_ports = _WINDOWS_PORTS

    def script(self, t: int) -> Iterator[int]:
        rng, bank = self.rng, self.target.bank
        t = self.connect(t) + int(rng.uniform(5, 30) * _MS)
        for address in range(0, 65536, mb.MAX_READ_REGISTERS):
            quantity = min(mb.MAX_READ_REGISTERS, 65536 - address)
            request = mb.read_request(mb.READ_HOLDING_REGISTERS, address, quantity)
            if address + quantity <= HOLDING_REGISTERS:
                code, response = 0, read_response(bank, mb.READ_HOLDING_REGISTERS, address, quantity)
            else:
                code = mb.ILLEGAL_DATA_ADDRESS
                response = mb.exception_response(mb.READ_HOLDING_REGISTERS, code)
            t = self.transact(t, request, response, code, address=address, quantity=quantity)
            t += int(rng.uniform(20, 60) * _MS)
            yield t
        self.close(t)


# -- diagnostics: restart communications, force listen-only ----------------------------------------------------------

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
    client_ports = _WINDOWS_PORTS

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


# -- responses changed on the way (man in the middle) or by a failing device ---------------------------------------

_READS = frozenset({mb.READ_COILS, mb.READ_DISCRETE_INPUTS, mb.READ_HOLDING_REGISTERS, mb.READ_INPUT_REGISTERS})


class _Tamper:
    """Base of the ``polling.ResponseTamper`` implementations: an active period and the log of forged frames."""

    def __init__(self, log: AttackLog, at_ns: int, duration_s: float) -> None:
        self.log, self.at_ns, self.end_ns = log, at_ns, at_ns + int(duration_s * 1e9)
        self.forged = 0  # responses replaced

    def active(self, t: int) -> bool:
        return self.at_ns <= t < self.end_ns

    def mark(self, frame: Frame) -> None:
        self.log.mark(frame)


class ReplayOldResponses(_Tamper):
    """A man in the middle replays read responses it recorded earlier to the HMI (it answers the real requests,
    transaction ids and all, with old data).

    While recording (``record_from_ns`` to ``record_to_ns``, in the learning part), it keeps every successful read
    response per request (unit, function code, address, quantity); while active, each such request of the HMI gets
    the next recorded response for it, in the recorded order (cycling if the replay outlasts the recording).
    Exceptions from the PLC and requests it never recorded pass through. Same length as the real answers, so
    nothing else in the capture changes.
    """

    def __init__(self, log: AttackLog, record_from_ns: int, record_to_ns: int, at_ns: int,
                 duration_s: float = 60.0) -> None:
        super().__init__(log, at_ns, duration_s)
        self.record_from_ns, self.record_to_ns = record_from_ns, record_to_ns
        self.recorded: dict[tuple[int, int, int, int], list[bytes]] = {}
        self._played: dict[tuple[int, int, int, int], int] = {}

    def response(self, t: int, unit: int, fc: int, address: int, quantity: int, response: bytes,
                 exception_code: int) -> tuple[bytes, int] | None:
        if exception_code or fc not in _READS:
            return None
        key = (unit, fc, address, quantity)
        if self.record_from_ns <= t < self.record_to_ns:
            self.recorded.setdefault(key, []).append(response)
        elif self.active(t) and key in self.recorded:
            old = self.recorded[key]
            i = self._played.get(key, 0)
            self._played[key] = i + 1
            self.forged += 1
            return old[i % len(old)], 0
        return None


class FreezeResponses(_Tamper):
    """A man in the middle freezes what the HMI sees: every read gets the last real answer from before ``at_ns``.

    It watches the HMI's reads (per unit, function code, address, quantity) and, while active, answers each with
    the last response it forwarded before the attack, so the process values on the operator's screen stop
    moving while the real ones keep changing. Exceptions from the PLC pass through.
    """

    def __init__(self, log: AttackLog, at_ns: int, duration_s: float = 120.0) -> None:
        super().__init__(log, at_ns, duration_s)
        self.last: dict[tuple[int, int, int, int], bytes] = {}

    def response(self, t: int, unit: int, fc: int, address: int, quantity: int, response: bytes,
                 exception_code: int) -> tuple[bytes, int] | None:
        if exception_code or fc not in _READS:
            return None
        key = (unit, fc, address, quantity)
        if t < self.at_ns:
            self.last[key] = response
        elif self.active(t) and key in self.last:
            self.forged += 1
            return self.last[key], 0
        return None


class ExceptionStorm(_Tamper):
    """The PLC answers most reads with SERVER_DEVICE_FAILURE (4) or SERVER_DEVICE_BUSY (6) for a while.

    A device fault, or the visible side effect of an attack on the device (an overloaded or tampered CPU): for
    every client (the HMI and the historian). ``rate`` of the reads fail, ramping up over the first seconds.
    """

    def __init__(self, log: AttackLog, rng: random.Random, at_ns: int, duration_s: float = 60.0,
                 rate: float = 0.8) -> None:
        super().__init__(log, at_ns, duration_s)
        self.rng, self.rate = rng, rate

    def response(self, t: int, unit: int, fc: int, address: int, quantity: int, response: bytes,
                 exception_code: int) -> tuple[bytes, int] | None:
        if not self.active(t) or fc not in _READS:
            return None
        ramp = min(1.0, (t - self.at_ns) / 5e9 + 0.2)
        if self.rng.random() >= self.rate * ramp:
            return None
        code = mb.SERVER_DEVICE_FAILURE if self.rng.random() < 0.6 else mb.SERVER_DEVICE_BUSY
        self.forged += 1
        return mb.exception_response(fc, code), code


# -- a covert channel in register values ---------------------------------------------------------------------------

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
