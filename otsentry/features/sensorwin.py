"""Sensor windows: evasion evidence, decoding trouble and capture loss, per window, from the collector's batches.

Why windows: they travel with the pair and flow windows (in one process, to a second process, over Kafka), so every
path that scores windows also reports what the sensor could not see, with the same deterministic ids. Only windows
where something happened exist; nothing here is dropped as late: evidence for a window that already closed goes to
the first open one (a blind spot must never be hidden).
"""

from __future__ import annotations

from typing import Iterable

from otsentry.collectors.defrag import FRAGMENT_OVERLAP_CONFLICT, TINY_FRAGMENT
from otsentry.collectors.reassembly import GAP, OVERLAP_CONFLICT, UNDECODED
from otsentry.contracts.schema import FEATURE_SCHEMA_VERSION, SENSOR_FEATURES
from otsentry.records import EvasionNote, FeatureWindow, PacketLoss

__all__ = ["Key", "NOTE_FEATURES", "SensorWindows"]

# note kind -> (feature, counted as: 1 per note, or its bytes)
NOTE_FEATURES = {
    OVERLAP_CONFLICT: ("overlap_conflicts", False),
    FRAGMENT_OVERLAP_CONFLICT: ("fragment_overlap_conflicts", False),
    TINY_FRAGMENT: ("tiny_fragments", False),
    GAP: ("gap_bytes", True),
    UNDECODED: ("undecoded_bytes", True),
}
_INDEX = {name: i for i, name in enumerate(SENSOR_FEATURES)}
Key = tuple[int, str, str, int, str]  # window index, sender, receiver, receiver port, transport


class SensorWindows:
    """Accumulates notes and losses by window; ``take(upto)`` returns the sensor windows below window ``upto``."""

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self._cells: dict[Key, list[float]] = {}
        self._frames: dict[Key, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._cells)

    def add(self, notes: Iterable[EvasionNote], loss: PacketLoss | None, open_from: int | None) -> None:
        for n in notes:
            feature, by_bytes = NOTE_FEATURES.get(n.kind, (None, False))
            if feature is None:
                continue
            transport = "tcp" if n.dst_port else "ip"
            key = (self._widx(n.ts_ns, open_from), n.src_ip, n.dst_ip, n.dst_port, transport)
            self._cell(key)[_INDEX[feature]] += n.nbytes if by_bytes else 1
            first, last = self._frames.get(key, (n.frame, n.frame))
            self._frames[key] = (min(first, n.frame), max(last, n.frame))
        if loss is not None and (loss.kernel_drops or loss.interface_drops):
            key = (self._widx(int(loss.ts * 1e9), open_from), "", "", 0, "")
            cell = self._cell(key)
            cell[_INDEX["kernel_drops"]] += loss.kernel_drops
            cell[_INDEX["interface_drops"]] += loss.interface_drops

    def take(self, upto: int | None) -> list[FeatureWindow]:
        """Windows below ``upto`` (all of them for None), sorted by (window, key)."""
        keys = sorted(k for k in self._cells if upto is None or k[0] < upto)
        out = []
        for key in keys:
            widx, src, dst, port, transport = key
            values = self._cells.pop(key)
            first, last = self._frames.pop(key, (0, 0))
            out.append(FeatureWindow(widx * self.window_ns / 1e9, (widx + 1) * self.window_ns / 1e9, "sensor", src,
                                     dst, -1, tuple(values), FEATURE_SCHEMA_VERSION, port, transport, first, last))
        return out

    def max_widx(self) -> int | None:
        return max((k[0] for k in self._cells), default=None)

    def _widx(self, ts_ns: int, open_from: int | None) -> int:
        widx = ts_ns // self.window_ns
        return widx if open_from is None else max(widx, open_from)

    def _cell(self, key: Key) -> list[float]:
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = [0.0] * len(SENSOR_FEATURES)
        return cell
