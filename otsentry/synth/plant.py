"""The simulated plant behind the generated traffic: hosts, and PLC register banks whose values evolve smoothly.

Detectors look at register-value statistics (change rate, range), so values must behave like process data: a
tank level that rises and falls, temperatures that drift, counters that only go up, setpoints that change only
when someone writes them. Values are recomputed at most once per simulated PLC scan (100 ms) to stay cheap.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass

from otsentry.synth import modbus as mb

__all__ = ["BITS", "HOLDING_REGISTERS", "Host", "INPUT_REGISTERS", "RegisterBank", "SCAN_NS", "SETPOINTS",
    "make_hosts"]

HOLDING_REGISTERS = 200
INPUT_REGISTERS = 100
BITS = 64
SETPOINTS = 100  # holding registers 100..119 are setpoints the HMI writes
SCAN_NS = 100_000_000

# Holding register map (0-based): 0 tank level (0.01 %), 1 temperature (0.1 degC), 2 pressure (mbar),
# 3 flow (0.1 m3/h), 4 pump speed (rpm), 5-6 runtime seconds (uint32), 7 status word.
_ANALOGS = 5


@dataclass(frozen=True, slots=True)
class Host:
    """A machine on the OT network, as the capture sees it."""

    name: str
    ip: str
    mac: str


def _mac(rng: random.Random, oui: str) -> str:
    return oui + ":" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3))


def make_hosts(rng: random.Random, plcs: int, ipv6: bool = False) -> dict[str, Host]:
    """Control-room hosts and ``plcs`` PLCs with plausible vendor MAC prefixes (Dell, Siemens, Schneider)."""
    def ip(subnet: int, host: int) -> str:
        return f"fd00:10:10:{subnet}::{host:x}" if ipv6 else f"10.10.{subnet}.{host}"

    hosts = {
        "dns": Host("dns", ip(1, 2), _mac(rng, "52:54:00")),
        "hmi": Host("hmi", ip(1, 10), _mac(rng, "18:66:da")),
        "historian": Host("historian", ip(1, 11), _mac(rng, "18:66:da")),
        "eng": Host("eng", ip(1, 20), _mac(rng, "18:66:da")),
    }
    for i in range(plcs):
        oui = "00:1b:1b" if i % 2 == 0 else "00:80:f4"
        hosts[f"plc{i + 1}"] = Host(f"plc{i + 1}", ip(2, 11 + i), _mac(rng, oui))
    return hosts


class RegisterBank:
    """The data model of one Modbus unit: holding/input registers, coils and discrete inputs."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.holding = bytearray(2 * HOLDING_REGISTERS)
        self.inputs = bytearray(2 * INPUT_REGISTERS)
        self.coils = [0] * BITS
        self.discrete = [0] * BITS
        # Per analog: (centre, amplitude, period s, phase, noise sigma, low, high).
        self._analogs = [
            (5000.0, rng.uniform(2000, 4000), rng.uniform(600, 1800), rng.uniform(0, 6.3), 15.0, 0, 10000),
            (rng.uniform(180, 260), rng.uniform(5, 20), rng.uniform(1800, 3600), rng.uniform(0, 6.3), 1.0, 0, 1000),
            (rng.uniform(1000, 3000), rng.uniform(50, 200), rng.uniform(300, 900), rng.uniform(0, 6.3), 8.0, 0, 10000),
            (rng.uniform(200, 800), rng.uniform(20, 100), rng.uniform(600, 1200), rng.uniform(0, 6.3), 5.0, 0, 5000),
            (1450.0, 30.0, rng.uniform(100, 400), rng.uniform(0, 6.3), 3.0, 0, 3000),
        ]
        self._runtime0 = rng.randrange(1_000_000, 50_000_000)
        for reg in range(8, HOLDING_REGISTERS):  # configuration values: constant unless written
            struct.pack_into("!H", self.holding, 2 * reg, rng.randrange(0, 1000) if reg < 60 else 0)
        for reg in range(SETPOINTS, SETPOINTS + 20):
            struct.pack_into("!H", self.holding, 2 * reg, rng.randrange(100, 900))
        for reg in range(8, INPUT_REGISTERS):
            struct.pack_into("!H", self.inputs, 2 * reg, rng.randrange(0, 27648) if reg < 40 else 0)
        self.coils[:4] = [1, 0, 1, 0]
        self.discrete[8:24] = [rng.randrange(2) for _ in range(16)]
        self._scan = -1

    def update(self, ts_ns: int) -> None:
        """Recompute process values for the PLC scan containing ``ts_ns`` (no-op within the same scan)."""
        scan = ts_ns // SCAN_NS
        if scan == self._scan:
            return
        self._scan = scan
        t = ts_ns / 1e9
        gauss = self._rng.gauss
        values = []
        for centre, amp, period, phase, sigma, low, high in self._analogs:
            v = centre + amp * math.sin(2 * math.pi * t / period + phase) + gauss(0, sigma)
            values.append(int(min(high, max(low, v))))
        runtime = (self._runtime0 + int(t)) & 0xFFFFFFFF
        level = values[0]
        status = (self.coils[0] << 0) | (self.coils[1] << 1) | ((level > 9000) << 4) | ((level < 1000) << 5)
        struct.pack_into("!5HIH", self.holding, 0, *values, runtime, status)
        # Input registers: the same analogs as raw 0..27648 counts (4-20 mA cards).
        struct.pack_into("!5H", self.inputs, 0, *(min(27648, v * 27648 // hi) for v, hi in
                                                   zip(values, (10000, 1000, 10000, 5000, 3000))))
        self.discrete[0] = int(level > 9000)
        self.discrete[1] = int(level < 1000)
        self.discrete[2:6] = self.coils[:4]

    def read(self, function_code: int, address: int, quantity: int, ts_ns: int) -> bytes:
        """The data bytes of a read response (after the byte count)."""
        self.update(ts_ns)
        if function_code == mb.READ_HOLDING_REGISTERS:
            return bytes(self.holding[2 * address: 2 * (address + quantity)])
        if function_code == mb.READ_INPUT_REGISTERS:
            return bytes(self.inputs[2 * address: 2 * (address + quantity)])
        bits = self.coils if function_code == mb.READ_COILS else self.discrete
        return mb.pack_bits(bits[address: address + quantity])

    def register(self, address: int) -> int:
        return int.from_bytes(self.holding[2 * address: 2 * address + 2], "big")

    def write_registers(self, address: int, values: list[int]) -> None:
        for i, value in enumerate(values):
            struct.pack_into("!H", self.holding, 2 * (address + i), value & 0xFFFF)

    def write_coils(self, address: int, bits: list[int]) -> None:
        self.coils[address: address + len(bits)] = [1 if b else 0 for b in bits]
