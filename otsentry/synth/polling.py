"""Synthetic Modbus/TCP polling traffic: an HMI (and a historian) polling PLCs, written straight to a pcap.

It is the project's reference traffic for tests, the demo and the benchmark, so it has the shape of a real plant
capture: persistent connections (some already open when the capture starts), periodic polling with jitter, a
function-code mix dominated by register reads, rare writes and exceptions, a serial gateway with several unit ids
that sometimes gets pipelined requests, occasional retransmissions and split ADUs, and some non-Modbus flows.
The same seed gives a byte-identical file.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Callable, Protocol

from otsentry.synth import modbus as mb
from otsentry.synth.background import DnsClient, WebBrowser
from otsentry.synth.frames import LINKTYPES, ip_bytes
from otsentry.synth.pcapwriter import PcapWriter
from otsentry.synth.plant import SETPOINTS, Host, RegisterBank, make_hosts
from otsentry.synth.sim import (FLOW_MODBUS, T_FLOW, T_MULTI, T_REQUEST, T_RESPONSE, T_RETRANSMISSION, T_SPLIT, Actor,
                                GroundTruth, Sim, Tag, Transaction)
from otsentry.synth.tcp import Endpoint, Frame, TcpConnection

__all__ = ["DEFAULT_START_NS", "Plant", "Poller", "PollingOptions", "ResponseTamper", "build_plant",
    "generate_polling"]

DEFAULT_START_NS = 1_709_280_000 * 1_000_000_000  # 2024-03-01 08:00:00 UTC
_MS = 1_000_000

_DEVICE_IDS = (
    {0: "Siemens", 1: "6ES7 214-1AG40-0XB0", 2: "V4.5"},
    {0: "Schneider Electric", 1: "BMX P34 2020", 2: "v3.20"},
)


@dataclass(frozen=True)
class PollingOptions:
    """Rates are probabilities per transaction (exceptions, splits, retransmissions) or per poll cycle."""

    historian: bool = True
    period_s: tuple[float, float] = (0.1, 1.0)  # HMI poll period per PLC, drawn once per PLC
    jitter: float = 0.05  # +- fraction of the period
    exception_rate: float = 0.01
    split_rate: float = 0.01
    # Splits inside the first 8 bytes (e.g. the MBAP header alone): real devices do it, but Wireshark 4.0's
    # Modbus/TCP dissector needs 8 bytes to recognise an ADU and then loses the stream, so off by default.
    short_splits: bool = False
    retransmission_rate: float = 0.002
    write_rate: float = 0.02
    pipeline_rate: float = 0.05  # gateway cycles whose requests share one segment
    reconnect_rate: float = 0.0002
    diagnostics_rate: float = 0.0  # FC 8 is an alert-worthy command: off in normal traffic
    device_id: bool = True  # the historian reads FC 43/14 on each new connection
    client_acks: bool = True  # delayed pure ACKs from the clients after the last response of a cycle
    midstream: bool = True  # HMI connections already open when the capture starts
    background: bool = True  # DNS and HTTP flows
    gateway_units: int = 3  # unit ids behind PLC 1 (a serial gateway); the others answer unit 1
    historian_period_s: tuple[float, float] = (0.9, 1.1)  # historian poll period per PLC, drawn once per PLC
    # None: each HMI write moves a setpoint by a small random step (a random walk, which drifts over hours).
    # A fraction f: writes draw from the register's initial value +- f, a stable band a detector can learn.
    write_band: float | None = None


class ResponseTamper(Protocol):
    """Something on the path (a man in the middle, a failing device) that replaces responses to one poller.

    ``response`` sees every transaction of the poller after the PLC computed its answer, and returns ``None`` to
    let it through or ``(response PDU, exception code)`` to send instead; each frame carrying a replaced response
    is passed to ``mark``. It must draw nothing from the plant's RNG. A replacement of the same length as the
    original keeps every later frame of the capture byte-identical but for the replaced bytes (the split and
    retransmission draws depend on the length only).
    """

    def response(self, t: int, unit: int, fc: int, address: int, quantity: int, response: bytes,
                 exception_code: int) -> tuple[bytes, int] | None: ...

    def mark(self, frame: Frame) -> None: ...


@dataclass(frozen=True)
class _PollerConfig:
    historian: bool
    period_ns: int
    link_kind: str
    vlans: tuple[int, ...]
    midstream: bool


class Poller:
    """One client polling one PLC over a persistent connection, reconnecting now and then."""

    def __init__(self, sim: Sim, opts: PollingOptions, cfg: _PollerConfig, client: Host, plc: Host,
                 banks: dict[int, RegisterBank], device_id: dict[int, str]) -> None:
        self.sim, self.opts, self.client, self.plc, self.banks = sim, opts, client, plc, banks
        self.units = sorted(banks)
        self.gateway = len(self.units) > 1
        self.historian = cfg.historian
        self.period_ns = cfg.period_ns
        self.link_kind, self.vlans = cfg.link_kind, cfg.vlans
        self.ack_delay_ns = (200 if self.historian else 40) * _MS
        self.device_id = device_id
        self.conn: TcpConnection | None = None
        self._flow_tag: Tag | None = None  # put on the next frame: the connection's first one
        self._midstream_next = cfg.midstream
        self.tid = 0
        self.cycle = 0
        self.tamper: ResponseTamper | None = None  # scenarios only: see ``ResponseTamper``
        self._reads = 8 + sim.rng.randrange(9)  # size of the HMI's input-register block
        # Setpoints as configured before any write: the centre of the band for ``write_band``.
        self.nominal = {unit: [bank.register(SETPOINTS + i) for i in range(20)] for unit, bank in banks.items()}

    # -- connection lifecycle -----------------------------------------------------------------------------------

    def _connect(self, t: int) -> int:
        sim, rng = self.sim, self.sim.rng
        midstream, self._midstream_next = self._midstream_next, False
        self.conn = TcpConnection(
            Endpoint(self.client.ip, sim.ephemeral_port(), self.client.mac), Endpoint(self.plc.ip, 502, self.plc.mac),
            client_isn=rng.getrandbits(32), server_isn=rng.getrandbits(32), established=midstream,
            client_ttl=128 if self.historian else 64, server_ttl=64 if self.gateway else 30,
            client_ip_id=rng.randrange(65536), server_ip_id=rng.randrange(65536), server_window=2048,
            link_kind=self.link_kind, vlans=self.vlans,
        )
        self.tid = rng.randrange(65536) if midstream else 0
        self._flow_tag = ((T_FLOW, FLOW_MODBUS, midstream),)
        if midstream:
            return t
        frames = self.conn.handshake(t, int(rng.uniform(0.1, 0.6) * _MS))
        sim.emit(frames[0], self._flow_tag)
        self._flow_tag = None
        last = sim.emit_all(frames[1:])
        if self.historian and self.opts.device_id:
            last = self._transact(last + _MS, self.units[0], mb.ENCAPSULATED_INTERFACE, 0, 0)
        return last + _MS

    def _disconnect(self, t: int) -> int:
        conn, rng = self.conn, self.sim.rng
        assert conn is not None
        self.conn = None
        roll = rng.random()
        if roll < 0.7:
            return self.sim.emit_all(conn.close(t, int(rng.uniform(0.1, 0.6) * _MS), from_client=True))
        frame = conn.reset(t, from_client=roll < 0.85)
        self.sim.emit(frame)
        return frame[0]

    # -- one poll cycle -----------------------------------------------------------------------------------------

    def step(self, t: int) -> int:
        rng, opts = self.sim.rng, self.opts
        if self.conn is None:
            t = self._connect(t)
        start = t
        self.cycle += 1
        if self.gateway and rng.random() < opts.pipeline_rate:
            t = self._pipelined(t)
        for unit in self.units:
            for fc, address, quantity in self._scan_list():
                t = self._transact(t, unit, fc, address, quantity) + int(rng.uniform(0.1, 1.0) * _MS)
        if not self.historian and rng.random() < opts.write_rate:
            t = self._write(t, self.units[rng.randrange(len(self.units))]) + _MS
        if not self.historian and rng.random() < opts.diagnostics_rate:
            t = self._transact(t, self.units[0], mb.DIAGNOSTICS, 0, 0) + _MS
        if opts.client_acks:
            assert self.conn is not None
            t += self.ack_delay_ns
            self.sim.emit(self.conn.ack(t, True))
        if rng.random() < opts.reconnect_rate:
            return self._disconnect(t + _MS) + int(rng.uniform(1, 5) * 1e9)
        period = self.period_ns * (1 + rng.uniform(-opts.jitter, opts.jitter))
        return max(start + int(period), t + _MS)

    def _scan_list(self) -> list[tuple[int, int, int]]:
        if self.historian:
            return [(mb.READ_HOLDING_REGISTERS, 0, mb.MAX_READ_REGISTERS), (mb.READ_INPUT_REGISTERS, 0, 64)]
        scan = [(mb.READ_HOLDING_REGISTERS, 0, 10), (mb.READ_INPUT_REGISTERS, 0, self._reads)]
        if self.cycle % 4 == 0:
            scan += [(mb.READ_COILS, 0, 16), (mb.READ_DISCRETE_INPUTS, 0, 24)]
        if self.cycle % 10 == 0:
            scan.append((mb.READ_HOLDING_REGISTERS, SETPOINTS, 20))
        return scan

    def _write(self, t: int, unit: int) -> int:
        rng = self.sim.rng
        roll = rng.random()
        if roll < 0.6:
            return self._transact(t, unit, mb.WRITE_SINGLE_REGISTER, SETPOINTS + rng.randrange(10), 1)
        if roll < 0.85:
            return self._transact(t, unit, mb.WRITE_MULTIPLE_REGISTERS, SETPOINTS + 10, 2 + rng.randrange(3))
        if roll < 0.95:
            return self._transact(t, unit, mb.WRITE_SINGLE_COIL, rng.randrange(4), 1)
        return self._transact(t, unit, mb.WRITE_MULTIPLE_COILS, 8, 8)

    def _pdus(self, unit: int, fc: int, address: int, quantity: int, ts: int) -> tuple[bytes, bytes, int]:
        """Request PDU, response PDU, exception code (0 for none); writes change the bank when they succeed."""
        rng, bank = self.sim.rng, self.banks[unit]
        if fc <= mb.READ_INPUT_REGISTERS:
            request = mb.read_request(fc, address, quantity)
        elif fc == mb.WRITE_SINGLE_REGISTER:
            value = (self.band_value(unit, address) if self.opts.write_band is not None
                     else max(0, bank.register(address) + rng.randrange(-50, 51)))
            request = mb.write_single_register(address, value)
        elif fc == mb.WRITE_MULTIPLE_REGISTERS:
            if self.opts.write_band is not None:
                values = [self.band_value(unit, address + i) for i in range(quantity)]
            else:
                values = [max(0, bank.register(address + i) + rng.randrange(-20, 21)) for i in range(quantity)]
            request = mb.write_multiple_registers_request(address, values)
        elif fc == mb.WRITE_SINGLE_COIL:
            request = mb.write_single_coil(address, not bank.coils[address])
        elif fc == mb.WRITE_MULTIPLE_COILS:
            request = mb.write_multiple_coils_request(address, [rng.randrange(2) for _ in range(quantity)])
        elif fc == mb.DIAGNOSTICS:
            request = mb.diagnostics(0, rng.randbytes(2))
        else:
            request = mb.read_device_id_request(1, 0)
        if rng.random() < self.opts.exception_rate:
            roll = rng.random()
            code = (mb.GATEWAY_TARGET_FAILED if self.gateway and roll < 0.3 else mb.ILLEGAL_DATA_ADDRESS
                    if roll < 0.7 else mb.ILLEGAL_DATA_VALUE if roll < 0.85 else mb.SERVER_DEVICE_BUSY)
            return request, mb.exception_response(fc, code), code
        if fc <= mb.READ_INPUT_REGISTERS:
            data = bank.read(fc, address, quantity, ts)
            response = (mb.read_registers_response(fc, data) if fc >= mb.READ_HOLDING_REGISTERS
                        else mb.read_bits_response(fc, data))
        elif fc in (mb.WRITE_SINGLE_REGISTER, mb.WRITE_SINGLE_COIL, mb.DIAGNOSTICS):
            response = request
            if fc == mb.WRITE_SINGLE_REGISTER:
                bank.write_registers(address, [int.from_bytes(request[3:5], "big")])
            elif fc == mb.WRITE_SINGLE_COIL:
                bank.write_coils(address, [request[3]])
        elif fc in (mb.WRITE_MULTIPLE_REGISTERS, mb.WRITE_MULTIPLE_COILS):
            response = mb.write_multiple_response(fc, address, quantity)
            if fc == mb.WRITE_MULTIPLE_REGISTERS:
                bank.write_registers(address, [int.from_bytes(request[6 + 2 * i: 8 + 2 * i], "big")
                                               for i in range(quantity)])
            else:
                bank.write_coils(address, [(request[6] >> i) & 1 for i in range(quantity)])
        else:
            response = mb.read_device_id_response(self.device_id)
        return request, response, 0

    def band_value(self, unit: int, address: int) -> int:
        """A setpoint value from the register's normal band (``write_band`` around its initial value)."""
        nominal = self.nominal[unit][address - SETPOINTS]
        width = max(1, int(nominal * (self.opts.write_band or 0.0)))
        return max(0, nominal + self.sim.rng.randint(-width, width))

    def inject(self, t: int, unit: int, request: bytes, response: bytes, latency_ns: int,
               exception_code: int = 0) -> list[Frame]:
        """Send a caller-built request PDU and its response PDU on this poller's open connection.

        For scenarios where the usual client itself does something unusual (an operator's typo, a hijacked
        HMI): the transaction takes the poller's next transaction id and travels on its connection, one
        segment each way (never split or retransmitted, so its frames are exactly two), and draws nothing from
        the shared RNG, so the rest of the capture stays what it would have been. Returns both frames so that
        the caller can label them. The caller applies any effect on the register bank.
        """
        if self.conn is None:
            raise RuntimeError("inject needs an open connection")
        fc = request[0]
        tid = self._new_tid()
        txn = self._txn(t, unit, tid, fc, exception_code, int.from_bytes(request[1:3], "big"),
                        int.from_bytes(request[3:5], "big"))
        req = self.conn.segment(t, True, mb.adu(tid, unit, request))
        self.sim.emit(req, ((T_REQUEST, fc, txn),) + (self._flow_tag or ()))
        self._flow_tag = None
        resp = self.conn.segment(t + latency_ns, False, mb.adu(tid, unit, response))
        self.sim.emit(resp, ((T_RESPONSE, fc, exception_code, txn),))
        return [req, resp]

    def send_unanswered(self, t: int, ack_delay_ns: int) -> tuple[Frame, Frame]:
        """The first request of a poll cycle, which gets no answer: only the server's TCP stack ACKs it.

        For scenarios where the PLC's Modbus application goes silent (force listen-only mode) while its TCP
        stack still works: the client sends its usual first read with its next transaction id, the server ACKs
        the segment ``ack_delay_ns`` later, and the client gives up on the cycle (its response timeout). Draws
        nothing from the shared RNG and counts as a poll cycle. Returns (request, ACK).
        """
        if self.conn is None:
            raise RuntimeError("send_unanswered needs an open connection")
        self.cycle += 1
        unit = self.units[0]
        fc, address, quantity = self._scan_list()[0]
        tid = self._new_tid()
        txn = self._txn(t, unit, tid, fc, 0, address, quantity)
        req = self.conn.segment(t, True, mb.adu(tid, unit, mb.read_request(fc, address, quantity)))
        self.sim.emit(req, ((T_REQUEST, fc, txn),) + (self._flow_tag or ()))
        self._flow_tag = None
        ack = self.conn.ack(t + ack_delay_ns, False)
        self.sim.emit(ack)
        return req, ack

    def _new_tid(self) -> int:
        self.tid = (self.tid + 1) & 0xFFFF
        return self.tid

    def _txn(self, ts: int, unit: int, tid: int, fc: int, exc: int, address: int, quantity: int) -> Transaction | None:
        if self.sim.transactions is None:
            return None
        assert self.conn is not None
        c, s = self.conn.client, self.conn.server
        txn = Transaction(ts, c.ip, c.port, s.ip, s.port, unit, tid, fc, exc or None,
                          address if fc <= mb.WRITE_MULTIPLE_REGISTERS and fc != mb.DIAGNOSTICS else None,
                          quantity if fc in (1, 2, 3, 4, 15, 16) else None)
        self.sim.transactions.append(txn)
        return txn

    def _latency(self, quantity: int) -> int:
        rng = self.sim.rng
        if self.gateway:  # serial line behind the gateway: slow, grows with the payload
            return int((rng.uniform(12, 30) + 0.25 * quantity) * _MS)
        return int(min(20.0, rng.lognormvariate(0.7, 0.4)) * _MS)

    def _transact(self, t: int, unit: int, fc: int, address: int, quantity: int) -> int:
        """One request and its response; returns the time of the last frame."""
        tid = self._new_tid()
        request, response, exc = self._pdus(unit, fc, address, quantity, t)
        mark = None
        if self.tamper is not None:
            forged = self.tamper.response(t, unit, fc, address, quantity, response, exc)
            if forged is not None:
                (response, exc), mark = forged, self.tamper.mark
        txn = self._txn(t, unit, tid, fc, exc, address, quantity)
        t = self._send(t, True, mb.adu(tid, unit, request), (T_REQUEST, fc, txn))
        t += self._latency(quantity)
        return self._send(t, False, mb.adu(tid, unit, response), (T_RESPONSE, fc, exc, txn), mark)

    def _send(self, t: int, from_client: bool, data: bytes, entry: tuple[object, ...],
              mark: Callable[[Frame], None] | None = None) -> int:
        """One ADU in one segment, or split over two, or followed by a retransmission of its segment.

        ``mark`` (scenarios) is called with every frame that carries bytes of this ADU.
        """
        sim, rng, conn = self.sim, self.sim.rng, self.conn
        assert conn is not None
        tag: Tag = (entry,) if self._flow_tag is None else (entry,) + self._flow_tag
        self._flow_tag = None
        if rng.random() < self.opts.split_rate:
            low = 1 if self.opts.short_splits else 8
            at = 7 if low < 7 and rng.random() < 0.5 else low + rng.randrange(len(data) - low)
            first = conn.segment(t, from_client, data[:at], 0x10)
            sim.emit(first, tag[1:] or None)  # a flow tag stays on the flow's first frame
            t += rng.randrange(50_000, 2 * _MS)
            second = conn.segment(t, from_client, data[at:])
            sim.emit(second, (entry, (T_SPLIT,)))
            if mark is not None:
                mark(first)
                mark(second)
            return t
        frame = conn.segment(t, from_client, data)
        sim.emit(frame, tag)
        if mark is not None:
            mark(frame)
        if rng.random() < self.opts.retransmission_rate:
            t += int(rng.uniform(200, 350) * _MS)
            again = conn.retransmit(t, from_client)
            sim.emit(again, ((T_RETRANSMISSION, 1),))
            if mark is not None:
                mark(again)
        return t

    def _pipelined(self, t: int) -> int:
        """Read the same block from every unit behind the gateway with one segment; answers come one by one
        (each in its own segment, or all together)."""
        sim, rng, conn = self.sim, self.sim.rng, self.conn
        assert conn is not None
        fc, address, quantity = mb.READ_HOLDING_REGISTERS, 0, 10
        requests, responses, entries = [], [], []
        for unit in self.units:
            tid = self._new_tid()
            request, response, exc = self._pdus(unit, fc, address, quantity, t)
            txn = self._txn(t, unit, tid, fc, exc, address, quantity)
            requests.append(mb.adu(tid, unit, request))
            responses.append(mb.adu(tid, unit, response))
            entries.append(((T_REQUEST, fc, txn), (T_RESPONSE, fc, exc, txn)))
        tag: Tag = tuple(e[0] for e in entries) + ((T_MULTI,),) + (self._flow_tag or ())
        self._flow_tag = None
        sim.emit(conn.segment(t, True, b"".join(requests)), tag)
        times = []
        for _ in responses:  # the gateway asks its serial devices one after the other
            t += self._latency(quantity)
            times.append(t)
        if rng.random() < 0.5:
            sim.emit(conn.segment(t, False, b"".join(responses)), tuple(e[1] for e in entries) + ((T_MULTI,),))
            return t
        for ts, response, entry in zip(times, responses, entries):
            sim.emit(conn.segment(ts, False, response), (entry[1],))
        return t


