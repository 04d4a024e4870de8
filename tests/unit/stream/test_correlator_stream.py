"""The correlation stage over a transport builds the incidents of ``otsentry run``, and again after a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otsentry.pipeline import run
from otsentry.records import Alert, Incident
from otsentry.stream.codec import encode_alert
from otsentry.stream.correlate import CorrelatorStateError, CorrelatorWorker
from otsentry.stream.delivery.outbox import Outbox
from otsentry.stream.transport import MemoryBroker

A, C, INC = "alerts", "alerts.correlated", "incidents"


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    from otsentry.synth.library import generate, load_specs

    pcap, _, _, _ = generate("repeat_campaign", tmp_path_factory.mktemp("corr"))
    result = run([pcap], learn_for_s=load_specs()["repeat_campaign"]["timeline"]["learn_s"], idle_gap_s=120.0)
    assert len(result.incidents) >= 3
    return result


def _publish(broker: MemoryBroker, alerts: list[Alert]) -> None:
    """As detector workers do: keyed by alert id (spread over partitions), incident ids not set yet."""
    from dataclasses import replace

    pub = broker.publisher()
    broker.create_topic(A)
    for a in alerts:
        pub.publish(A, encode_alert(replace(a, incident_id="", capture="")), key=a.id.encode())


def _worker(broker: MemoryBroker, state: Path, **kw) -> CorrelatorWorker:
    for t in (C, INC):
        broker.create_topic(t)
    return CorrelatorWorker(lambda: broker.consumer([A], "correlator"), Outbox(broker.publisher()),
                            correlated_topic=C, incidents_topic=INC, state_path=state, idle_gap_s=120.0,
                            lateness_s=30.0, **kw)


def _latest(broker: MemoryBroker, topic: str) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key, value in broker.records(topic):
        out[key.decode()] = json.loads(value)
    return out


def _drain(worker: CorrelatorWorker, polls: int = 50) -> None:
    for _ in range(polls):
        worker.step(timeout_s=0.0)


def test_the_stream_builds_the_incidents_of_run(campaign, tmp_path: Path) -> None:
    broker = MemoryBroker(partitions=3)
    _publish(broker, campaign.alerts)
    worker = _worker(broker, tmp_path / "state.json")
    _drain(worker)
    worker.finish()
    worker.close()
    incidents = {k: Incident.from_dict(v) for k, v in _latest(broker, INC).items()}
    assert incidents == {i.id: i for i in campaign.incidents}
    correlated = _latest(broker, C)
    assert {k: v["incident_id"] for k, v in correlated.items()} == {a.id: a.incident_id for a in campaign.alerts}


def test_a_restart_mid_stream_gives_the_same_incidents(campaign, tmp_path: Path) -> None:
    broker = MemoryBroker(partitions=3)
    _publish(broker, campaign.alerts)
    state = tmp_path / "state.json"
    first = _worker(broker, state, max_poll_records=7)
    for _ in range(4):
        first.step(timeout_s=0.0)
    first.close()  # checkpoint and commit part of the stream
    assert 0 < first.alerts_correlated + len(first._held) < len(campaign.alerts)
    second = _worker(broker, state)
    _drain(second)
    second.finish()
    second.close()
    incidents = {k: Incident.from_dict(v) for k, v in _latest(broker, INC).items()}
    assert incidents == {i.id: i for i in campaign.incidents}
    assert {k: v["incident_id"] for k, v in _latest(broker, C).items()} == \
        {a.id: a.incident_id for a in campaign.alerts}


def test_a_crash_between_checkpoint_and_commit_skips_what_was_folded(campaign, tmp_path: Path) -> None:
    broker = MemoryBroker(partitions=3)
    _publish(broker, campaign.alerts)
    state = tmp_path / "state.json"
    first = _worker(broker, state, max_poll_records=11)
    for _ in range(3):
        first.step(timeout_s=0.0)
    first._save()  # the checkpoint is written, the process dies before the commit:
    first.consumer.close()  # it leaves the group (a session timeout) without committing
    published_before = len(broker.records(C))
    second = _worker(broker, state)
    _drain(second)
    second.finish()
    second.close()
    assert {k: Incident.from_dict(v) for k, v in _latest(broker, INC).items()} == \
        {i.id: i for i in campaign.incidents}
    assert len(broker.records(C)) - published_before <= len(campaign.alerts)


def test_an_unreadable_state_is_one_line() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        bad = Path(d) / "state.json"
        bad.write_text("{not json")
        with pytest.raises(CorrelatorStateError, match="move it away"):
            _worker(MemoryBroker(partitions=1), bad)


def test_alerts_of_one_window_from_two_workers_minutes_apart_fold_together(campaign, tmp_path: Path) -> None:
    """A caught-up correlator must not fold a window before the other workers' alerts of it arrived."""
    from otsentry.correlation import correlate

    window = sorted({a.window_start for a in campaign.alerts})[0]
    same = [a for a in campaign.alerts if a.window_start == window]
    assert len(same) >= 2
    broker = MemoryBroker(partitions=2)
    broker.create_topic(A)
    pub = broker.publisher()
    worker = _worker(broker, tmp_path / "state.json")
    from dataclasses import replace

    first, rest = same[-1:], same[:-1]  # the last of the window first: folded alone, it would name the incident
    for a in first:
        pub.publish(A, encode_alert(replace(a, incident_id="")), key=a.id.encode(), partition=0)
    _drain(worker, 5)  # nothing else arrives for a while: the consumer is caught up
    for a in rest:
        pub.publish(A, encode_alert(replace(a, incident_id="")), key=a.id.encode(), partition=1)
    _drain(worker, 5)
    worker.finish()
    worker.close()
    _, expected = correlate([replace(a, incident_id="") for a in same], idle_gap_s=120.0)
    assert list(_latest(broker, INC)) == [i.id for i in expected]


def test_an_alert_of_an_undeclared_rule_is_dead_lettered_not_a_crash(campaign, tmp_path: Path) -> None:
    from dataclasses import replace

    broker = MemoryBroker(partitions=1)
    for t in (A, "dead"):
        broker.create_topic(t)
    alien = replace(campaign.alerts[0], rule_id="policy.from_the_future", incident_id="")
    broker.publisher().publish(A, encode_alert(alien), key=b"x")
    worker = _worker(broker, tmp_path / "state.json", deadletter_topic="dead")
    _drain(worker, 3)
    worker.finish()
    worker.close()
    assert worker.malformed == 1 and len(broker.records("dead")) == 1 and not broker.records(INC)
