"""Ground truth of a generated capture: which frames an attack sent or caused, the attack's time span, and the
scenario's truth as evaluators read it (``ScenarioTruth``: per-frame labels and attack intervals).

The frame number is only known when the frame is written (the simulation writes frames from a time-ordered heap),
so ``LabellingWriter`` resolves marked frames by identity as it writes them: no per-frame state is kept for normal
traffic, and memory stays bounded.
"""

from __future__ import annotations

import bisect
import os
from array import array
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable, Iterator

from otsentry.synth.pcapwriter import LINKTYPE_ETHERNET, PcapWriter
from otsentry.synth.sim import GroundTruth
from otsentry.synth.tcp import Frame

__all__ = ["AttackLog", "LabellingWriter", "ScenarioTruth"]


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


def _ts(ns: int) -> float:
    return ns / 1e9


@dataclass
class ScenarioTruth:
    """Ground truth of one scenario capture; times are epoch nanoseconds, with float-second views."""

    name: str
    seed: int
    description: str
    technique_id: str | None
    technique_name: str | None
    tactic: str | None
    start_ns: int  # the simulation's start (the first frame is up to a second later)
    learn_end_ns: int
    attack_intervals_ns: list[tuple[int, int]]  # at the capture's microsecond resolution: floor, ceil
    attacker_ip: str | None  # where the attack's frames come from: a new host or a misused known one (the HMI,
    # historian, engineering station); None when no attack host shows (a man in the middle, a failing PLC)
    target_ip: str | None
    target_unit: int | None  # None when the attack is not about one unit (unit-id sweep, SMB/RDP to the HMI)
    packets: int
    attack_frames: array = field(repr=False)  # 1-based frame numbers, ascending
    counts: GroundTruth = field(repr=False)

    @property
    def learn_end_ts(self) -> float:
        return _ts(self.learn_end_ns)

    @property
    def attack_intervals(self) -> list[tuple[float, float]]:
        return [(_ts(a), _ts(b)) for a, b in self.attack_intervals_ns]

    def label(self, frame: int) -> int:
        """1 if frame number ``frame`` (1-based) belongs to the attack, else 0."""
        i = bisect.bisect_left(self.attack_frames, frame)
        return int(i < len(self.attack_frames) and self.attack_frames[i] == frame)

    def labels(self) -> Iterator[tuple[int, int]]:
        """``(frame, label)`` for every frame of the capture, streamed (no per-frame list is built)."""
        attack = iter(self.attack_frames)
        nxt = next(attack, 0)
        for frame in range(1, self.packets + 1):
            if frame == nxt:
                nxt = next(attack, 0)
                yield frame, 1
            else:
                yield frame, 0

    def write_labels_csv(self, path: str | os.PathLike[str]) -> None:
        """``frame;label`` with a header line, one row for every frame of the capture (1 = attack)."""
        with open(path, "w", encoding="ascii", newline="") as out:
            out.write("frame;label\n")
            out.writelines(f"{frame};{label}\n" for frame, label in self.labels())

    def write_intervals_csv(self, path: str | os.PathLike[str]) -> None:
        """``start;end`` in epoch seconds with a header line, one row per attack interval (none for normal)."""
        with open(path, "w", encoding="ascii", newline="") as out:
            out.write("start;end\n")
            for start, end in self.attack_intervals_ns:
                out.write(f"{_exact(start)};{_exact(end)}\n")

    def to_dict(self, with_frames: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "seed": self.seed, "description": self.description,
            "technique": {"id": self.technique_id, "name": self.technique_name, "tactic": self.tactic}
            if self.technique_id else None,
            "start_ts": _ts(self.start_ns), "learn_end_ts": self.learn_end_ts,
            "first_ts": _ts(self.counts.first_ts_ns), "last_ts": _ts(self.counts.last_ts_ns),
            "attack_intervals": [list(i) for i in self.attack_intervals],
            "attacker_ip": self.attacker_ip, "target_ip": self.target_ip, "target_unit": self.target_unit,
            "packets": self.packets, "attack_packets": len(self.attack_frames),
            "counts": self.counts.to_dict(),
        }
        if with_frames:
            d["attack_frames"] = self.attack_frames.tolist()
        return d


def _exact(ns: int) -> str:
    """Epoch seconds with all nine decimals, from integers (a float would round the nanoseconds)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"
