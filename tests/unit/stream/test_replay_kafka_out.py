"""``replay run --kafka`` over the in-process transport: the topic gets the windows the replay scored, watermarks
as a collector sends them, and the run's alerts (tests/integration/test_replay_services.py does it for real)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from otsentry.replay.catalog import generate, get_scenario
from otsentry.replay.kafka_out import KafkaReplayOutput
from otsentry.replay.paced import replay
from otsentry.stream.codec import Watermark, decode_alert, decode_feature_record
from otsentry.contracts.windows import window_identity
from otsentry.stream.runtime.settings import KafkaConfig
from otsentry.stream.transport import MemoryBroker

KAFKA = KafkaConfig(bootstrap="memory", features_topic="f", alerts_topic="a")


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    return generate(get_scenario("setpoint_change"), tmp_path_factory.mktemp("cache"), None, True)


def output(broker: MemoryBroker, kafka: KafkaConfig = KAFKA) -> KafkaReplayOutput:
    def ensure(topics):
        for t in topics:
            broker.create_topic(t)

    return KafkaReplayOutput(kafka, "setpoint_change", make_publisher=broker.publisher, ensure=ensure)


def decoded(broker: MemoryBroker, topic: str) -> list:
    return [decode_feature_record(value) for _, value in broker.records(topic)]


def test_the_topic_gets_the_replayed_windows_watermarks_and_alerts(gen):
    broker = MemoryBroker(partitions=3)
    out = output(broker)
    seen: list = []
    result = replay(gen, None, lambda a: (out.alert(a), seen.append(a)), on_windows=out.windows)
    assert out.close(finished=True) and out.stats.finished
    records = decoded(broker, "f")
    windows = [r for r in records if not isinstance(r, Watermark)]
    assert len(windows) == out.stats.windows == result.windows + result.learned_windows
    assert len({window_identity(w) for w in windows}) == len(windows)
    marks = [r for r in records if isinstance(r, Watermark)]
    assert sum(m.watermark == 0.0 for m in marks) == 3 and sum(m.final for m in marks) == 3  # per partition
    assert max(m.watermark for m in marks) == max(w.window_end for w in windows)
    alerts = broker.records("a")
    assert result.alerts and [decode_alert(v).id for _, v in alerts] == [a.id for a in seen]
    assert [k.decode() for k, _ in alerts] == [a.id for a in result.alerts] and out.stats.alerts == len(alerts)


def test_paced_replay_publishes_slot_by_slot_and_windows_only_without_an_alerts_topic(gen):
    broker = MemoryBroker(partitions=1)
    out = output(broker, replace(KAFKA, alerts_topic=""))
    result = replay(gen, 1e9, out.alert, on_windows=out.windows)
    assert out.close(finished=True)
    records = decoded(broker, "f")
    slots = {w.window_end for w in records if not isinstance(w, Watermark)}
    assert sum(isinstance(r, Watermark) for r in records) == len(slots) + 2  # start, one per slot, final
    assert result.alerts and out.stats.alerts == 0 and "a" not in broker.topics


def test_an_interrupted_replay_sends_no_final_watermark(gen):
    broker = MemoryBroker(partitions=2)
    out = output(broker)
    groups = iter(range(3))

    def stop_after_three(group) -> None:
        out.windows(group)
        if next(groups, None) is None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replay(gen, 1e9, out.alert, on_windows=stop_after_three)
    assert out.close(finished=False) and not out.stats.finished
    marks = [r for r in decoded(broker, "f") if isinstance(r, Watermark)]
    assert marks and not any(m.final for m in marks)
