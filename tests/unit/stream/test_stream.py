"""The streaming stages over the in-process transport: same alerts as `otsentry run`, ordering, at-least-once,
rebalances, unreadable records, bounded publishing, daemon plumbing (logs, metrics, signals)."""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from otsentry import pipeline
from otsentry.detectors.scoring import Detection
from otsentry.stream.codec import MalformedRecord, Watermark, decode_alert, decode_feature_record, encode_watermark, encode_window
from otsentry.contracts.windows import partition_key
from otsentry.stream.publish import WindowPublisher, publish_captures
from otsentry.stream.runtime.retry import Backoff, StateLog
from otsentry.stream.runtime.daemon import StopSignal, setup_logging
from otsentry.stream.runtime.metrics import Metrics, MetricsServer
from otsentry.stream.delivery.ordering import EventTimeBuffer
from otsentry.stream.delivery.outbox import Outbox
from otsentry.stream.runtime.daemon import StreamSettings
from otsentry.stream.publish import run_collector
from otsentry.stream.detect import run_detector
from otsentry.stream.runtime.settings import DaemonConfig, KafkaConfig, StreamConfig
from otsentry.stream.transport import MemoryBroker, TransportError
from otsentry.stream.detect import DetectorWorker
from otsentry.synth.scenarios import generate_scenario

pytestmark = pytest.mark.slow

F, A, D = "features", "alerts", "dead"


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """A 10-minute fc_sweep capture, a bundle learned on its first 5 minutes, and `run`'s alerts with it."""
    folder = tmp_path_factory.mktemp("stream")
    pcap = folder / "sweep.pcap"
    generate_scenario(pcap, "fc_sweep", 11, learn_s=300, attack_at_s=420, total_s=600)
    # detector workers see windows, not reads: the Kafka path has no process-variable watch
    bundle = replace(pipeline.train([pcap], learn_for_s=300), variables=())
    ref = pipeline.run([pcap], bundle=bundle)
    assert ref.alerts, "the scenario must raise alerts for these tests to mean anything"
    return pcap, bundle, ref


def _publish(broker: MemoryBroker, pcap: Path, source: str = "test", chunk_bytes: int | None = None) -> int:
    out = WindowPublisher(Outbox(broker.publisher()), F, source)
    return publish_captures([pcap], out, 10.0, chunk_bytes=chunk_bytes).windows


def _worker(broker: MemoryBroker, bundle, group: str = "g", **kw) -> DetectorWorker:
    kw.setdefault("max_poll_records", 50)
    return DetectorWorker(lambda: broker.consumer([F], group), Outbox(broker.publisher()), Detection(bundle), alerts_topic=A,
                          deadletter_topic=D, **kw)


def _drain(*workers: DetectorWorker, rounds: int = 10_000) -> None:
    for _ in range(rounds):
        if not sum(w.step(0) for w in workers) and not any(w.buffer.held for w in workers):
            return
    raise AssertionError("workers did not drain")


def _alert_ids(broker: MemoryBroker) -> list[str]:
    return [decode_alert(v).id for _, v in broker.records(A)]


def test_memory_pipeline_gives_the_alerts_of_run(scenario):
    pcap, bundle, ref = scenario
    broker = MemoryBroker(partitions=4)
    assert _publish(broker, pcap) == ref.windows
    w = _worker(broker, bundle)
    _drain(w)
    assert w.scored == ref.windows and w.buffer.forced == 0 and w.buffer.late == 0
    assert sorted(_alert_ids(broker)) == sorted(a.id for a in ref.alerts)
    # committed offsets cover every record: a new worker in the group has nothing left to score
    w.close()
    w.close()  # safe twice
    again = _worker(broker, bundle)
    _drain(again)
    assert again.scored == 0


def test_event_time_order_decides_which_window_reports_a_shared_fact(scenario):
    """Why watermarks exist: the new talker shows in a pair window and a flow window of the same 10 s; `run`
    reports it on the pair window. Read from two partitions, flow first, only event-time ordering keeps that."""
    pcap, bundle, ref = scenario
    talker = next(a for a in ref.alerts if a.rule_id == "policy.new_talker")
    same = [w for w in pipeline.iter_windows([pcap], 10.0) if w.window_start == talker.window_start
            and talker.client_ip in (w.client_ip, w.server_ip)]
    flow = next(w for w in same if w.kind == "flow")
    pair = next(w for w in same if w.kind == "pair")
    results = {}
    for hold in (30.0, 0.0):
        broker = MemoryBroker(partitions=2)
        pub = broker.publisher()
        pub.publish(F, encode_window(flow), partition=0)
        pub.publish(F, encode_window(pair), partition=1)
        for p in (0, 1):
            pub.publish(F, encode_watermark(Watermark("c", pair.window_end, True)), partition=p)
        w = _worker(broker, bundle, max_poll_records=1, max_hold_s=hold)
        _drain(w)
        results[hold] = {decode_alert(v).rule_id: decode_alert(v) for _, v in broker.records(A)}
    assert results[30.0]["policy.new_talker"].id == talker.id  # as `run`: on the pair window
    assert results[0.0]["policy.new_talker"].unit_id == -1  # arrival order: on the flow window, another id


