"""The scenario catalogue as the replay commands see it, over the scenario library (``otsentry.synth.library``).

The library owns the YAML specs and the generation (with its own cache keyed by name, seed, timeline and the
simulator's source, so scoring the whole library re-reads files instead of re-simulating). This module turns a
spec into a ``ScenarioInfo`` (what students read: description, technique, timeline, what to look for) and a
generated capture into a ``Generated`` (the files to replay and score, and the ground truth's times), and adds the
``--quick`` timing. Library errors (a broken spec, an unknown name) become ``ScenarioError``: one line for the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from otsentry.errors import InputError

__all__ = ["DEFAULT_OUT", "Generated", "QUICK_ATTACK_DELAY_S", "QUICK_LEARN_S", "QUICK_TOTAL_S", "ScenarioError",
    "ScenarioInfo", "TimelineEvent", "generate", "get_scenario", "load_catalog", "quick_timing"]

DEFAULT_OUT = Path("replays") / "generated"
QUICK_LEARN_S = 300.0  # --quick: 5 minutes to learn, the attack a minute later, about 10 minutes in all
QUICK_ATTACK_DELAY_S = 60.0
QUICK_TOTAL_S = 600.0
_LOOK_FOR = ("The detectors first learned how the plant normally talks (who polls whom, with which function "
             "codes, addresses and values, how often); the attack changes one of those habits.")
_NO_ATTACK = ("Nothing malicious happens here: this is the yardstick for false alarms. Every alert after the "
              "learning period is a false positive, so a good detector stays silent.")


class ScenarioError(InputError, ValueError):
    """An unknown scenario, a broken spec, or a timing a scenario cannot be generated with; one line."""


@dataclass(frozen=True)
class TimelineEvent:
    at_s: float  # seconds from the capture's start
    what: str


@dataclass(frozen=True)
class ScenarioInfo:
    """One scenario as students see it."""

    name: str
    title: str
    description: str
    technique_id: str | None
    technique_name: str | None
    tactic: str | None
    timeline: tuple[TimelineEvent, ...]
    seed: int
    expected_rules: tuple[str, ...] = ()
    notes: str = ""
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def technique(self) -> str:
        """``T0855 Unauthorized Command Message``, or ``-`` for a scenario without an attack."""
        return " ".join(p for p in (self.technique_id, self.technique_name) if p) or "-"

    @property
    def summary(self) -> str:
        """One line for `replay list`: the spec's title."""
        return " ".join(self.title.split())

    @property
    def explanation(self) -> str:
        """What a student should look for: which rules ought to fire, and why (or what would catch it)."""
        if self.technique_id is None:
            return self.notes or _NO_ATTACK
        parts = [_LOOK_FOR]
        if self.expected_rules:
            parts.append("Expected alerts: " + ", ".join(self.expected_rules) + ".")
        else:
            parts.append("No otsentry rule is expected to catch this one.")
        if self.notes:
            parts.append(self.notes)
        return " ".join(parts)


@dataclass(frozen=True)
class Generated:
    """A scenario's files on disk and its ground truth (``ScenarioTruth.to_dict()`` form)."""

    name: str
    seed: int
    pcap: Path
    labels: Path  # frame;label
    intervals: Path  # start;end, epoch seconds
    truth: Mapping[str, Any]

    @property
    def start_ts(self) -> float:
        return float(self.truth["start_ts"])

    @property
    def learn_end_ts(self) -> float:
        return float(self.truth["learn_end_ts"])

    @property
    def learn_s(self) -> float:
        return self.learn_end_ts - self.start_ts

    @property
    def end_ts(self) -> float:
        return float(self.truth.get("last_ts") or self.learn_end_ts)

    @property
    def attack_intervals(self) -> list[tuple[float, float]]:
        return [(float(a), float(b)) for a, b in self.truth.get("attack_intervals") or ()]


def _timeline(spec: Mapping[str, Any]) -> tuple[TimelineEvent, ...]:
    tl = spec["timeline"]
    events = [TimelineEvent(0.0, "normal traffic; the detectors learn from it"),
              TimelineEvent(tl["learn_s"], "learning ends; every window is scored from here")]
    if tl.get("attack_at_s") is not None:
        tech = spec.get("technique") or {}
        events += [TimelineEvent(tl["attack_at_s"], f"attack starts: {tech.get('name', spec['title'])}"),
                   TimelineEvent(tl["attack_at_s"] + tl["duration_s"], "attack over (at the latest)")]
    events.append(TimelineEvent(tl["total_s"], "capture ends"))
    return tuple(sorted(events, key=lambda e: e.at_s))


def _info(spec: Mapping[str, Any]) -> ScenarioInfo:
    tech = spec.get("technique") or {}
    expected = spec.get("expected") or {}
    return ScenarioInfo(
        name=spec["name"], title=spec["title"], description=spec["description"], technique_id=tech.get("id"),
        technique_name=tech.get("name"), tactic=tech.get("tactic"), timeline=_timeline(spec),
        seed=int(spec["seed"]), expected_rules=tuple(expected.get("rules") or ()),
        notes=expected.get("notes") or "", spec=spec)


def load_catalog() -> dict[str, ScenarioInfo]:
    """Every scenario by name, in the library's order (``normal`` first)."""
    from otsentry.synth.library import load_specs

    try:
        return {name: _info(spec) for name, spec in load_specs().items()}
    except ValueError as exc:  # SpecError: a broken or missing spec, named with its file and key
        raise ScenarioError(str(exc)) from None


def get_scenario(name: str, catalog: Mapping[str, ScenarioInfo] | None = None) -> ScenarioInfo:
    catalog = load_catalog() if catalog is None else catalog
    try:
        return catalog[name]
    except KeyError:
        raise ScenarioError(f"unknown scenario {name!r}; known: {', '.join(catalog)}") from None


def quick_timing(info: ScenarioInfo) -> dict[str, float | None]:
    """A short timeline: 5 minutes of learning, the attack a minute later, and room for it to end.

    Chosen here rather than by the library's default shortening, which would push a long attack (the covert
    channel's ten minutes) to the very end of the capture or out of it."""
    duration = float(info.spec["timeline"]["duration_s"])
    if info.technique_id is None:
        return {"learn_s": QUICK_LEARN_S, "total_s": QUICK_TOTAL_S}
    at = QUICK_LEARN_S + QUICK_ATTACK_DELAY_S
    return {"learn_s": QUICK_LEARN_S, "attack_at_s": at, "total_s": max(QUICK_TOTAL_S, at + duration + 60.0)}


def generate(info: ScenarioInfo, out_dir: Path = DEFAULT_OUT, seed: int | None = None,
             quick: bool = False) -> Generated:
    """The scenario's capture, frame labels and attack intervals in ``out_dir`` (reused when already there)."""
    from otsentry.synth.library import generate as library_generate

    timing = quick_timing(info) if quick else {}
    try:
        pcap, labels, intervals, truth = library_generate(info.name, Path(out_dir), seed, specs={info.name: info.spec},
                                                          **timing)
    except ValueError as exc:
        raise ScenarioError(f"{info.name}: {exc}") from None
    return Generated(info.name, truth.seed, Path(pcap), Path(labels), Path(intervals), truth.to_dict())
