"""`otsentry replay`: list, show, unknown names, generate, score --json on short scenarios, and the pacing."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from otsentry.cli import main
from otsentry.replay.catalog import load_catalog
from otsentry.replay.paced import by_slot, paced, parse_speed

REQUIRED = {"name", "detected", "time_to_detect_s", "precision", "recall", "f1", "false_alerts_per_hour"}


def invoke(*args: str):
    return CliRunner().invoke(main, ["replay", *args])


def test_list_shows_every_scenario_with_its_technique():
    res = invoke("list")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "technique", "description"]
    catalog = load_catalog()
    assert len(catalog) >= 5 and len(lines) == len(catalog) + 1
    for (name, info), line in zip(catalog.items(), lines[1:]):
        assert line.startswith(name + " ")
        assert (info.technique_id or "-") in line
    assert any("T0888" in line for line in lines)


def test_show_prints_description_technique_and_timeline():
    res = invoke("show", "fc_sweep")
    assert res.exit_code == 0, res.output
    assert "T0888" in res.stdout and "Remote System Information Discovery" in res.stdout
    assert "timeline" in res.stdout and "learning ends" in res.stdout
    assert "function codes" in res.stdout  # the description


@pytest.mark.parametrize("args", [("show", "no_such"), ("generate", "no_such"), ("run", "no_such"),
                                  ("score", "no_such", "--json")])
def test_unknown_scenario_is_a_one_line_error_naming_the_known_ones(args):
    res = invoke(*args)
    assert res.exit_code == 2
    err = res.output.strip()
    assert len(err.splitlines()) == 1 and "unknown scenario 'no_such'" in err
    assert "fc_sweep" in err and "normal" in err


@pytest.mark.parametrize("args, needle", [
    (("score",), "names or --all"),
    (("score", "fc_sweep", "--all"), "names or --all"),
    (("run", "fc_sweep", "--speed", "fast"), "speed-up factor"),
    (("run", "fc_sweep", "--speed", "10x", "--as-fast-as-possible"), "not both"),
])
def test_bad_options_are_one_line_errors(args, needle):
    res = invoke(*args)
    assert res.exit_code == 2 and needle in res.output and len(res.output.strip().splitlines()) == 1


def test_parse_speed():
    assert parse_speed("10x") == 10 and parse_speed(" 2.5X ") == 2.5 and parse_speed("1") == 1
    for bad in ("0x", "-3x", "x", "fast", "infx"):
        with pytest.raises(ValueError):
            parse_speed(bad)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_paced_releases_items_in_scaled_capture_time():
    clock = FakeClock()
    seen = []
    for t in paced([1000.0, 1010.0, 1010.0, 1100.0], lambda t: t, speed=10, origin=990.0, clock=clock,
                   sleep=clock.sleep):
        seen.append((t, round(clock.now - 100.0, 6)))
    # item at capture time t comes (t - origin) / speed seconds after the start
    assert seen == [(1000.0, 1.0), (1010.0, 2.0), (1010.0, 2.0), (1100.0, 11.0)]


def test_paced_never_sleeps_when_the_consumer_is_late():
    clock = FakeClock()
    for _ in paced([0.0, 10.0, 20.0], lambda t: t, speed=1, clock=clock, sleep=clock.sleep):
        clock.now += 50  # slow consumer
    assert clock.sleeps == []


def test_by_slot_splits_groups_by_closing_time():
    class W:
        def __init__(self, end: float) -> None:
            self.window_end = end

    groups = [[W(20), W(10), W(10)], [W(30)]]
    assert [[w.window_end for w in g] for g in by_slot(groups)] == [[10, 10], [20], [30]]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("replay-cache")


@pytest.mark.slow
def test_generate_writes_capture_and_labels(cache):
    res = invoke("generate", "fc_sweep", "--quick", "--seed", "3", "--out", str(cache))
    assert res.exit_code == 0, res.output
    paths = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in res.stdout.splitlines()}
    from pathlib import Path

    pcap, labels, intervals = Path(paths["capture"]), Path(paths["frame labels"]), Path(paths["attack intervals"])
    assert pcap.stat().st_size > 100_000 and pcap.parent == cache
    assert labels.read_text().startswith("frame;label\n") and ";1\n" in labels.read_text()
    assert len(intervals.read_text().splitlines()) == 2  # header + one attack


@pytest.mark.slow
def test_score_json_on_short_scenarios(cache):
    res = invoke("score", "fc_sweep", "normal", "--quick", "--seed", "3", "--cache", str(cache), "--json",
                 "--no-progress")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # exactly one object on stdout
    assert set(doc) == {"scenarios", "overall"} and set(doc["overall"]) == {"precision", "recall", "f1"}
    by_name = {s["name"]: s for s in doc["scenarios"]}
    assert list(by_name) == ["fc_sweep", "normal"]
    for s in doc["scenarios"]:
        assert REQUIRED <= set(s)
    sweep, normal = by_name["fc_sweep"], by_name["normal"]
    assert sweep["detected"] is True and 0 < sweep["time_to_detect_s"] <= 20
    assert sweep["recall"] == 1.0 and sweep["precision"] > 0.5 and sweep["f1"] > 0.5
    assert normal["detected"] is None and normal["precision"] is None and normal["false_alerts_per_hour"] >= 0
    # overall is the micro-average over every scenario's units
    tp = sum(s["true_positives"] for s in doc["scenarios"])
    fp = sum(s["false_positives"] for s in doc["scenarios"])
    assert doc["overall"]["precision"] == pytest.approx(tp / (tp + fp))
    # The table form (cached capture: no regeneration) names the scenario and ends with the overall line.
    table = invoke("score", "fc_sweep", "--quick", "--seed", "3", "--cache", str(cache), "--no-progress")
    assert table.exit_code == 0, table.output
    assert "fc_sweep" in table.stdout and "overall" in table.stdout.splitlines()[-1]


@pytest.mark.slow
def test_run_as_fast_as_possible_prints_alerts_and_writes_jsonl(cache, tmp_path):
    out = tmp_path / "alerts.jsonl"
    res = invoke("run", "fc_sweep", "--quick", "--seed", "3", "--cache", str(cache), "--as-fast-as-possible",
                 "--alerts-out", str(out))
    assert res.exit_code == 0, res.output
    assert "policy.new_talker" in res.stdout and "learning period over" in res.output
    docs = [json.loads(line) for line in out.read_text().splitlines()]
    assert docs and all(d["event"]["kind"] == "alert" for d in docs)