def test_crash_before_commit_rescoring_gives_the_same_ids(scenario):
    pcap, bundle, ref = scenario
    broker = MemoryBroker(partitions=4)
    _publish(broker, pcap, chunk_bytes=64 << 10)  # many small groups, each followed by watermarks
    first = _worker(broker, bundle, max_poll_records=20)
    while not first.scored:
        first.step(0)
    assert first.scored < ref.windows
    # "crash": the worker vanishes without closing; what it scored after its last commit is scored again
    first._committed.clear()
    broker.groups["g"].members.remove(first.consumer)
    broker._rebalance(broker.groups["g"])
    second = _worker(broker, bundle)
    _drain(second)
    ids = _alert_ids(broker)
    assert set(ids) == {a.id for a in ref.alerts}
    assert first.scored + second.scored >= ref.windows


def test_two_workers_split_partitions_and_hand_over(scenario):
    pcap, bundle, ref = scenario
    broker = MemoryBroker(partitions=4)
    one, two = _worker(broker, bundle), _worker(broker, bundle)
    one.step(0), two.step(0)
    assert len(one.consumer.assignment()) == 2 and len(two.consumer.assignment()) == 2
    _publish(broker, pcap)
    for _ in range(5):
        one.step(0), two.step(0)
    two.close()
    _drain(one)
    assert len(one.consumer.assignment()) == 4
    assert set(_alert_ids(broker)) >= {a.id for a in ref.alerts if a.category == "anomaly"}
    assert one.scored + two.scored >= ref.windows


def test_malformed_records_are_counted_logged_dead_lettered_and_skipped(scenario, caplog):
    pcap, bundle, ref = scenario
    broker = MemoryBroker(partitions=2)
    pub = broker.publisher()
    bad = [b"not json", json.dumps({"record": "feature_window", "schema_version": 99}).encode(), b"[1,2]",
           json.dumps({"record": "feature_window", "schema_version": 1, "values": {}}).encode()]
    for i, value in enumerate(bad):
        pub.publish(F, value, partition=i % 2)
    _publish(broker, pcap)
    w = _worker(broker, bundle)
    with caplog.at_level(logging.WARNING, logger="otsentry.stream"):
        _drain(w)
    assert w.malformed == len(bad) and w.metrics.get("otsentry_malformed_records_total") == len(bad)
    assert len(broker.records(D)) == len(bad)
    assert sum("unreadable record" in r.getMessage() for r in caplog.records) == len(bad)
    assert {decode_alert(v).id for _, v in broker.records(A)} == {a.id for a in ref.alerts}


def test_codec_round_trip_and_refusals(scenario):
    pcap, _, ref = scenario
    window = next(iter(pipeline.iter_windows([pcap], 10.0)))
    assert decode_feature_record(encode_window(window)) == window
    assert partition_key(window).count(b"|") == 2
    mark = Watermark("s", 12.0, True)
    assert decode_feature_record(encode_watermark(mark)) == mark
    doc = json.loads(encode_window(window))
    doc["schema_version"] = 2
    with pytest.raises(MalformedRecord, match="schema_version 2"):
        decode_feature_record(json.dumps(doc).encode())
    with pytest.raises(MalformedRecord):
        decode_feature_record(None)


