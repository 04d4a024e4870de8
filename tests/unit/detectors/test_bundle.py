"""Model bundles: round trip, and refusal (one line, naming the file) of anything stale, damaged or foreign."""

from __future__ import annotations

import json
import pickle
import zipfile
from functools import cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from otsentry import __version__
from otsentry.detectors.anomaly import AnomalyWindowDetector
from otsentry.detectors.bundle import BundleError, ModelBundle, TrainingStats, read_manifest
from otsentry.contracts.schema import FEATURE_SCHEMA_VERSION
from tests.unit.detector_data import flood_rows, normal_rows, windows_from_rows


class FakePolicy:
    """The policy-baseline interface a bundle relies on: to_state / from_state."""

    def __init__(self, talkers: set[str]) -> None:
        self.talkers = talkers

    def to_state(self) -> dict[str, Any]:
        return {"talkers": sorted(self.talkers)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "FakePolicy":
        return cls(set(state["talkers"]))


class Marker:
    """A pickle that touches a file when loaded: proof that a refused bundle runs nothing."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (Path.touch, (self.path,))


@cache
def training_windows() -> tuple:
    return tuple(windows_from_rows(normal_rows(240, np.random.default_rng(31))))


@cache
def fitted() -> AnomalyWindowDetector:
    return AnomalyWindowDetector(members=("ecod", "iforest", "knn")).fit(training_windows())


def make_bundle(**overrides: Any) -> ModelBundle:
    fields: dict[str, Any] = dict(
        detectors={"pair": fitted()},
        policy=FakePolicy({"10.0.0.10", "10.0.0.11"}),
        window_s=10.0,
        training=TrainingStats.from_windows(training_windows(), captures=["normal-1h.pcap"]),
    )
    return ModelBundle(**{**fields, **overrides})


def load(path: Path) -> ModelBundle:
    return ModelBundle.load(path, policy_from_state=FakePolicy.from_state)


def refusal(path: Path) -> str:
    with pytest.raises(BundleError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path.name}: ")
    return message


def rewrite(path: Path, edit: Callable[[dict[str, bytes]], None]) -> None:
    """Rewrite the archive with edited members (valid zip CRCs, so only our own checks can notice)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    edit(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def edit_manifest(path: Path, **changes: Any) -> None:
    def edit(members: dict[str, bytes]) -> None:
        manifest = json.loads(members["manifest.json"])
        manifest.update(changes)
        members["manifest.json"] = json.dumps(manifest).encode()

    rewrite(path, edit)


def test_round_trip(tmp_path: Path) -> None:
    path = make_bundle().save(tmp_path / "model.otsb")
    loaded = load(path)
    rows = np.vstack([normal_rows(20, np.random.default_rng(1)), flood_rows(4, np.random.default_rng(2))])
    windows = windows_from_rows(rows)
    assert loaded.detectors["pair"].detect(windows) == fitted().detect(windows)
    assert loaded.detectors["pair"].threshold_ == fitted().threshold_
    assert loaded.policy.talkers == {"10.0.0.10", "10.0.0.11"}
    assert loaded.training == make_bundle().training
    assert loaded.training.windows == 240 and loaded.training.pairs == 4 and loaded.training.duration_s == 600.0
    assert (loaded.window_s, loaded.schema_version, loaded.otsentry_version) == (10.0, FEATURE_SCHEMA_VERSION, __version__)
    manifest = read_manifest(path)
    assert manifest["detectors"]["pair"]["threshold"] == pytest.approx(fitted().threshold_)
    assert set(manifest["detectors"]["pair"]["members"]) == {"ecod", "iforest", "knn"}
    assert set(manifest["sha256"]) == {"policy.json", "models.pickle", "assets.json", "variables.json"}


def test_bundle_without_policy(tmp_path: Path) -> None:
    loaded = load(make_bundle(policy=None).save(tmp_path / "m.otsb"))
    assert loaded.policy is None


def test_schema_mismatch_is_refused(tmp_path: Path) -> None:
    path = make_bundle(schema_version="pair-flow-v0").save(tmp_path / "model.otsb")
    assert refusal(path) == (
        f"model.otsb: trained with feature schema pair-flow-v0, this otsentry uses {FEATURE_SCHEMA_VERSION}: "
        "retrain with otsentry train"
    )


def test_other_otsentry_version_is_refused(tmp_path: Path) -> None:
    path = make_bundle(otsentry_version="9.9.0").save(tmp_path / "model.otsb")
    assert "made by otsentry 9.9.0" in refusal(path)


def test_same_major_minor_is_accepted(tmp_path: Path) -> None:
    major, minor, *_ = __version__.split(".")
    load(make_bundle(otsentry_version=f"{major}.{minor}.99").save(tmp_path / "model.otsb"))


@pytest.mark.parametrize("version", [1, 2])  # 1 pickled PyOD objects, 2 stored the models with joblib
def test_other_format_version_is_refused(tmp_path: Path, version: int) -> None:
    path = make_bundle().save(tmp_path / "model.otsb")
    edit_manifest(path, format_version=version)
    assert refusal(path) == (f"model.otsb: bundle format {version}, this otsentry reads format 3: "
                             "retrain with otsentry train")


def test_other_scikit_learn_version_is_refused(tmp_path: Path) -> None:
    path = make_bundle().save(tmp_path / "model.otsb")
    edit_manifest(path, libraries={"scikit-learn": "0.1.0"})
    assert "saved with scikit-learn 0.1.0" in refusal(path)


def test_tampered_models_are_refused_before_unpickling(tmp_path: Path) -> None:
    path = make_bundle().save(tmp_path / "model.otsb")
    marker = tmp_path / "pwned"

    def swap(members: dict[str, bytes]) -> None:
        members["models.pickle"] = pickle.dumps(Marker(marker))

    rewrite(path, swap)
    assert "checksum mismatch for models.pickle" in refusal(path)
    assert not marker.exists()


def test_tampered_policy_is_refused(tmp_path: Path) -> None:
    path = make_bundle().save(tmp_path / "model.otsb")

    def widen(members: dict[str, bytes]) -> None:
        members["policy.json"] = json.dumps({"talkers": ["10.6.6.6"]}).encode()

    rewrite(path, widen)
    assert "checksum mismatch for policy.json" in refusal(path)


def test_flipped_byte_is_refused(tmp_path: Path) -> None:
    path = make_bundle().save(tmp_path / "model.otsb")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    message = refusal(path)
    assert "damaged" in message or "checksum mismatch" in message


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = make_bundle().save(tmp_path / "model.otsb")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "truncated or damaged bundle" in refusal(path)


@pytest.mark.parametrize("content", [b"", b"hello, not a bundle\n", b"\x00" * 1000])
def test_not_a_bundle_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "capture.pcap"
    path.write_bytes(content)
    assert "not an otsentry model bundle" in refusal(path)


def test_other_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hi")
    assert refusal(path) == "other.zip: not an otsentry model bundle (no manifest.json)"


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert refusal(tmp_path / "nope.otsb") == "nope.otsb: no such file"


def test_policy_class_outside_otsentry_is_not_imported(tmp_path: Path) -> None:
    path = make_bundle().save(tmp_path / "model.otsb")
    with pytest.raises(BundleError, match="outside the otsentry package"):
        ModelBundle.load(path)


def test_signed_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTSENTRY_BUNDLE_KEY", "sensor-secret")
    path = make_bundle().save(tmp_path / "model.otsb")
    assert read_manifest(path)["hmac_sha256"]
    load(path)
    edit_manifest(path, window_s=60.0)  # checksums still match: only the signature notices
    assert "signature does not match" in refusal(path)
    path = make_bundle().save(tmp_path / "model.otsb")
    monkeypatch.setenv("OTSENTRY_BUNDLE_KEY", "another-secret")
    assert "signature does not match" in refusal(path)
    monkeypatch.delenv("OTSENTRY_BUNDLE_KEY")
    load(path)  # without a key, the checksums are still verified and a signed bundle loads


def test_unsigned_bundle_is_refused_when_a_key_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTSENTRY_BUNDLE_KEY", raising=False)
    path = make_bundle().save(tmp_path / "model.otsb")
    monkeypatch.setenv("OTSENTRY_BUNDLE_KEY", "sensor-secret")
    assert "not signed" in refusal(path)


def test_real_policy_baseline_round_trips(tmp_path: Path) -> None:
    policy_module = pytest.importorskip("otsentry.detectors.policy")
    policy = policy_module.PolicyBaseline().fit(training_windows())
    loaded = ModelBundle.load(make_bundle(policy=policy).save(tmp_path / "model.otsb"))
    assert type(loaded.policy) is policy_module.PolicyBaseline
    assert loaded.policy.to_state() == policy.to_state()


def test_assets_and_audit_round_trip_and_older_bundles_without_assets_still_load(tmp_path: Path) -> None:
    from otsentry.records import Asset

    assets = (Asset("10.0.0.10", "00:1b:1b:01:02:03", "Siemens AG", (("plc", "answers Modbus/TCP"),), (1,),
                    identity=(("vendor_name", "Siemens"), ("product_code", "S7"))),)
    audit = ({"accepted_at": "2026-12-03T12:00:00Z", "by": "analyst", "reason": "new HMI", "alerts": ["a" * 32]},)
    path = make_bundle(assets=assets, audit=audit).save(tmp_path / "b.otsb")
    loaded = load(path)
    assert loaded.assets == assets and [dict(e) for e in loaded.audit] == [dict(e) for e in audit]

    def drop_assets(members: dict[str, bytes]) -> None:  # what a bundle of the previous release holds
        del members["assets.json"]
        manifest = json.loads(members["manifest.json"])
        del manifest["sha256"]["assets.json"]
        members["manifest.json"] = json.dumps(manifest).encode()

    rewrite(path, drop_assets)
    assert load(path).assets == ()
    path2 = make_bundle(assets=assets).save(tmp_path / "c.otsb")
    rewrite(path2, lambda m: m.pop("assets.json"))
    assert "missing assets.json" in refusal(path2)
    path3 = make_bundle(assets=assets).save(tmp_path / "d.otsb")
    rewrite(path3, lambda m: m.update({"assets.json": b"[]"}))
    assert "checksum mismatch for assets.json" in refusal(path3)
