"""Labelled scenario captures: normal plant traffic with one attack injected at a known time.

They are the project's own test data for the detectors' quality targets: a learning part of normal traffic
(``learn_s``, 10 minutes by default), then more normal traffic in which the attack happens, and ground truth in
the two forms evaluators use: per-frame labels (``frame;label``, 1 = attack) and attack time intervals.

The normal traffic is one simulation from start to end (the same seeded processes before and after the end of
learning), so the learning part is a fair sample of what follows: polling with jitter, a steady low rate of
exceptions, the HMI's scheduled setpoint writes within a band, occasional reconnects, DNS and HTTP background.
The learning part is byte-identical across scenarios of the same seed: a baseline learned on one fits all.

``python -m otsentry.synth.scenarios NAME OUT.pcap [--seed S] [--labels OUT.csv]`` writes one and prints its
truth as JSON (no click: usable before, or without, the CLI). Each scenario's attack is injected by its entry
in ``otsentry.synth.injections``; its YAML spec (students' explanation, technique, timeline, expected alerts) is
read by ``otsentry.synth.specs``, cached generation is ``otsentry.synth.library``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

from otsentry.synth.injections import REPLAY_RECORD_BEFORE_S, REPLAY_S, SCENARIO_NAMES, Injection, inject
from otsentry.synth.ot_plant import build_ot_plant
from otsentry.synth.polling import DEFAULT_START_NS, PollingOptions, build_plant
from otsentry.synth.sim import Actor, GroundTruth, Sim
from otsentry.synth.specs import scenario_spec
from otsentry.synth.truth import AttackLog, LabellingWriter, ScenarioTruth

__all__ = ["DEFAULT_ATTACK_DELAY_S", "DEFAULT_DETECT_S", "REPLAY_RECORD_BEFORE_S", "REPLAY_S", "SCENARIO_NAMES",
           "SCENARIO_OPTIONS", "ScenarioTruth", "generate_scenario", "main"]

# The plant of every scenario: 4 PLCs polled by the HMI about every second (10 % jitter), the historian about
# every 5 s; ~30 frames/s, so 40 minutes is ~70,000 frames and ~10 MB.
SCENARIO_OPTIONS = PollingOptions(
    period_s=(0.95, 1.05), jitter=0.1, historian_period_s=(4.5, 5.5), exception_rate=0.005, split_rate=0.01,
    retransmission_rate=0.002, write_rate=0.02, pipeline_rate=0.05, reconnect_rate=0.001, write_band=0.1,
)
DEFAULT_DETECT_S = 1800.0  # normal traffic after learning, when total_s is not given
DEFAULT_ATTACK_DELAY_S = 300.0  # attack this long after learning ends, when attack_at_s is not given


class _Until:
    """Stops an actor once its next step would be at or after ``end_ns``: the capture ends at a time."""

    def __init__(self, actor: Actor, end_ns: int) -> None:
        self.actor, self.end_ns = actor, end_ns

    def step(self, ts_ns: int) -> int | None:
        nxt = self.actor.step(ts_ns)
        return nxt if nxt is not None and nxt < self.end_ns else None


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
    spec = scenario_spec(name) if name in SCENARIO_NAMES else None
    if spec is None:
        raise ValueError(f"unknown scenario {name!r} (expected one of {', '.join(SCENARIO_NAMES)})")
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
    ot = build_ot_plant(sim, seed, plant.hosts["hmi"], start_ns, log) if spec.plant == "port" else None
    if ot is not None:
        actors.extend(ot.actors)
    attacker_ip = target_ip = target_unit = None
    if attack_at_s is not None:
        # The attack's own RNG: drawing from the plant's would change the normal traffic before the attack.
        rng = random.Random(f"otsentry-scenario:{name}:{seed}")
        at_ns = start_ns + int(attack_at_s * 1e9)
        attacker_ip, target_ip, target_unit = inject(name, Injection(sim, plant, actors, log, rng, start_ns, at_ns,
                                                                     start_ns + int(learn_s * 1e9), ot))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otsentry.synth.scenarios",
                                     description="Write a labelled scenario capture; print its truth as JSON.")
    parser.add_argument("name", choices=sorted(SCENARIO_NAMES))
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
