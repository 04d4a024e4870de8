"""The scenario library: one YAML spec per scenario, and cached generation of its capture and ground truth.

The specs are package data (``otsentry/synth/specs/NAME.yaml``, listed in ``setup.cfg``'s
``[options.package_data]``), so an installed otsentry has them without the repository; ``replays/README.md`` points
there. A spec says what students read (title, description, ATT&CK for ICS technique), when things happen
(``timeline``: seconds from the capture's start), the seed of the reference capture, and what otsentry is
expected to raise (``expected.rules``: rule ids; ``expected.notes``: what would catch it when no rule does).

``load_specs()`` reads and validates them all: unknown keys are rejected with the key's name, and a spec must
agree with the generator's ``ScenarioSpec`` (technique and attack duration), so the two cannot drift apart.
``generate(name, out_dir)`` writes the capture with the spec's timeline and seed into ``out_dir``
(``NAME-seedS.pcap``, ``.labels.csv``, ``.intervals.csv``, ``.truth.json``) and reuses them while the name, seed,
timeline and generator source (a hash of ``otsentry/synth``'s modules) are unchanged.

``python -m otsentry.synth.library [NAME ...] [--out DIR] [--seed S]`` generates and prints one line per scenario.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from array import array
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml

from otsentry.errors import InputError
from otsentry.synth.scenarios import SCENARIOS, ScenarioTruth, generate_scenario
from otsentry.synth.sim import GroundTruth

__all__ = ["FORMAT", "SPEC_DIR", "SpecError", "generate", "generator_hash", "load_specs", "main", "timeline_of"]

SPEC_DIR = Path(__file__).resolve().parent / "specs"
FORMAT = 1  # of the cache's truth JSON; bump when it changes

_TOP_KEYS = {"name": True, "title": True, "description": True, "technique": True, "timeline": True, "seed": True,
             "expected": True}  # key -> required
_TECHNIQUE_KEYS = {"id": True, "name": True, "tactic": True}
_TIMELINE_KEYS = {"learn_s": True, "attack_at_s": True, "duration_s": True, "total_s": True}
_EXPECTED_KEYS = {"rules": True, "notes": False}


class SpecError(InputError, ValueError):
    """A scenario spec that cannot be used; the message names the file and the key."""


# -- specs ----------------------------------------------------------------------------------------------------------

def load_specs(directory: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every scenario spec by name, validated, in the generator's order (``normal`` first).

    ``directory`` defaults to the packaged specs. Raises ``SpecError`` for a missing or unreadable directory, a
    file that is not a valid spec, or a spec for a scenario the generator does not know.
    """
    folder = Path(directory) if directory is not None else SPEC_DIR
    if not folder.is_dir():
        raise SpecError(f"scenario specs not found: {folder} is not a directory (a broken otsentry install? the "
                        f"specs are package data of otsentry.synth)")
    specs: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = _load_one(path)
        specs[spec["name"]] = spec
    if not specs:
        raise SpecError(f"no scenario specs (*.yaml) in {folder}")
    order = list(SCENARIOS)
    return dict(sorted(specs.items(), key=lambda kv: order.index(kv[0])))