@dataclass
class Plant:
    """Everything ``build_plant`` set up: the hosts, the pollers (HMI first per PLC), every actor with its start."""

    hosts: dict[str, Host]
    plcs: list[Host]
    pollers: list[Poller]
    actors: list[tuple[int, Actor]]


def build_plant(sim: Sim, plcs: int, opts: PollingOptions, *, link: str = "ethernet",
                vlans: tuple[int, ...] = (), ipv6: bool = False, start_ns: int = DEFAULT_START_NS) -> Plant:
    """Hosts, register banks, pollers and background actors, drawing from ``sim.rng`` in a fixed order.

    Separate from ``generate_polling`` so that scenarios can add actors (attackers) to the same plant and run
    it for a duration instead of a packet count; the draw order is what makes a seed give the same bytes.
    """
    rng = sim.rng
    hosts = make_hosts(rng, plcs, ipv6)
    actors: list[tuple[int, Actor]] = []
    pollers: list[Poller] = []
    clients = [hosts["hmi"]] + ([hosts["historian"]] if opts.historian else [])
    plc_hosts = [hosts[f"plc{i + 1}"] for i in range(plcs)]
    for i, plc in enumerate(plc_hosts):
        units = list(range(1, opts.gateway_units + 1)) if i == 0 and plcs > 1 else [1]
        banks = {unit: RegisterBank(rng) for unit in units}
        for client in clients:
            historian = client.name == "historian"
            period = rng.uniform(*opts.period_s) if not historian else rng.uniform(*opts.historian_period_s)
            cfg = _PollerConfig(historian, int(period * 1e9), link, vlans, opts.midstream and not historian)
            poller = Poller(sim, opts, cfg, client, plc, banks, _DEVICE_IDS[i % 2])
            first = rng.uniform(0.5, 3.0) if historian else rng.uniform(0, period)
            actors.append((start_ns + int(first * 1e9), poller))
            pollers.append(poller)
    if opts.background:
        names = [(f"{h.name}.plant.local", ip_bytes(h.ip)) for h in [hosts["historian"]] + plc_hosts]
        actors.append((start_ns + int(rng.uniform(1, 10) * 1e9),
                       DnsClient(sim, hosts["hmi"], hosts["dns"], names, link, vlans)))
        actors.append((start_ns + int(rng.uniform(5, 60) * 1e9),
                       WebBrowser(sim, hosts["eng"], plc_hosts, link, vlans)))
    return Plant(hosts, plc_hosts, pollers, actors)


def generate_polling(path: str | os.PathLike[str], packets: int, seed: int, plcs: int = 4, *,
                     options: PollingOptions | None = None, link: str = "ethernet", vlan: int | None = None,
                     ipv6: bool = False, nanosecond: bool = False, start_ns: int = DEFAULT_START_NS,
                     keep_transactions: bool = False) -> GroundTruth:
    """Write exactly ``packets`` frames of plant traffic to ``path`` (pcap) and return what they contain."""
    if packets < 0 or plcs < 1:
        raise ValueError("packets must be >= 0 and plcs >= 1")
    opts = options or PollingOptions()
    sim = Sim(random.Random(seed), keep_transactions)
    plant = build_plant(sim, plcs, opts, link=link, vlans=() if vlan is None else (vlan,), ipv6=ipv6,
                        start_ns=start_ns)
    truth = GroundTruth(seed=seed)
    with PcapWriter(path, linktype=LINKTYPES[link], nanosecond=nanosecond) as writer:
        sim.run(writer, plant.actors, packets, truth)
    return truth
