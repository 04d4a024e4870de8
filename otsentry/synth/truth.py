"""Ground truth of a generated capture: which frames an attack sent or caused, and the attack's time span.

The frame number is only known when the frame is written (the simulation writes frames from a time-ordered heap),
so ``LabellingWriter`` resolves marked frames by identity as it writes them: no per-frame state is kept for normal
traffic, and memory stays bounded.
"""

from __future__ import annotations

import os
from array import array
from typing import BinaryIO, Iterable

from otsentry.synth.pcapwriter import LINKTYPE_ETHERNET, PcapWriter
from otsentry.synth.tcp import Frame

__all__ = ["AttackLog", "LabellingWriter"]


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


