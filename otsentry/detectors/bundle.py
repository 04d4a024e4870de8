"""Model bundles: what ``otsentry train`` saves and ``otsentry run`` loads, in one file.

A bundle (conventionally ``*.otsb``) is a zip archive with three members:

* ``manifest.json``: format and versions (bundle format, otsentry, feature schema, scikit-learn, PyOD), window
  length, training statistics (windows, pairs, duration, capture names), creation time, each detector's kind and
  threshold, the policy class name, and the SHA-256 of the two other members (plus an optional HMAC, below);
* ``policy.json``: the policy baseline's state (allow-lists, learned ranges) as plain JSON;
* ``assets.json`` and ``variables.json`` (optional, newer bundles): the asset inventory and the process variables
  learned with the baseline (``records.Asset``, ``records.ProcessVariable``);
* ``models.pickle``: the fitted anomaly detectors, a zlib-compressed standard pickle: otsentry objects holding NumPy
  arrays. The scorers are NumPy-only copies of the PyOD / scikit-learn models (see ``compact``), so loading imports
  neither library. Format 3 dropped joblib for plain pickle: importing joblib alone cost ``otsentry run --model``
  about as much start-up time as importing NumPy. Format-1 bundles (PyOD objects) and format-2 bundles (joblib) are
  refused with a request to retrain.

**Trust.** Unpickling runs code chosen by whoever wrote the file, so only load bundles you made or trust. ``load``
reads and checks the manifest (format, versions, schema, checksums) *before* it unpickles anything, so a damaged,
truncated, stale or edited bundle is refused with a one-line reason and nothing from it runs. The checksums catch
corruption and tampering after save, not a malicious creator, who can write matching checksums. For that, set
``OTSENTRY_BUNDLE_KEY`` (any secret string) when training and when running: the manifest is then signed with
HMAC-SHA256 and, while the variable is set, ``load`` refuses bundles that are unsigned or signed with another key.

Compatibility: a bundle is loaded only by an otsentry of the same major.minor version, with the same feature schema
and the same scikit-learn and PyOD major.minor versions (pickles across those are not guaranteed to behave the same).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from otsentry import __version__
from otsentry.contracts.schema import FEATURE_SCHEMA_VERSION
from otsentry.errors import InputError
from otsentry.records import Alert, Asset, FeatureWindow, ProcessVariable

__all__ = ["ASSETS", "BundleError", "DEFAULT_POLICY_CLASS", "FORMAT", "FORMAT_VERSION", "KEY_ENV", "MANIFEST",
    "MODELS", "ModelBundle", "OPTIONAL", "POLICY", "PROCESS_RULE", "TrainingStats", "VARIABLES", "read_manifest"]

FORMAT = "otsentry-model-bundle"
FORMAT_VERSION = 3  # 2: NumPy-only scorers (detectors.compact); 3: plain pickle instead of joblib
KEY_ENV = "OTSENTRY_BUNDLE_KEY"
MANIFEST, POLICY, MODELS, ASSETS = "manifest.json", "policy.json", "models.pickle", "assets.json"
VARIABLES = "variables.json"
OPTIONAL = (ASSETS, VARIABLES)
_MODELS_ZLIB_LEVEL = 3  # what joblib's compress=3 used: the same size for the same work
DEFAULT_POLICY_CLASS = "otsentry.detectors.policy.PolicyBaseline"
_RETRAIN = "retrain with otsentry train"


class BundleError(InputError, ValueError):
    """A bundle that cannot be used; the message is one line and names the file."""


@dataclass(frozen=True)
class TrainingStats:
    """What the models learned from: shown by ``otsentry`` when a bundle is inspected or loaded."""

    windows: int
    pairs: int
    duration_s: float
    captures: tuple[str, ...] = ()

    @classmethod
    def from_windows(cls, windows: Iterable[FeatureWindow], captures: Iterable[str] = ()) -> "TrainingStats":
        windows = list(windows)
        pairs = {(w.kind, w.client_ip, w.server_ip, w.unit_id, w.port, w.transport) for w in windows}
        start = min((w.window_start for w in windows), default=0.0)
        end = max((w.window_end for w in windows), default=0.0)
        return cls(len(windows), len(pairs), round(end - start, 6), tuple(str(c) for c in captures))


@dataclass
class ModelBundle:
    """The learned baseline: anomaly detectors by name, a policy baseline, and what they were trained on.

    ``policy`` is any object with ``to_state() -> dict`` (JSON-serialisable) and a ``from_state(dict)`` classmethod.
    """

    detectors: Mapping[str, Any]
    policy: Any | None
    window_s: float
    training: TrainingStats
    schema_version: str = FEATURE_SCHEMA_VERSION
    otsentry_version: str = __version__
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    assets: tuple[Asset, ...] = ()
    variables: tuple[ProcessVariable, ...] = ()
    audit: tuple[Mapping[str, Any], ...] = ()  # what analysts accepted as normal since training (baseline accept)

    def detect(self, windows: Iterable[FeatureWindow]) -> list[Alert]:
        """Alerts from the policy baseline (when it can ``detect``) and every detector, by window then rule."""
        windows = list(windows)
        alerts: list[Alert] = []
        for detector in ([self.policy] if hasattr(self.policy, "detect") else []) + list(self.detectors.values()):
            alerts.extend(detector.detect(windows))
        return sorted(alerts, key=lambda a: (a.window_start, a.client_ip, a.server_ip, a.unit_id, a.rule_id))

    def with_accepted(self, alerts: Iterable[Alert], reason: str, by: str, incident: str = "") -> "ModelBundle":
        """A copy whose policy also allows exactly what ``alerts`` reported, with an audit entry (when, who, why,
        which alerts); models and inventory are unchanged. ``NotAcceptable`` (a ValueError) names an alert no
        policy fact can allow."""
        alerts = list(alerts)
        process = [a for a in alerts if a.rule_id == PROCESS_RULE]
        rest = [a for a in alerts if a.rule_id != PROCESS_RULE]
        if rest and (self.policy is None or not hasattr(self.policy, "accept")):
            raise BundleError("this bundle has no policy baseline to accept alerts into")
        if not reason.strip():
            raise ValueError("a reason is required: it is what the audit trail is for")
        rules: dict[str, int] = {}
        for a in alerts:
            rules[a.rule_id] = rules.get(a.rule_id, 0) + 1
        entry = {"accepted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "by": by, "reason": reason,
                 "alerts": [a.id for a in alerts], "rules": dict(sorted(rules.items())), "incident": incident or None}
        policy = self.policy.accept(rest) if rest else self.policy
        return replace(self, policy=policy, variables=_widened(self.variables, process), audit=(*self.audit, entry))

    def save(self, path: str | Path) -> Path:
        """Write the bundle atomically (temporary file, then rename) and return its path."""
        path = Path(path)
        models = zlib.compress(pickle.dumps(dict(self.detectors), protocol=pickle.HIGHEST_PROTOCOL),
                               _MODELS_ZLIB_LEVEL)
        policy_state = self.policy.to_state() if self.policy is not None else None
        policy = json.dumps(policy_state, sort_keys=True, indent=1).encode()
        assets = json.dumps([a.to_dict() for a in self.assets], sort_keys=True, indent=1).encode()
        variables = json.dumps([v.to_dict() for v in self.variables], sort_keys=True).encode()
        members = {POLICY: policy, MODELS: models, ASSETS: assets, VARIABLES: variables}
        manifest = self._manifest({name: _sha256(data) for name, data in members.items()})
        key = os.environ.get(KEY_ENV)
        if key:
            manifest["hmac_sha256"] = _sign(manifest, key)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
                archive.writestr(MANIFEST, json.dumps(manifest, sort_keys=True, indent=1))
                for name, data in members.items():
                    archive.writestr(name, data)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def _manifest(self, checksums: dict[str, str]) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "otsentry_version": self.otsentry_version,
            "schema_version": self.schema_version,
            "libraries": _library_versions(),
            "window_s": self.window_s,
            "created": self.created,
            "training": {**asdict(self.training), "captures": list(self.training.captures)},
            "detectors": {name: _describe(d) for name, d in self.detectors.items()},
            "policy_class": _class_path(self.policy) if self.policy is not None else None,
            "audit": [dict(entry) for entry in self.audit],
            "sha256": checksums,
        }

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        policy_from_state: Callable[[dict[str, Any]], Any] | None = None,
    ) -> "ModelBundle":
        """Read, check, then unpickle a bundle; any problem raises ``BundleError`` naming the file.

        ``policy_from_state`` rebuilds the policy from its JSON state; by default the class named in the manifest,
        which must live in the ``otsentry`` package (a bundle cannot make ``load`` import arbitrary modules).
        """
        path = Path(path)
        manifest, members = _read_checked(path)
        try:
            assets = tuple(Asset.from_dict(a) for a in json.loads(members[ASSETS])) if ASSETS in members else ()
            variables = tuple(ProcessVariable.from_dict(v) for v in json.loads(members[VARIABLES])) \
                if VARIABLES in members else ()
        except (ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"{path.name}: the asset inventory could not be read ({exc}): {_RETRAIN}") from None
        try:
            detectors = pickle.loads(zlib.decompress(members[MODELS]))
            state = json.loads(members[POLICY])
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is one reason to refuse
            raise BundleError(f"{path.name}: models could not be read ({type(exc).__name__}: {exc}): {_RETRAIN}")
        policy = None
        if state is not None:
            build = policy_from_state or _policy_class(path, manifest.get("policy_class")).from_state
            try:
                policy = build(state)
            except (KeyError, TypeError, ValueError) as exc:
                raise BundleError(f"{path.name}: policy baseline could not be rebuilt ({exc}): {_RETRAIN}") from None
        training = manifest["training"]
        return cls(
            detectors=detectors,
            policy=policy,
            window_s=float(manifest["window_s"]),
            training=TrainingStats(
                int(training["windows"]), int(training["pairs"]), float(training["duration_s"]),
                tuple(training.get("captures", ())),
            ),
            schema_version=manifest["schema_version"],
            otsentry_version=manifest["otsentry_version"],
            created=manifest["created"],
            assets=assets,
            variables=variables,
            audit=tuple(manifest.get("audit", ())),
        )


PROCESS_RULE = "policy.process_value_out_of_range"


def _widened(variables: tuple[ProcessVariable, ...], alerts: list[Alert]) -> tuple[ProcessVariable, ...]:
    """The process variables with the values these alerts reported taken into their learned ranges."""
    if not alerts:
        return variables
    seen: dict[tuple[str, int, str, int], list[float]] = {}
    for a in alerts:
        for e in a.evidence:  # evidence names are "<table>_<address>", values the register's value
            table, _, address = e.name.rpartition("_")
            if not address.isdigit():
                raise ValueError(f"alert {a.id}: evidence {e.name!r} names no register")
            seen.setdefault((a.server_ip, a.unit_id, table, int(address)), []).append(e.value)
    out = []
    for v in variables:
        extra = seen.pop(v.key, None)
        out.append(replace(v, low=min(v.low, *extra), high=max(v.high, *extra)) if extra else v)
    if seen:
        raise ValueError(f"registers {', '.join(f'{k[2]} {k[3]} of {k[0]} unit {k[1]}' for k in seen)} are not "
                         "process variables of this bundle")
    return tuple(out)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The checked manifest of a bundle, without unpickling anything (safe on any file, e.g. for ``inspect``)."""
    return _read_checked(Path(path))[0]


