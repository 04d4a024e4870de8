"""Closed windows as columns: what the windower computes, before any FeatureWindow object exists.

Why: building ~100-float FeatureWindow objects is a good share of the windowing cost, and pickling them is most of
the cost of handing windows to another process. ``otsentry run --jobs 2`` sends these columns (numpy arrays pickle
as raw bytes) and builds the objects on the receiving side; in one process ``windows()`` is called at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from otsentry.collectors.packets import addr_to_str
from otsentry.contracts.network import transport_name
from otsentry.contracts.schema import FEATURE_SCHEMA_VERSION
from otsentry.features.pairs import ValueJob
from otsentry.features.values import ValueState
from otsentry.records import FeatureWindow

__all__ = ["ClosedWindows", "FlowBlock", "PairBlock"]


def _bounds(widx: int, window_ns: int) -> tuple[float, float]:
    return widx * window_ns / 1e9, (widx + 1) * window_ns / 1e9


@dataclass
class FlowBlock:
    """Flow windows sorted by (window, originator, responder, responder port, protocol number)."""

    window_ns: int
    keys: dict[str, np.ndarray]  # widx, orig_hi, orig_lo, resp_hi, resp_lo, resp_port, proto, first/last_frame
    values: np.ndarray  # (rows, FLOW_FEATURES)
    services: tuple[str, ...] = ()  # per row: the protocol the responder's payload showed ("" none; () for all)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def widx(self) -> np.ndarray:
        return self.keys["widx"]

    def windows(self) -> list[FeatureWindow]:
        cols = [self.keys[k].tolist() for k in ("widx", "orig_hi", "orig_lo", "resp_hi", "resp_lo", "resp_port",
                                                "proto", "first_frame", "last_frame")]
        out = []
        services = self.services or ("",) * len(self.values)
        for (w, ohi, olo, rhi, rlo, port, proto, ff, lf), values, service in zip(zip(*cols), self.values.tolist(),
                                                                                services):
            start, end = _bounds(w, self.window_ns)
            out.append(FeatureWindow(start, end, "flow", addr_to_str(ohi, olo), addr_to_str(rhi, rlo), -1,
                                     tuple(values), FEATURE_SCHEMA_VERSION, port, transport_name(proto), ff, lf,
                                     service=service))
        return out


@dataclass
class PairBlock:
    """Pair windows sorted by (window, client address, server address, unit id)."""

    window_ns: int
    widx: np.ndarray
    pair: np.ndarray  # index into ``names``
    unit: np.ndarray
    first_frame: np.ndarray
    last_frame: np.ndarray
    values: np.ndarray  # (rows, PAIR_FEATURES)
    names: list[tuple]  # per ip pair id: (client ip, server ip, ...)
    value_job: ValueJob | None = None  # register-value columns still to fill (Windower(defer_values=True))
    job_order: np.ndarray | None = None  # row i of ``values`` is group job_order[i] of the job

    def __len__(self) -> int:
        return len(self.values)

    def complete(self, state: ValueState) -> None:
        if self.value_job is not None:
            self.value_job.apply(self.values, state, self.job_order)
            self.value_job = self.job_order = None

    def windows(self) -> list[FeatureWindow]:
        if self.value_job is not None:
            raise RuntimeError("register values not filled in yet: call ClosedWindows.complete(state) first")
        cols = [c.tolist() for c in (self.widx, self.pair, self.unit, self.first_frame, self.last_frame)]
        out = []
        for (w, pid, u, ff, lf), values in zip(zip(*cols), self.values.tolist()):
            start, end = _bounds(w, self.window_ns)
            client, server = self.names[pid][:2]
            out.append(FeatureWindow(start, end, "pair", client, server, u, tuple(values), FEATURE_SCHEMA_VERSION,
                                     first_frame=ff, last_frame=lf))
        return out


@dataclass
class ClosedWindows:
    """The windows one push closed: flows and pairs, each sorted, interleaved by window (flows first) on output."""

    flows: FlowBlock | None = None
    pairs: PairBlock | None = None
    source: int = 0  # which capture of a run: a new one starts with fresh register-value state
    sensors: list[FeatureWindow] = field(default_factory=list)  # rare: objects already, sorted by (window, key)
    ot: list[FeatureWindow] = field(default_factory=list)  # OT protocol windows: objects already, sorted the same

    def __len__(self) -> int:
        return sum(len(b) for b in (self.flows, self.pairs) if b is not None) + len(self.sensors) + len(self.ot)

    def complete(self, state: ValueState) -> "ClosedWindows":
        """Fill in deferred register values (in window order, one state per capture); returns self."""
        if self.pairs is not None:
            self.pairs.complete(state)
        return self

    def windows(self) -> list[FeatureWindow]:
        flows = self.flows.windows() if self.flows is not None else []
        pairs = self.pairs.windows() if self.pairs is not None else []
        merged = flows or pairs
        if pairs and flows:
            # Each list is sorted by (window, key): interleave them by window, flows first (lexsort is stable).
            order = np.lexsort((np.r_[np.zeros(len(flows)), np.ones(len(pairs))],
                                np.r_[self.flows.widx, self.pairs.widx]))
            both = flows + pairs
            merged = [both[i] for i in order.tolist()]
        if not self.sensors and not self.ot:
            return merged
        # By window, then kind in name order (flow, ot, pair, sensor); the stable sort keeps each kind's key order.
        return sorted(merged + self.ot + self.sensors, key=lambda w: (w.window_start, w.kind))
