"""Labelled scenario captures: normal plant traffic with one attack injected at a known time.

They are the project's own test data for the detectors' quality targets: a learning part of normal traffic
(``learn_s``, 10 minutes by default), then more normal traffic in which the attack happens, and ground truth in
the two forms evaluators use: per-frame labels (``frame;label``, 1 = attack) and attack time intervals.

The normal traffic is one simulation from start to end (the same seeded processes before and after the end of
learning), so the learning part is a fair sample of what follows: polling with jitter, a steady low rate of
exceptions, the HMI's scheduled setpoint writes within a band, occasional reconnects, DNS and HTTP background.
The learning part is byte-identical across scenarios of the same seed: a baseline learned on one fits all.

``python -m otsentry.synth.scenarios NAME OUT.pcap [--seed S] [--labels OUT.csv]`` writes one and prints its
truth as JSON (no click: usable before, or without, the CLI). The scenarios' YAML specs (students' explanation,
timeline, expected alerts) and cached generation are in ``otsentry.synth.library``.
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

from otsentry.synth.attacks import (AddressSweep, AttackLog, Attacker, CovertChannel, DiagnosticsRestart,
                                    ExceptionStorm, FreezeResponses, FunctionCodeSweep, LabellingWriter, ListenOnly,
                                    QueryFlood, ReplayOldResponses, SetpointChange, SilencedPoller, Target,
                                    UnitIdSweep, WriteFromNewHost, attacker_host)
from otsentry.synth.campaign import ListenOnlyPeriods, RepeatedCampaign
from otsentry.synth.polling import DEFAULT_START_NS, Plant, Poller, PollingOptions, build_plant
from otsentry.synth.sessions import RdpSession, SmbLateralMovement
from otsentry.synth.sim import Actor, GroundTruth, Sim

__all__ = ["DEFAULT_ATTACK_DELAY_S", "DEFAULT_DETECT_S", "REPLAY_RECORD_BEFORE_S", "REPLAY_S", "SCENARIOS",
    "SCENARIO_OPTIONS", "ScenarioSpec", "ScenarioTruth", "generate_scenario", "main"]

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
    "unit_id_sweep": ScenarioSpec(
        "A host never seen before reads one holding register (FC 3) from every unit id 0 to 247 of the serial "
        "gateway's IP: units 1-3 answer, unit 0 (broadcast) gets no answer, ids routed to the serial line get "
        "GATEWAY_TARGET_FAILED, all others GATEWAY_PATH_UNAVAILABLE.",
        "T0846", "Remote System Discovery", "Discovery", 45.0),
    "address_sweep": ScenarioSpec(
        "The historian (compromised: a known host that polls the PLC anyway) opens a new connection and reads "
        "the whole holding-register space, 0 to 65535, in blocks of 125 (FC 3); all but the first blocks get "
        "ILLEGAL_DATA_ADDRESS.",
        "T0861", "Point & Tag Identification", "Collection", 60.0),
    "replay_old_responses": ScenarioSpec(
        "A man in the middle answers the HMI's reads of one PLC for 60 s with responses it recorded during "
        "the learning part (same requests, same transaction ids, old values): the operator watches an old "
        "sequence of process values.",
        "T0856", "Spoof Reporting Message", "Evasion", 65.0),
    "spoofed_freeze": ScenarioSpec(
        "A man in the middle freezes the HMI's view of one PLC for 2 minutes: every read gets the last real "
        "answer from before the attack, so the values stop changing while the process goes on.",
        "T0830", "Adversary-in-the-Middle", "Collection", 125.0),
    "diag_restart": ScenarioSpec(
        "The engineering workstation, which never spoke Modbus, sends FC 8 restart communications and then "
        "force listen-only mode to a PLC; the PLC stops answering the HMI and the historian for 60 s, until a "
        "second restart communications brings it back.",
        "T0816", "Device Restart/Shutdown", "Inhibit Response Function", 75.0),
    "exception_storm": ScenarioSpec(
        "For 60 s a PLC answers most reads (the HMI's and the historian's) with SERVER_DEVICE_FAILURE or "
        "SERVER_DEVICE_BUSY: a device fault or the side effect of an attack on it; the operator loses the view.",
        "T0815", "Denial of View", "Impact", 65.0),
    "new_service_smb": ScenarioSpec(
        "The engineering workstation opens SMB sessions (445/tcp) to the HMI, which never offered SMB: NTLM "
        "login, then encrypted SMB3 copying a tool to ADMIN$ and running it as a service; a second session "
        "cleans up a minute or two later.",
        "T0886", "Remote Services", "Lateral Movement", 150.0),
    "new_service_rdp": ScenarioSpec(
        "A host never seen before opens a remote desktop session (RDP, 3389/tcp, NLA over TLS) on the HMI and "
        "works on it for about 2.5 minutes.",
        "T0886", "Remote Services", "Lateral Movement", 170.0),
    "covert_channel": ScenarioSpec(
        "The usual HMI, on its usual connection, writes a spare setpoint register it never writes (FC 6) every "
        "20-30 s for 10 minutes; each value (288-382, ordinary for a setpoint) is 256 + one byte of a secret, "
        "which the historian then carries out.",
        "T0869", "Standard Application Layer Protocol", "Command and Control", 605.0),
    "repeat_campaign": ScenarioSpec(
        "A host never seen before repeats a whole campaign every 5 minutes for half an hour: an address scan "
        "(80 and 502/tcp of every PLC), a function-code scan with device identification (FC 43/14), force "
        "listen-only (FC 8/4; the PLC answers nobody for 20 s) and injected setpoint writes (FC 6).",
        "T0814", "Denial of Service", "Inhibit Response Function", 1620.0),
}
# How long before the end of learning the man in the middle of ``replay_old_responses`` starts recording, and for
# how long it records (its replay lasts as long as the recording).
REPLAY_RECORD_BEFORE_S = 90.0
REPLAY_S = 60.0


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
        attacker_ip, target_ip, target_unit = _add_attack(name, sim, plant, actors, log, rng, start_ns, at_ns,
                                                          start_ns + int(learn_s * 1e9))
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


def _wrap(actors: list[tuple[int, Actor]], poller: Poller, wrapper: Actor) -> None:
    """Replace ``poller`` by ``wrapper`` (which steps it) in the plant's actor list, keeping its start time."""
    i = next(i for i, (_, actor) in enumerate(actors) if actor is poller)
    actors[i] = (actors[i][0], wrapper)


