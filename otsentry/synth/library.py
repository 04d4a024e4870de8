"""The scenario library: one YAML spec per scenario, and cached generation of its capture and ground truth.

The specs are package data (``otsentry/synth/specs/NAME.yaml``, listed in ``setup.cfg``'s
``[options.package_data]``), so an installed otsentry has them without the repository; ``replays/README.md`` points
there. A spec says what students read (title, description, ATT&CK for ICS technique), when things happen
(``timeline``: seconds from the capture's start), the seed of the reference capture, and what otsentry is
expected to raise (``expected.rules``: rule ids; ``expected.notes``: what would catch it when no rule does).

``load_specs()`` reads and validates them all (``otsentry.synth.specs``): the specs are the only copy of the
scenarios' metadata, and every scenario of the generator has one.
``generate(name, out_dir)`` writes the capture with the spec's timeline and seed into ``out_dir``
(``NAME-seedS.pcap``, ``.labels.csv``, ``.intervals.csv``, ``.truth.json``) and reuses them while the name, seed,
timeline and generator source (a hash of ``otsentry/synth``'s modules) are unchanged.

``python -m otsentry.synth.library [NAME ...] [--out DIR] [--seed S]`` generates and prints one line per scenario.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from array import array
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from otsentry.synth.scenarios import SCENARIO_NAMES, ScenarioTruth, generate_scenario
from otsentry.synth.sim import GroundTruth
from otsentry.synth.specs import SPEC_DIR, SpecError, read_specs

__all__ = ["FORMAT", "SPEC_DIR", "SpecError", "generate", "generator_hash", "load_specs", "main", "timeline_of"]

FORMAT = 1  # of the cache's truth JSON; bump when it changes

# -- specs ----------------------------------------------------------------------------------------------------------

def load_specs(directory: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every scenario spec by name, validated, in the generator's order (``normal`` first).

    ``directory`` defaults to the packaged specs. Raises ``SpecError`` for a missing or unreadable directory, a
    file that is not a valid spec, a spec for a scenario the generator does not know, or a scenario of the
    generator without a spec.
    """
    specs = read_specs(directory)
    unknown = [name for name in specs if name not in SCENARIO_NAMES]
    if unknown:
        raise SpecError(f"{SPEC_DIR if directory is None else directory}: no scenario {unknown[0]!r} in the "
                        f"generator (known: {', '.join(SCENARIO_NAMES)})")
    missing = [name for name in SCENARIO_NAMES if name not in specs] if directory is None else []
    if missing:
        raise SpecError(f"{SPEC_DIR}: the generator's scenario {missing[0]!r} has no spec ({missing[0]}.yaml)")
    return dict(sorted(specs.items(), key=lambda kv: SCENARIO_NAMES.index(kv[0])))


# -- generation -----------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def generator_hash() -> str:
    """Hash of the simulator's source and specs (``otsentry/synth``'s modules, subpackages included, but this one,
    and ``specs/*.yaml``, whose description a truth carries): what a cached capture and truth depend on."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for src in sorted([*root.rglob("*.py"), *SPEC_DIR.glob("*.yaml")]):
        if src.name != "library.py":
            h.update(str(src.relative_to(root)).encode() + b"\0" + src.read_bytes() + b"\0")
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
