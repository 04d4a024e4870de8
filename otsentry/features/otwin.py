"""OT windows: the operations of DNP3, IEC 104, S7 and EtherNet/IP, per window and (client, server, station,
protocol), from the collector's ``OperationEvent``s.

Like sensor windows they are few (an OT segment's masters and outstations) and built as objects at once; an
operation arriving for a window that already closed goes to the first open one, never dropped.
"""

from __future__ import annotations

from typing import Iterable

from otsentry.contracts.events import OperationEvent
from otsentry.contracts.schema import OT_FEATURES, OT_SCHEMA_VERSION
from otsentry.records import FeatureWindow

__all__ = ["OtWindows", "ot_protocol", "ot_transport"]

_INDEX = {name: i for i, name in enumerate(OT_FEATURES)}
Key = tuple[int, str, str, int, int, str]  # window index, client, server, station, server port, "tcp/dnp3"


def ot_transport(protocol: str, transport: str = "tcp") -> str:
    """The ``transport`` field of an OT window: the transport and the protocol, "tcp/dnp3"."""
    return f"{transport}/{protocol}"


def ot_protocol(window_transport: str) -> tuple[str, str]:
    """(transport, protocol) of an OT window's ``transport`` field."""
    transport, _, protocol = window_transport.partition("/")
    return transport, protocol


class _Cell:
    __slots__ = ("values", "operations", "objects", "latency", "first", "last")

    def __init__(self) -> None:
        self.values = [0.0] * len(OT_FEATURES)
        self.operations: set[str] = set()
        self.objects: set[str] = set()
        self.latency: list[float] = []
        self.first, self.last = 0, 0


class OtWindows:
    """Accumulates operations by window; ``take(upto)`` returns the OT windows below window ``upto``."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self._cells: dict[Key, _Cell] = {}

    def __len__(self) -> int:
        return len(self._cells)

    def add(self, operations: Iterable[OperationEvent], open_from: int | None) -> None:
        for op in operations:
            widx = int(op.ts * 1e9) // self.window_ns
            if open_from is not None:
                widx = max(widx, open_from)
            key = (widx, op.client_ip, op.server_ip, -1 if op.station is None else op.station, op.server_port,
                   ot_transport(op.protocol, op.transport))
            cell = self._cells.get(key)
            if cell is None:
                cell = self._cells[key] = _Cell()
            v = cell.values
            v[0] += 1
            v[_INDEX[op.operation_class]] += 1
            if op.status is not None:
                v[_INDEX["errors"]] += 1
            if op.latency_s is None:
                v[_INDEX["unanswered"]] += 1
            else:
                cell.latency.append(op.latency_s * 1000)
            if "malformed" in op.flags:
                v[_INDEX["malformed"]] += 1
            if op.effect:
                v[_INDEX[op.effect]] += 1
            cell.operations.add(f"{op.operation_class}/{op.operation_name}")
            cell.objects.update(op.objects)
            frame = op.request_frame or 0
            cell.first = frame if not cell.first else min(cell.first, frame)
            cell.last = max(cell.last, op.response_frame or frame)

    def take(self, upto: int | None) -> list[FeatureWindow]:
        """Windows below ``upto`` (all of them for None), sorted by (window, key)."""
        out = []
        for key in sorted(k for k in self._cells if upto is None or k[0] < upto):
            widx, client, server, station, port, transport = key
            cell = self._cells.pop(key)
            v = cell.values
            v[_INDEX["distinct_operations"]] = len(cell.operations)
            v[_INDEX["distinct_objects"]] = len(cell.objects)
            if cell.latency:
                v[_INDEX["latency_mean_ms"]] = sum(cell.latency) / len(cell.latency)
                v[_INDEX["latency_max_ms"]] = max(cell.latency)
            out.append(FeatureWindow(widx * self.window_ns / 1e9, (widx + 1) * self.window_ns / 1e9, "ot", client,
                                     server, station, tuple(v), OT_SCHEMA_VERSION, port, transport, cell.first,
                                     cell.last, tuple(sorted(cell.operations))))
        return out

    def max_widx(self) -> int | None:
        return max((k[0] for k in self._cells), default=None)