def _load_one(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read ({exc})") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc})") from None
    where = str(path)
    _check_keys(data, _TOP_KEYS, where)
    name = _text(data, "name", where)
    if name != path.stem:
        raise SpecError(f"{where}: name {name!r} does not match the file name (expected {path.stem!r})")
    if name not in SCENARIOS:
        raise SpecError(f"{where}: no scenario {name!r} in the generator (known: {', '.join(SCENARIOS)})")
    gen = SCENARIOS[name]
    _text(data, "title", where)
    data["description"] = " ".join(_text(data, "description", where).split())
    seed = data["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SpecError(f"{where}: seed must be a non-negative integer, got {seed!r}")

    technique = data["technique"]
    if technique is None:
        if gen.technique_id is not None:
            raise SpecError(f"{where}: technique is null but the generator says {gen.technique_id}")
    else:
        _check_keys(technique, _TECHNIQUE_KEYS, f"{where}: technique")
        got = tuple(_text(technique, k, f"{where}: technique") for k in ("id", "name", "tactic"))
        want = (gen.technique_id, gen.technique_name, gen.tactic)
        if got != want:
            raise SpecError(f"{where}: technique {got} differs from the generator's {want}")

    timeline = data["timeline"]
    _check_keys(timeline, _TIMELINE_KEYS, f"{where}: timeline")
    for key in _TIMELINE_KEYS:
        value = timeline[key]
        if value is None and key == "attack_at_s":
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise SpecError(f"{where}: timeline.{key} must be a number of seconds >= 0, got {value!r}")
        timeline[key] = float(value)
    learn, at, duration, total = (timeline[k] for k in ("learn_s", "attack_at_s", "duration_s", "total_s"))
    if duration != gen.duration_s:
        raise SpecError(f"{where}: timeline.duration_s {duration:g} differs from the generator's "
                        f"{gen.duration_s:g}")
    if (at is None) != (gen.technique_id is None):
        raise SpecError(f"{where}: timeline.attack_at_s must be null exactly when there is no attack")
    if not learn < total:
        raise SpecError(f"{where}: timeline needs learn_s < total_s")
    if at is not None and not (learn <= at and at + duration <= total):
        raise SpecError(f"{where}: timeline needs learn_s <= attack_at_s and attack_at_s + duration_s <= total_s")

    expected = data["expected"]
    _check_keys(expected, _EXPECTED_KEYS, f"{where}: expected")
    rules = expected["rules"]
    if not isinstance(rules, list) or not all(isinstance(r, str) and r for r in rules):
        raise SpecError(f"{where}: expected.rules must be a list of rule ids, got {rules!r}")
    if "notes" in expected:
        expected["notes"] = " ".join(_text(expected, "notes", f"{where}: expected").split())
    return data


def _check_keys(data: Any, allowed: Mapping[str, bool], where: str) -> None:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in data:
        if key not in allowed:
            raise SpecError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")
    for key, required in allowed.items():
        if required and key not in data:
            raise SpecError(f"{where}: missing key {key!r}")


def _text(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}: {key} must be non-empty text, got {value!r}")
    return value


# -- generation -----------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def generator_hash() -> str:
    """Hash of the simulator's source (``otsentry/synth/*.py`` but this module): what the bytes depend on."""
    h = hashlib.sha256()
    for src in sorted(Path(__file__).resolve().parent.glob("*.py")):
        if src.name != "library.py":
            h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def timeline_of(spec: Mapping[str, Any], learn_s: float | None = None, attack_at_s: float | None = None,
                total_s: float | None = None) -> tuple[float, float | None, float]:
    """(learn_s, attack_at_s, total_s): the spec's, with overrides.

    With a shorter timeline and no ``attack_at_s``, the attack keeps its delay after learning, moved earlier if
    it would not end before ``total_s`` (never into the learning part: ``generate_scenario`` refuses that).
    """
    tl = spec["timeline"]
    learn = tl["learn_s"] if learn_s is None else float(learn_s)
    total = tl["total_s"] if total_s is None else float(total_s)
    if tl["attack_at_s"] is None:
        if attack_at_s is not None:
            raise ValueError(f"{spec['name']} has no attack: leave attack_at_s unset")
        return learn, None, total
    if attack_at_s is not None:
        return learn, float(attack_at_s), total
    at = learn + (tl["attack_at_s"] - tl["learn_s"])
    if at + tl["duration_s"] > total:
        at = max(learn, total - tl["duration_s"])
    return learn, at, total


def generate(name: str, out_dir: str | os.PathLike[str], seed: int | None = None, *, learn_s: float | None = None,
             attack_at_s: float | None = None, total_s: float | None = None,
             specs: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[Path, Path, Path, ScenarioTruth]:
    """Write scenario ``name`` into ``out_dir``: (pcap, ``frame;label`` CSV, ``start;end`` CSV, truth).

    Seed and timeline come from the spec unless given. Files are reused when ``out_dir`` already holds them for
    the same name, seed, timeline and generator hash; otherwise they are (re)written, the truth JSON last, so an
    interrupted run is never mistaken for a finished one. Raises ``ValueError`` for an unknown scenario or a
    timeline the attack does not fit in.
    """
    specs = load_specs() if specs is None else specs
    spec = specs.get(name)
    if spec is None:
        raise ValueError(f"unknown scenario {name!r} (expected one of {', '.join(specs)})")
    seed = int(spec["seed"] if seed is None else seed)
    learn, at, total = timeline_of(spec, learn_s, attack_at_s, total_s)
    tl = spec["timeline"]
    stem = f"{name}-seed{seed}"
    if (learn, at, total) != (tl["learn_s"], tl["attack_at_s"], tl["total_s"]):
        stem += "-" + "-".join("none" if v is None else f"{v:g}" for v in (learn, at, total))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pcap, labels, intervals, meta = (out / f"{stem}{ext}" for ext in (".pcap", ".labels.csv", ".intervals.csv",
                                                                      ".truth.json"))
    key = {"format": FORMAT, "generator": generator_hash(), "name": name, "seed": seed,
           "timeline": {"learn_s": learn, "attack_at_s": at, "total_s": total}}
    cached = _cached(meta, key, pcap, labels, intervals)
    if cached is not None:
        return pcap, labels, intervals, cached
    meta.unlink(missing_ok=True)
    tmp = pcap.with_name(pcap.name + ".tmp")
    truth = generate_scenario(tmp, name, seed, learn, at, total)
    tmp.replace(pcap)
    truth.write_labels_csv(labels)
    truth.write_intervals_csv(intervals)
    doc = {"key": key, "pcap_bytes": pcap.stat().st_size, "truth": truth.to_dict(), "state": _state(truth)}
    tmp_meta = meta.with_name(meta.name + ".tmp")
    tmp_meta.write_text(json.dumps(doc, indent=1, sort_keys=True))
    tmp_meta.replace(meta)
    return pcap, labels, intervals, truth


def _cached(meta: Path, key: Mapping[str, Any], pcap: Path, labels: Path, intervals: Path) -> ScenarioTruth | None:
    try:
        doc = json.loads(meta.read_text())
        if doc.get("key") != key or pcap.stat().st_size != doc["pcap_bytes"]:
            return None
        if not (labels.is_file() and intervals.is_file()):
            return None
        return _from_state(doc["state"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _state(truth: ScenarioTruth) -> dict[str, Any]:
    """Everything a ``ScenarioTruth`` holds, losslessly (integer nanoseconds, frame numbers)."""
    counts = asdict(truth.counts)
    counts.pop("transactions", None)
    counts["function_codes"] = {str(k): v for k, v in counts["function_codes"].items()}
    return {
        "name": truth.name, "seed": truth.seed, "description": truth.description,
        "technique_id": truth.technique_id, "technique_name": truth.technique_name, "tactic": truth.tactic,
        "start_ns": truth.start_ns, "learn_end_ns": truth.learn_end_ns,
        "attack_intervals_ns": [list(i) for i in truth.attack_intervals_ns], "attacker_ip": truth.attacker_ip,
        "target_ip": truth.target_ip, "target_unit": truth.target_unit, "packets": truth.packets,
        "attack_frames": truth.attack_frames.tolist(), "counts": counts,
    }


def _from_state(state: Mapping[str, Any]) -> ScenarioTruth:
    counts = dict(state["counts"])
    counts["function_codes"] = {int(k): v for k, v in counts["function_codes"].items()}
    return ScenarioTruth(
        name=state["name"], seed=state["seed"], description=state["description"],
        technique_id=state["technique_id"], technique_name=state["technique_name"], tactic=state["tactic"],
        start_ns=state["start_ns"], learn_end_ns=state["learn_end_ns"],
        attack_intervals_ns=[(a, b) for a, b in state["attack_intervals_ns"]], attacker_ip=state["attacker_ip"],
        target_ip=state["target_ip"], target_unit=state["target_unit"], packets=state["packets"],
        attack_frames=array("L", state["attack_frames"]), counts=GroundTruth(**counts),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otsentry.synth.library",
                                     description="Generate scenario captures from the library's specs (cached).")
    parser.add_argument("names", nargs="*", help="scenarios (default: all)")
    parser.add_argument("--out", default=os.path.join("replays", "generated"), help="output folder")
    parser.add_argument("--seed", type=int, default=None, help="instead of each spec's seed")
    args = parser.parse_args(argv)
    specs = load_specs()
    for name in args.names or list(specs):
        started = time.perf_counter()
        try:
            pcap, _, _, truth = generate(name, args.out, args.seed, specs=specs)
        except ValueError as exc:
            parser.error(str(exc))
        print(f"{name:22} {pcap}  {truth.packets} frames, {len(truth.attack_frames)} attack frames, "
              f"{time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
