"""Labelled scenario captures: normal plant traffic with one attack injected at a known time.

They are the project's own test data for the detectors' quality targets: a learning part of normal traffic
(``learn_s``, 10 minutes by default), then more normal traffic in which the attack happens, and ground truth in
the two forms evaluators use: per-frame labels (``frame;label``, 1 = attack) and attack time intervals.

The normal traffic is one simulation from start to end (the same seeded processes before and after the end of
learning), so the learning part is a fair sample of what follows: polling with jitter, a steady low rate of
exceptions, the HMI's scheduled setpoint writes within a band, occasional reconnects, DNS and HTTP background.
The learning part is byte-identical across scenarios of the same seed: a baseline learned on one fits all.

``python -m otsentry.synth.scenarios NAME OUT.pcap [--seed S] [--labels OUT.csv]`` writes one and prints its
truth as JSON (no click: usable before, or without, the CLI).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from otsentry.synth.attacks import (AttackLog, Attacker, FunctionCodeSweep, LabellingWriter, QueryFlood,
                                    SetpointChange, Target, WriteFromNewHost, attacker_host)
from otsentry.synth.polling import DEFAULT_START_NS, Plant, Poller, PollingOptions, build_plant
from otsentry.synth.sim import Actor, GroundTruth, Sim

# The plant of every scenario: 4 PLCs polled by the HMI about every second (10 % jitter), the historian about
# every 5 s; ~30 frames/s, so 40 minutes is ~70,000 frames and ~10 MB.
SCENARIO_OPTIONS = PollingOptions(
    period_s=(0.95, 1.05), jitter=0.1, historian_period_s=(4.5, 5.5), exception_rate=0.005, split_rate=0.01,
    retransmission_rate=0.002, write_rate=0.02, pipeline_rate=0.05, reconnect_rate=0.001, write_band=0.1,
)
DEFAULT_DETECT_S = 1800.0  # normal traffic after learning, when total_s is not given
DEFAULT_ATTACK_DELAY_S = 300.0  # attack this long after learning ends, when attack_at_s is not given


@dataclass(frozen=True)
class ScenarioSpec:
    """What a scenario is about: the text and ATT&CK for ICS technique reported with its truth."""

    description: str
    technique_id: str | None = None
    technique_name: str | None = None
    tactic: str | None = None
    duration_s: float = 0.0  # upper bound of the attack's length, to check it fits before total_s


SCENARIOS: dict[str, ScenarioSpec] = {
    "normal": ScenarioSpec(
        "Normal operation only: the HMI and the historian polling four PLCs, scheduled setpoint writes, "
        "occasional exceptions and reconnects, DNS and HTTP background. Any alert after learning is false."),
    "write_new_host": ScenarioSpec(
        "A host never seen before connects to a PLC, reads its setpoints, then writes setpoint registers "
        "(FC 16 and FC 6) four times, seconds apart, with plausible values.",
        "T0855", "Unauthorized Command Message", "Impair Process Control", 30.0),
    "fc_sweep": ScenarioSpec(
        "A host never seen before probes function codes 1 to 127 against one PLC unit; unsupported codes "
        "get ILLEGAL_FUNCTION exceptions, device identification (FC 43/14) returns make and model.",
        "T0888", "Remote System Information Discovery", "Discovery", 30.0),
    "query_flood": ScenarioSpec(
        "A host never seen before floods a PLC with holding-register reads for 30 s, about 200 requests/s "
        "(~80x the HMI's rate); the PLC slows down and answers some with SERVER_DEVICE_BUSY.",
        "T0814", "Denial of Service", "Inhibit Response Function", 40.0),
    "setpoint_change": ScenarioSpec(
        "The usual HMI, on its usual connection, writes 9999 to a setpoint register (FC 6) whose values "
        "are otherwise within +-10 % of a few hundred; the operator restores the previous value 60 s later.",
        "T0836", "Modify Parameter", "Impair Process Control", 70.0),
}


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
    attacker_ip: str | None  # who sent the attack: a new host, or the HMI itself for setpoint_change
    target_ip: str | None
    target_unit: int | None
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


class _Until:
    """Stops an actor once its next step would be at or after ``end_ns``: the capture ends at a time."""

    def __init__(self, actor: Actor, end_ns: int) -> None:
        self.actor, self.end_ns = actor, end_ns

    def step(self, ts_ns: int) -> int | None:
        nxt = self.actor.step(ts_ns)
        return nxt if nxt is not None and nxt < self.end_ns else None


def _hmi_pollers(plant: Plant) -> list[Poller]:
    """The HMI's pollers of single-unit PLCs: the attack targets (the gateway's slow serial units are not)."""
    pollers = [p for p in plant.pollers if not p.historian]
    return [p for p in pollers if not p.gateway] or pollers


def generate_scenario(path: str | os.PathLike[str], name: str, seed: int, learn_s: float = 600.0,
                      attack_at_s: float | None = None, total_s: float | None = None, *, plcs: int = 4,
                      options: PollingOptions | None = None, start_ns: int = DEFAULT_START_NS,
                      keep_transactions: bool = False) -> ScenarioTruth:
    """Write one scenario capture (pcap, microsecond timestamps, Ethernet) and return its ground truth.

    Times are seconds from ``start_ns``: normal traffic from 0 to ``total_s`` (default ``learn_s`` + 30 min),
    the first ``learn_s`` of it for learning, the attack starting at ``attack_at_s`` (default 5 minutes after
    learning ends, or a quarter of the way into the rest when that is shorter). The same arguments give a
    byte-identical file.
    """
    spec = SCENARIOS.get(name)
    if spec is None:
        raise ValueError(f"unknown scenario {name!r} (expected one of {', '.join(SCENARIOS)})")
    total_s = learn_s + DEFAULT_DETECT_S if total_s is None else total_s
    if learn_s < 0 or total_s <= learn_s:
        raise ValueError(f"need 0 <= learn_s < total_s (got learn_s={learn_s}, total_s={total_s})")
    if name == "normal":
        if attack_at_s is not None:
            raise ValueError("the normal scenario has no attack: leave attack_at_s unset")
    else:
        if attack_at_s is None:
            attack_at_s = learn_s + min(DEFAULT_ATTACK_DELAY_S, (total_s - learn_s) / 4)
        if attack_at_s < learn_s:
            raise ValueError(f"attack_at_s={attack_at_s} is inside the learning part (learn_s={learn_s})")
        if attack_at_s + spec.duration_s > total_s:
            raise ValueError(f"{name} needs up to {spec.duration_s:.0f} s after attack_at_s={attack_at_s}, "
                             f"past total_s={total_s}")
    opts = options or SCENARIO_OPTIONS
    sim = Sim(random.Random(seed), keep_transactions)
    plant = build_plant(sim, plcs, opts, start_ns=start_ns)
    end_ns = start_ns + int(total_s * 1e9)
    actors: list[tuple[int, Actor]] = list(plant.actors)
    log = AttackLog()
    attacker_ip = target_ip = target_unit = None
    if attack_at_s is not None:
        # The attack's own RNG: drawing from the plant's would change the normal traffic before the attack.
        rng = random.Random(f"otsentry-scenario:{name}:{seed}")
        at_ns = start_ns + int(attack_at_s * 1e9)
        targets = _hmi_pollers(plant)
        poller = targets[rng.randrange(len(targets))]
        target = Target.of(poller)
        target_ip, target_unit = target.plc.ip, target.unit
        if name == "setpoint_change":
            i = next(i for i, (_, actor) in enumerate(actors) if actor is poller)
            actors[i] = (actors[i][0], SetpointChange(poller, log, rng, at_ns))
            attacker_ip = poller.client.ip
        else:
            host = attacker_host(rng, (h.ip for h in plant.hosts.values()))
            attacker_ip = host.ip
            actors.append((at_ns, _ATTACKERS[name](sim, log, rng, host, target)))
    counts = GroundTruth(seed=seed)
    with LabellingWriter(path, log) as writer:
        sim.run(writer, [(t, _Until(actor, end_ns)) for t, actor in actors], sys.maxsize, counts)
    if log.unresolved:
        raise RuntimeError(f"{log.unresolved} attack frames were never written (capture ended first)")
    if attack_at_s is not None and not log.frames:
        raise RuntimeError(f"{name}: the attack emitted no frame (was its target ever connected?)")
    intervals = []
    if log.start_ns is not None and log.end_ns is not None:
        intervals.append((log.start_ns // 1000 * 1000, -(-log.end_ns // 1000) * 1000))
    return ScenarioTruth(
        name=name, seed=seed, description=spec.description, technique_id=spec.technique_id,
        technique_name=spec.technique_name, tactic=spec.tactic, start_ns=start_ns,
        learn_end_ns=start_ns + int(learn_s * 1e9), attack_intervals_ns=intervals, attacker_ip=attacker_ip,
        target_ip=target_ip, target_unit=target_unit, packets=counts.packets, attack_frames=log.frames,
        counts=counts,
    )


_ATTACKERS: dict[str, Callable[..., Attacker]] = {
    "write_new_host": WriteFromNewHost,
    "fc_sweep": FunctionCodeSweep,
    "query_flood": QueryFlood,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otsentry.synth.scenarios",
                                     description="Write a labelled scenario capture; print its truth as JSON.")
    parser.add_argument("name", choices=sorted(SCENARIOS))
    parser.add_argument("file", help="pcap file to write")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--learn-s", type=float, default=600.0, help="seconds of normal traffic for learning")
    parser.add_argument("--attack-at-s", type=float, default=None, help="attack start, seconds from the start")
    parser.add_argument("--total-s", type=float, default=None, help="capture length in seconds")
    parser.add_argument("--labels", help="write frame;label CSV here")
    parser.add_argument("--intervals", help="write start;end CSV (epoch seconds) here")
    parser.add_argument("--frames", action="store_true", help="include the attack frame numbers in the JSON")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        truth = generate_scenario(args.file, args.name, args.seed, args.learn_s, args.attack_at_s, args.total_s)
    except ValueError as exc:
        parser.error(str(exc))
    if args.labels:
        truth.write_labels_csv(args.labels)
    if args.intervals:
        truth.write_intervals_csv(args.intervals)
    result = truth.to_dict(with_frames=args.frames)
    result["generation_s"] = round(time.perf_counter() - started, 3)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
