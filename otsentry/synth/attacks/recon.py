"""Reconnaissance: function codes, unit ids and register addresses swept."""

from __future__ import annotations

import random
from typing import Iterator

from otsentry.synth import modbus as mb
from otsentry.synth.attacks.base import PLC_SUPPORTED, WINDOWS_PORTS, Attacker, Target, read_response
from otsentry.synth.plant import HOLDING_REGISTERS, Host, RegisterBank
from otsentry.synth.sim import Sim
from otsentry.synth.truth import AttackLog

__all__ = ["AddressSweep", "FunctionCodeSweep", "GATEWAY_SERIAL_UNITS", "UnitIdSweep", "sweep_pdus"]


_MS = 1_000_000


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


GATEWAY_SERIAL_UNITS = range(1, 32)  # unit ids a serial gateway routes to its RS-485 line (present or not)


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
    client_ports = WINDOWS_PORTS

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