def _add_attack(name: str, sim: Sim, plant: Plant, actors: list[tuple[int, Actor]], log: AttackLog,
                rng: random.Random, start_ns: int, at_ns: int,
                learn_end_ns: int) -> tuple[str | None, str | None, int | None]:
    """Put scenario ``name``'s attack into the plant; returns (attacker IP, target IP, target unit) for the truth.

    The attacker IP is the address the attack's frames come from as the capture shows it: a new host, a known
    host misused (historian, engineering station, HMI), or None when no host of the attack appears (a man in the
    middle answering in the PLC's name, a failing PLC). The target unit is None when the attack is not about
    one unit (a unit-id sweep, SMB or RDP to the HMI).
    """
    targets = _hmi_pollers(plant)
    poller = targets[rng.randrange(len(targets))]  # every scenario draws this first: the older ones depend on it
    target = Target.of(poller)
    taken = [h.ip for h in plant.hosts.values()]
    if name == "setpoint_change":
        _wrap(actors, poller, SetpointChange(poller, log, rng, at_ns))
        return poller.client.ip, target.plc.ip, target.unit
    if name in _ATTACKERS:
        host = attacker_host(rng, taken)
        actors.append((at_ns, _ATTACKERS[name](sim, log, rng, host, target)))
        return host.ip, target.plc.ip, target.unit
    if name == "unit_id_sweep":  # the serial gateway, whose IP hides several unit ids
        gateway = next((p for p in plant.pollers if p.gateway and not p.historian), poller)
        host = attacker_host(rng, taken)
        actors.append((at_ns, UnitIdSweep(sim, log, rng, host, Target.of(gateway), gateway.banks)))
        return host.ip, gateway.plc.ip, None
    if name == "address_sweep":
        host = plant.hosts["historian"]
        actors.append((at_ns, AddressSweep(sim, log, rng, host, target)))
        return host.ip, target.plc.ip, target.unit
    if name == "diag_restart":
        host, state = plant.hosts["eng"], ListenOnly()
        actors.append((at_ns, DiagnosticsRestart(sim, log, rng, host, target, state)))
        for p in plant.pollers:
            if p.plc is target.plc:  # the HMI and the historian: nobody gets an answer in listen-only mode
                _wrap(actors, p, SilencedPoller(p, state, log, rng))
        return host.ip, target.plc.ip, target.unit
    if name == "replay_old_responses":
        record_to = max(start_ns, learn_end_ns - int((REPLAY_RECORD_BEFORE_S - REPLAY_S) * 1e9))
        record_from = max(start_ns, record_to - int(REPLAY_S * 1e9))
        poller.tamper = ReplayOldResponses(log, record_from, record_to, at_ns, REPLAY_S)
        return None, target.plc.ip, target.unit
    if name == "spoofed_freeze":
        poller.tamper = FreezeResponses(log, at_ns, 120.0)
        return None, target.plc.ip, target.unit
    if name == "exception_storm":
        storm = ExceptionStorm(log, rng, at_ns, 60.0)
        for p in plant.pollers:
            if p.plc is target.plc:
                p.tamper = storm
        return None, target.plc.ip, target.unit
    if name == "repeat_campaign":
        host, state = attacker_host(rng, taken), ListenOnlyPeriods()
        plcs = list(dict.fromkeys(p.plc for p in plant.pollers))
        actors.append((at_ns, RepeatedCampaign(sim, log, rng, host, target, plcs, state)))
        for p in plant.pollers:
            if p.plc is target.plc:
                _wrap(actors, p, SilencedPoller(p, state, log, rng))
        return host.ip, target.plc.ip, target.unit
    if name == "covert_channel":
        _wrap(actors, poller, CovertChannel(poller, log, rng, at_ns, 600.0))
        return poller.client.ip, target.plc.ip, target.unit
    hmi = plant.hosts["hmi"]
    if name == "new_service_smb":
        eng = plant.hosts["eng"]
        actors.append((at_ns, SmbLateralMovement(sim, log, rng, eng, hmi)))
        return eng.ip, hmi.ip, None
    if name == "new_service_rdp":
        host = attacker_host(rng, taken)
        actors.append((at_ns, RdpSession(sim, log, rng, host, hmi)))
        return host.ip, hmi.ip, None
    raise AssertionError(f"scenario {name!r} has a spec but no attack")


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
