"""otsentry.prefetch: a producer in a forked child, items in order, errors back in the parent, bounded shutdown."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time

import pytest
from click.testing import CliRunner

from otsentry.cli import main
from otsentry.collectors.types import CaptureError
from otsentry.features.pairs import COL
from otsentry.pipeline import completed, iter_closed, iter_window_batches, run
from otsentry.prefetch import PrefetchError, default_jobs, prefetched
from otsentry.synth.scenarios import generate_scenario


def numbers(n: int):
    for i in range(n):
        yield (i, os.getpid())


def failing(after: int, exc: BaseException):
    yield from range(after)
    raise exc


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not picklable")


def test_items_come_in_order_from_another_process():
    got = list(prefetched(numbers, 50))
    assert [i for i, _ in got] == list(range(50))
    assert {pid for _, pid in got} == {got[0][1]} and got[0][1] != os.getpid()
    assert not mp.active_children()


def test_a_child_error_is_raised_again_with_its_type_and_message():
    it = prefetched(failing, 3, CaptureError("x.pcap: not a capture file"))
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(CaptureError, match="not a capture file"):
        next(it)
    assert not mp.active_children()


def test_an_unpicklable_error_becomes_one_line():
    with pytest.raises(PrefetchError, match="Unpicklable: cannot send this"):
        list(prefetched(failing, 0, Unpicklable("cannot send this")))


def test_a_child_that_dies_is_an_error_not_a_hang():
    def dies():
        os._exit(3)  # killed, out of memory...: no last words
        yield 1

    it = prefetched(dies)
    started = time.monotonic()
    with pytest.raises(PrefetchError, match="exit code 3"):
        next(it)
    assert time.monotonic() - started < 10


def test_closing_early_stops_the_child_at_once():
    it = prefetched(numbers, 10**9)
    next(it)
    assert len(mp.active_children()) == 1
    started = time.monotonic()
    it.close()
    assert time.monotonic() - started < 10
    assert not mp.active_children()


def test_default_jobs_needs_linux_and_two_cpus(monkeypatch):
    import otsentry.prefetch as prefetch

    monkeypatch.setattr(prefetch.sys, "platform", "linux")
    monkeypatch.setattr(prefetch, "usable_cpus", lambda: 2)
    assert default_jobs() == 2
    monkeypatch.setattr(prefetch, "usable_cpus", lambda: 1)
    assert default_jobs() == 1
    monkeypatch.setattr(prefetch, "usable_cpus", lambda: 8)
    monkeypatch.setattr(prefetch.sys, "platform", "darwin")
    assert default_jobs() == 1


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    pcap = tmp_path_factory.mktemp("prefetch") / "sweep.pcap"
    generate_scenario(pcap, "fc_sweep", seed=5, learn_s=300, attack_at_s=420, total_s=600)
    return pcap


@pytest.mark.slow
def test_two_processes_give_the_same_windows_and_alerts_as_one(sweep):
    one = run([sweep], learn_for_s=300, jobs=1)
    two = run([sweep], learn_for_s=300, jobs=2)
    assert one.alerts and [a.to_dict() for a in one.alerts] == [a.to_dict() for a in two.alerts]
    assert (one.windows, one.learned_windows) == (two.windows, two.learned_windows)
    in_process = [w for group in iter_window_batches([sweep], 10.0) for w in group]
    across = [w for c in prefetched(iter_closed, [sweep], 10.0, None) for w in c.windows()]
    assert across == in_process


@pytest.mark.slow
def test_register_values_tracked_by_the_consumer_give_the_same_windows(sweep):
    """``defer_values``: the scoring side tracks register values, one state per capture (the same capture twice:
    its second pass must not compare its first reads with the first pass's last ones)."""
    in_process = [w for group in iter_window_batches([sweep, sweep], 10.0) for w in group]
    deferred = [w for group in completed(prefetched(iter_closed, [sweep, sweep], 10.0, None, True)) for w in group]
    assert deferred == in_process
    assert any(w.values[COL["values_compared"]] > 0 for w in deferred if w.kind == "pair")
    closed = next(iter_closed([sweep], 10.0, None, True))
    with pytest.raises(RuntimeError, match="complete"):
        closed.windows()


@pytest.mark.slow
def test_run_jobs_2_reports_a_bad_capture_in_one_line(tmp_path, sweep):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture at all" * 10)
    res = CliRunner().invoke(main, ["run", str(sweep), str(bad), "--learn-for", "5m", "-j", "2", "--no-progress",
                                    "--format", "json"])
    assert res.exit_code == 2, res.output
    assert "bad.pcap" in res.output and "Traceback" not in res.output
    assert not mp.active_children()


@pytest.mark.slow
def test_run_cli_jobs_1_and_2_print_the_same_alerts(sweep):
    outs = []
    for jobs in ("1", "2"):
        res = CliRunner().invoke(main, ["run", str(sweep), "--learn-for", "5m", "-j", jobs, "--no-progress",
                                        "--format", "json"])
        assert res.exit_code == 0, res.output
        outs.append([json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")])
    assert outs[0] and outs[0] == outs[1]


@pytest.mark.slow
def test_evaluate_jobs_1_and_2_give_the_same_scores(tmp_path):
    pcap = tmp_path / "sweep.pcap"
    truth = generate_scenario(pcap, "fc_sweep", seed=6, learn_s=300, attack_at_s=420, total_s=600)
    labels = tmp_path / "sweep.csv"
    truth.write_labels_csv(labels)
    outs = []
    for jobs in ("1", "2"):
        res = CliRunner().invoke(main, ["evaluate", str(pcap), "--labels", str(labels), "--learn-for", "5m", "--json",
                                        "--no-progress", "-j", jobs])
        assert res.exit_code == 0, res.output
        outs.append(json.loads(res.stdout))
    assert outs[0]["detected"] and outs[0] == outs[1]
