"""Servers found speaking a decoded OT protocol on another port (named by their payload, ``signatures``).

The decoders route by port (``ports.DECODED_TCP``); a DNP3 outstation on 20001 or an S7 PLC behind a NAT's 1102
would go undecoded, and an attack on it unseen. When a flow's payload names such a protocol, its server endpoint
is registered here and every later packet to or from it is decoded as that protocol, from the same chunk on.
Bounded: the oldest endpoint goes first past ``limit``.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from types import MappingProxyType
from typing import Mapping

import numpy as np

__all__ = ["FRAMER_OF_SERVICE", "FoundServers"]

# A flow's service (``signatures``) -> the framer that decodes it (``framing.FRAMES``).
FRAMER_OF_SERVICE: Mapping[str, str] = MappingProxyType(
    {"dnp3": "dnp3", "iec104": "iec104", "s7comm": "tpkt", "s7commplus": "tpkt", "enip": "enip"})


class FoundServers:
    """(IP protocol, address hi, address lo, port) -> framer, with per-port tables for the vectorised prefilter."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._framer: OrderedDict[tuple[int, int, int, int], str] = OrderedDict()
        self._ports: Counter[tuple[int, int]] = Counter()
        self.tcp_ports = np.zeros(65536, dtype=bool)
        self.udp_ports = np.zeros(65536, dtype=bool)

    def __len__(self) -> int:
        return len(self._framer)

    def get(self, endpoint: tuple[int, int, int, int]) -> str | None:
        return self._framer.get(endpoint)

    def add(self, endpoint: tuple[int, int, int, int], framer: str) -> bool:
        """Register a server; False when it was known already."""
        if endpoint in self._framer:
            return False
        self._framer[endpoint] = framer
        self._mark(endpoint, +1)
        while len(self._framer) > self.limit:
            old, _ = self._framer.popitem(last=False)
            self._mark(old, -1)
        return True

    def _mark(self, endpoint: tuple[int, int, int, int], delta: int) -> None:
        proto, port = endpoint[0], endpoint[3]
        self._ports[(proto, port)] += delta
        table = self.tcp_ports if proto == 6 else self.udp_ports
        table[port] = self._ports[(proto, port)] > 0
        if self._ports[(proto, port)] <= 0:
            del self._ports[(proto, port)]