def _read_checked(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    name = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if MANIFEST not in names:
                raise BundleError(f"{name}: not an otsentry model bundle (no {MANIFEST})")
            raw_manifest = archive.read(MANIFEST)
            # Missing members are reported after the format check: a bundle of another format (whose members
            # have other names) is refused for its format, the one-line reason that tells what to do.
            missing = [m for m in (POLICY, MODELS) if m not in names]
            members = {m: archive.read(m) for m in (POLICY, MODELS, *OPTIONAL) if m in names}
    except BundleError:
        raise
    except FileNotFoundError:
        raise BundleError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise BundleError(f"{name}: is a directory, not a model bundle") from None
    except zipfile.BadZipFile as exc:
        raise BundleError(f"{name}: {_zip_problem(path, exc)}") from None
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise BundleError(f"{name}: cannot read the bundle ({type(exc).__name__}: {exc})") from None
    try:
        manifest = json.loads(raw_manifest)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{name}: unreadable {MANIFEST} ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{name}: not an otsentry model bundle (manifest format is not {FORMAT})")
    _check_compatible(name, manifest)
    if missing:
        raise BundleError(f"{name}: incomplete bundle, missing {', '.join(missing)}: {_RETRAIN}")
    for optional in OPTIONAL:
        if optional in manifest.get("sha256", {}) and optional not in members:
            raise BundleError(f"{name}: incomplete bundle, missing {optional}: {_RETRAIN}")
    for member, data in members.items():
        expected = manifest.get("sha256", {}).get(member)
        if expected != _sha256(data):
            raise BundleError(f"{name}: checksum mismatch for {member}: the file was modified or damaged after save")
    _check_signature(name, manifest)
    return manifest, members


def _check_compatible(name: str, manifest: Mapping[str, Any]) -> None:
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{name}: bundle format {version}, this otsentry reads format {FORMAT_VERSION}: {_RETRAIN}")
    made_by = str(manifest.get("otsentry_version"))
    if _major_minor(made_by) != _major_minor(__version__):
        raise BundleError(f"{name}: made by otsentry {made_by}, this is otsentry {__version__}: {_RETRAIN}")
    schema = manifest.get("schema_version")
    if schema != FEATURE_SCHEMA_VERSION:
        raise BundleError(
            f"{name}: trained with feature schema {schema}, this otsentry uses {FEATURE_SCHEMA_VERSION}: {_RETRAIN}"
        )
    installed = _library_versions()
    for library, saved in (manifest.get("libraries") or {}).items():
        if library in installed and _major_minor(saved) != _major_minor(installed[library]):
            raise BundleError(f"{name}: saved with {library} {saved}, installed is {installed[library]}: {_RETRAIN}")


def _check_signature(name: str, manifest: Mapping[str, Any]) -> None:
    key = os.environ.get(KEY_ENV)
    if not key:
        return
    signature = manifest.get("hmac_sha256")
    if not signature:
        raise BundleError(f"{name}: bundle is not signed but {KEY_ENV} is set: retrain with the key set")
    if not hmac.compare_digest(str(signature), _sign(manifest, key)):
        raise BundleError(f"{name}: signature does not match {KEY_ENV}: the bundle was signed with another key")


def _zip_problem(path: Path, exc: Exception) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        return f"truncated or damaged bundle ({exc}): copy it again or {_RETRAIN}"
    return "not an otsentry model bundle (not a zip archive)"


def _policy_class(path: Path, class_path: Any) -> Any:
    class_path = str(class_path or DEFAULT_POLICY_CLASS)
    module_name, _, attr = class_path.rpartition(".")
    if not (module_name == "otsentry" or module_name.startswith("otsentry.")):
        raise BundleError(f"{path.name}: policy class {class_path} is outside the otsentry package; refusing to import")
    import importlib

    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        raise BundleError(f"{path.name}: policy class {class_path} is not available in this otsentry") from None


def _sign(manifest: Mapping[str, Any], key: str) -> str:
    body = json.dumps({k: v for k, v in manifest.items() if k != "hmac_sha256"}, sort_keys=True).encode()
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(str(version).split(".")[:2])


def _class_path(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _library_versions() -> dict[str, str]:
    """Versions of the libraries whose objects end up in ``models.pickle``."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for dist in ("scikit-learn", "pyod"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return found


def _describe(detector: Any) -> dict[str, Any]:
    """Human-readable facts about a detector for the manifest (thresholds, members, learning size)."""
    facts: dict[str, Any] = {"class": _class_path(detector)}
    for attr in ("kind", "combine", "false_alarm_rate", "threshold_", "n_train_windows_", "n_train_pairs_"):
        if hasattr(detector, attr):
            value = getattr(detector, attr)
            facts[attr.rstrip("_")] = float(value) if attr == "threshold_" else value
    ensemble = getattr(detector, "ensemble_", None)
    if ensemble is not None:
        facts["members"] = {
            name: float(member.threshold_) for name, member in zip(ensemble.member_names_, ensemble.members_)
        }
    return facts
