"""The asset inventory: roles with evidence on the replay plant, FC 43/14 identity, MAC vendors, the bundle's copy."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from otsentry.alerts.ecs import asset_to_ecs
from otsentry.alerts.elastic_template import ASSET_MAPPINGS, field_types
from otsentry.assets import inventory_from_captures
from otsentry.assets.vendors import Vendors
from otsentry.cli import main
from otsentry.collectors.device_id import device_identification, object_name
from otsentry.records import ASSET_ROLES, Asset
from otsentry.synth.polling import DEFAULT_START_NS, build_plant
from otsentry.synth.scenarios import SCENARIO_OPTIONS, generate_scenario
from otsentry.synth.sim import Sim
from tests.unit.capture_builders import ether, ipv4, pcap_file, udp

SEED = 7


@pytest.fixture(scope="module")
def plant_capture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("assets") / "normal.pcap"
    generate_scenario(path, "normal", seed=SEED, learn_s=120.0, total_s=240.0)
    return path


@pytest.fixture(scope="module")
def inventory(plant_capture: Path) -> dict[str, Asset]:
    return {a.ip: a for a in inventory_from_captures([plant_capture])}


def _roles(a: Asset) -> list[str]:
    return [r for r, _ in a.roles]


def test_roles_on_the_replay_plant(inventory: dict[str, Asset]) -> None:
    plant = build_plant(Sim(random.Random(SEED)), 4, SCENARIO_OPTIONS, start_ns=DEFAULT_START_NS)
    hosts = plant.hosts
    assert _roles(inventory[hosts["hmi"].ip]) == ["hmi"]
    assert _roles(inventory[hosts["historian"].ip]) == ["historian"]
    assert _roles(inventory[hosts["eng"].ip]) == ["engineering_workstation"]
    assert _roles(inventory[hosts["dns"].ip]) == ["other"]
    gateway = next(p.plc.ip for p in plant.pollers if p.gateway)
    for name in ("plc1", "plc2", "plc3", "plc4"):
        ip = hosts[name].ip
        assert _roles(inventory[ip]) == (["plc", "gateway"] if ip == gateway else ["plc"]), name
    assert inventory[gateway].unit_ids == (1, 2, 3)
    for a in inventory.values():
        assert a.roles and all(r in ASSET_ROLES and evidence for r, evidence in a.roles)
        assert a.mac and a.first_seen <= a.last_seen
    hmi = inventory[hosts["hmi"].ip]
    assert "writes" in dict(hmi.roles)["hmi"] and set(hmi.peers) >= {hosts[f"plc{i}"].ip for i in range(1, 5)}


def test_device_identity_from_generated_fc_43_14(inventory: dict[str, Asset]) -> None:
    plant = build_plant(Sim(random.Random(SEED)), 4, SCENARIO_OPTIONS, start_ns=DEFAULT_START_NS)
    for poller in plant.pollers:
        expected = tuple((object_name(k), v) for k, v in sorted(poller.device_id.items()))
        assert inventory[poller.plc.ip].identity == expected, poller.plc.ip
    assert dict(inventory[plant.pollers[0].plc.ip].identity)["vendor_name"] in {"Siemens", "Schneider Electric"}


def test_mac_vendor_comes_from_the_manuf_database(inventory: dict[str, Asset], tmp_path: Path) -> None:
    db = tmp_path / "manuf"
    db.write_text("# test copy\n00:1B:1B\tSiemens\tSiemens AG,\n00:1B:C5:00:00:00/36\tConvergi\tConverging Systems\n"
                  "00:1B:C5\tIEEE\tIEEE Registration Authority\nbad line\n")
    v = Vendors(db)
    assert v.lookup("00:1b:1b:01:02:03") == "Siemens AG"
    assert v.lookup("00:1B:C5:00:00:99") == "Converging Systems"  # the 36-bit block inside the 24-bit one
    assert v.lookup("00:1b:c5:00:10:00") == "IEEE Registration Authority"
    assert v.lookup("02:00:00:00:00:01") == "" and v.lookup("not a mac") == ""
    assert Vendors(None).lookup("00:1b:1b:0:0:0") == ""
    siemens = [a for a in inventory.values() if a.mac.startswith("00:1b:1b")]
    if Vendors(Path("/usr/share/wireshark/manuf")).path.exists():
        assert siemens and all(a.vendor.startswith("Siemens") for a in siemens)


def test_group_addresses_are_not_assets(tmp_path: Path) -> None:
    frames = [((1_700_000_000 + i) * 10**9, ether(ipv4("10.0.0.5", dst, 17, udp(5353, 5353, bytes(20)))))
              for i, dst in enumerate(("224.0.0.251", "255.255.255.255", "10.0.0.6"))]
    path = tmp_path / "m.pcap"
    path.write_bytes(pcap_file(frames))
    assert [a.ip for a in inventory_from_captures([path])] == ["10.0.0.5", "10.0.0.6"]


def test_identity_golden_bytes_and_never_raises() -> None:
    pdu = bytes.fromhex("2b 0e 01 01 00 00 03") + b"\x00\x07Siemens" + b"\x01\x04S7-1" + b"\x02\x04V4.5"
    assert device_identification(pdu) == (("vendor_name", "Siemens"), ("product_code", "S7-1"), ("revision", "V4.5"))
    assert device_identification(pdu[:-2]) == (("vendor_name", "Siemens"), ("product_code", "S7-1"))  # truncated
    assert device_identification(bytes.fromhex("2b 0e 01 01 00 00 01 81 02 ab cd")) == (("object_0x81", "\ufffd\ufffd"),)
    assert device_identification(bytes.fromhex("ab 01")) == () and device_identification(b"") == ()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_identity_parser_takes_any_bytes(data: bytes) -> None:
    out = device_identification(b"\x2b\x0e" + data)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in out)


def test_asset_round_trip_and_ecs_fields_are_mapped(inventory: dict[str, Asset]) -> None:
    types = field_types(ASSET_MAPPINGS)
    for a in inventory.values():
        assert Asset.from_dict(json.loads(json.dumps(a.to_dict()))) == a
        doc = asset_to_ecs(a)
        assert doc["event"]["kind"] == "asset" and doc["host"]["ip"] == [a.ip]

        def walk(d, path=""):
            for k, v in d.items():
                if isinstance(v, dict):
                    yield from walk(v, f"{path}{k}.")
                elif isinstance(v, list) and v and isinstance(v[0], dict):
                    for item in v:
                        yield from walk(item, f"{path}{k}.")
                else:
                    yield f"{path}{k}", v
        for name, value in walk(doc):
            assert name in types, name


def test_the_bundle_keeps_the_learned_inventory_and_the_cli_shows_it(plant_capture: Path, tmp_path: Path) -> None:
    model = tmp_path / "plant.otsb"
    runner = CliRunner()
    assert runner.invoke(main, ["train", str(plant_capture), "--learn-for", "2m", "-o", str(model)]).exit_code == 0
    from otsentry.detectors.bundle import ModelBundle

    learned = ModelBundle.load(model).assets
    assert len(learned) == 8 and all(a.first_seen < 1_709_280_000 + 120 for a in learned)
    shown = runner.invoke(main, ["assets", "--model", str(model), "--json"])
    assert shown.exit_code == 0, shown.output
    assert [json.loads(line)["ip"] for line in shown.stdout.splitlines()] == [a.ip for a in learned]
    plcs = [a for a in learned if a.identity]
    assert plcs and all(a.identity[0][0] == "vendor_name" for a in plcs)  # object order kept through the bundle
    compared = runner.invoke(main, ["assets", str(plant_capture), "--model", str(model), "--json"])
    assert compared.exit_code == 0 and not any(json.loads(x)["new"] for x in compared.stdout.splitlines())
    assert "no such file" in runner.invoke(main, ["assets", str(tmp_path / "nope.pcap")]).output
    assert runner.invoke(main, ["assets"]).exit_code == 2