def test_event_time_buffer_waits_for_every_partition_and_commits_before_held():
    from otsentry.records import FeatureWindow

    now = [0.0]
    buf = EventTimeBuffer(max_hold_s=5.0, clock=lambda: now[0])
    p0, p1 = ("t", 0), ("t", 1)
    buf.assign(p0), buf.assign(p1)
    w = FeatureWindow(0.0, 10.0, "pair", "a", "b", 1, (), 1)
    buf.add_window(p0, 0, w)
    buf.add_watermark(p0, 1, Watermark("c", 10.0))
    assert buf.release() == []  # p1 has said nothing yet
    assert buf.commit_position(p0)[0] == 0
    buf.add_watermark(p1, 0, Watermark("c", 10.0))
    assert buf.release() == [w]
    offset, meta = buf.commit_position(p0)
    assert offset == 2 and json.loads(meta)["wm"]["c"] == [10.0, False]
    buf.add_window(p0, 2, FeatureWindow(10.0, 20.0, "pair", "a", "b", 1, (), 1))
    buf.add_window(p0, 3, FeatureWindow(10.0, 20.0, "pair", "a", "b", 1, (), 1))  # a producer retry's copy
    assert buf.duplicates == 1
    now[0] = 6.0  # held longer than max_hold_s: released anyway, counted as forced
    assert len(buf.release()) == 1 and buf.forced == 1
    other = EventTimeBuffer()
    other.assign(p0, meta)  # a new owner starts from the committed watermarks
    assert other.frontier() == 10.0


def test_outbox_sends_failed_deliveries_again_and_bounds_in_flight():
    broker = MemoryBroker(partitions=1)
    failures = iter([TransportError("boom"), TransportError("boom")])
    broker.fail_publish = lambda topic, value: next(failures, None)
    metrics = Metrics("test")
    outbox = Outbox(broker.publisher(), max_in_flight=2, backoff=Backoff(0.0, 0.0), metrics=metrics)
    for i in range(5):
        outbox.send("t", str(i).encode())
    assert outbox.flush()
    assert sorted(v for _, v in broker.records("t")) == [str(i).encode() for i in range(5)]
    assert metrics.get("otsentry_resent_records_total") == 2


def test_state_log_logs_once_per_change(caplog):
    state = StateLog("broker")
    with caplog.at_level(logging.INFO, logger="otsentry.stream"):
        for s in ["up", "up", "down", "down", "down", "up", "up"]:
            state.set(s)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["broker: down", "broker: up"]


def test_metrics_endpoint_serves_prometheus_text_and_health():
    metrics = Metrics("detector")
    metrics.inc("otsentry_windows_scored_total", 3)
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        text = urllib.request.urlopen(base + "/metrics").read().decode()
        assert 'otsentry_windows_scored_total{role="detector"} 3' in text
        assert "# TYPE otsentry_consumer_lag gauge" in text
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/healthz")
        assert err.value.code == 503  # not running, broker not up
        metrics.running = metrics.broker_up = True
        assert json.loads(urllib.request.urlopen(base + "/healthz").read())["status"] == "ok"
    finally:
        server.close()


def test_stop_signal_sets_event_and_watchdog_exits():
    exits: list[int] = []
    sig = StopSignal(stop_timeout_s=0.0, exit_fn=exits.append)
    import otsentry.stream.runtime.daemon as daemon

    grace, daemon.STOP_GRACE_S = daemon.STOP_GRACE_S, 0.05
    try:
        sig.request("test")
        assert sig.stop.is_set()
        threading.Event().wait(0.3)
        assert exits == [1]
    finally:
        daemon.STOP_GRACE_S = grace


def test_json_and_kv_logs_carry_fields():
    for fmt, check in (("json", lambda line: json.loads(line)["event"] == "x"), ("kv", lambda line: "event=x" in line)):
        out = io.StringIO()
        setup_logging(fmt, "info", out)
        logging.getLogger("otsentry.stream").info("hello", extra={"fields": {"event": "x"}})
        assert check(out.getvalue().strip().splitlines()[-1])
    setup_logging("text", "warning")


def test_service_functions_run_in_process(scenario):
    """The daemons' own entry points, with the in-process transport injected."""
    pcap, bundle, ref = scenario
    broker = MemoryBroker(partitions=3)
    settings = StreamSettings(KafkaConfig(bootstrap="memory", features_topic=F, alerts_topic=A, deadletter_topic=D),
                              StreamConfig(), DaemonConfig(stop_timeout_s=2.0))
    stats, _ = run_collector([pcap], settings, None, make_publisher=broker.publisher)
    assert stats.finished and stats.windows == ref.windows and stats.packets > 0
    worker, metrics = run_detector(bundle, settings, make_publisher=broker.publisher,
                                   make_consumer=lambda n: broker.consumer([F], "svc"), until_idle_s=0.2)
    assert worker.scored == ref.windows
    assert metrics.get("otsentry_alerts_published_total") == len(ref.alerts)
    assert set(_alert_ids(broker)) == {a.id for a in ref.alerts}
