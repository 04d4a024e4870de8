"""The scenario specs: one YAML file per scenario (``specs/NAME.yaml``), the only copy of its metadata.

A spec says what students read (title, description, ATT&CK for ICS technique), when things happen (``timeline``:
seconds from the capture's start, ``duration_s`` the attack's longest length), the seed of the reference capture,
and what otsentry is expected to raise (``expected.rules``; ``expected.notes``); ``plant: port`` adds the port's
substation, crane and yard (``otsentry.synth.ot_plant``) to the Modbus plant. ``read_specs`` validates them:
unknown keys are rejected with the key's name, and an attack time is given exactly when there is a technique.
The generator (``scenarios``) takes description, technique and duration from here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml

from otsentry.errors import InputError

__all__ = ["PLANTS", "SPEC_DIR", "ScenarioSpec", "SpecError", "read_specs", "scenario_spec"]

SPEC_DIR = Path(__file__).resolve().parent / "specs"

_TOP_KEYS = {"name": True, "title": True, "description": True, "technique": True, "timeline": True, "seed": True,
             "expected": True, "plant": False}  # key -> required
PLANTS = ("modbus", "port")  # the Modbus plant alone; with the port's substation, crane and yard (ot_plant)
_TECHNIQUE_KEYS = {"id": True, "name": True, "tactic": True}
_TIMELINE_KEYS = {"learn_s": True, "attack_at_s": True, "duration_s": True, "total_s": True}
_EXPECTED_KEYS = {"rules": True, "notes": False}


class SpecError(InputError, ValueError):
    """A scenario spec that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class ScenarioSpec:
    """What the generator reports with a scenario's truth, as its spec says."""

    description: str
    technique_id: str | None = None
    technique_name: str | None = None
    tactic: str | None = None
    duration_s: float = 0.0  # upper bound of the attack's length, to check it fits before total_s
    plant: str = "modbus"  # one of PLANTS

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> "ScenarioSpec":
        t = spec["technique"] or {}
        return cls(spec["description"], t.get("id"), t.get("name"), t.get("tactic"), spec["timeline"]["duration_s"],
                   spec.get("plant", "modbus"))


def read_specs(directory: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every spec of ``directory`` (default: the packaged specs) by name, validated, in file-name order."""
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
    return specs


@lru_cache(maxsize=None)
def scenario_spec(name: str) -> ScenarioSpec | None:
    """The packaged spec of scenario ``name`` (None when there is none)."""
    spec = read_specs().get(name)
    return None if spec is None else ScenarioSpec.of(spec)


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
    _text(data, "title", where)
    data["description"] = " ".join(_text(data, "description", where).split())
    if data.setdefault("plant", "modbus") not in PLANTS:
        raise SpecError(f"{where}: plant must be one of {', '.join(PLANTS)}, got {data['plant']!r}")
    seed = data["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise SpecError(f"{where}: seed must be a non-negative integer, got {seed!r}")

    technique = data["technique"]
    if technique is not None:
        _check_keys(technique, _TECHNIQUE_KEYS, f"{where}: technique")
        for k in ("id", "name", "tactic"):
            _text(technique, k, f"{where}: technique")

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
    if (at is None) != (technique is None):
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
