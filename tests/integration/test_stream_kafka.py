"""The pipeline over a real Kafka broker (issue 4's proof).

Every test uses its own topics and group (a random suffix), so tests and reruns never read each other's records.
Alert ids are compared as sets: delivery is at-least-once, so the alerts topic may hold the same alert twice
after a crash; consumers downstream (the JSONL sink, Elasticsearch indexing by id) keep one document per id.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from otsentry import pipeline
from otsentry.detectors.bundle import ModelBundle
from otsentry.features.from_capture import window_batches_from_capture
from otsentry.stream.codec import Watermark, decode_alert, decode_feature_record
from otsentry.contracts.windows import window_identity
from otsentry.stream.publish import WindowPublisher
from otsentry.stream.runtime.retry import Backoff, StateLog
from otsentry.stream.kafka.client import KafkaPublisher, ensure_topics
from otsentry.stream.runtime.metrics import scrape
from otsentry.stream.delivery.outbox import Outbox, STALL_S
from otsentry.stream.runtime.daemon import StreamSettings
from otsentry.stream.detect import run_detector
from otsentry.stream.runtime.settings import DaemonConfig, KafkaConfig, StreamConfig
from otsentry.synth.scenarios import generate_scenario
from tests.helpers import ROOT, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """fc_sweep (10 min, attack at 7 min), a bundle learned on its first 5 minutes, `otsentry run`'s alerts."""
    folder = tmp_path_factory.mktemp("kafka")
    pcap = folder / "fc_sweep.pcap"
    generate_scenario(pcap, "fc_sweep", 7, learn_s=300, attack_at_s=420, total_s=600)
    # detector workers see windows, not reads: the Kafka path has no process-variable watch (README)
    model = replace(pipeline.train([pcap], learn_for_s=300), variables=()).save(folder / "plant.otsb")
    bundle = ModelBundle.load(model)
    ref = pipeline.run([pcap], bundle=bundle)
    assert ref.alerts
    return pcap, model, bundle, ref


def _config(bootstrap: str, **kw) -> KafkaConfig:
    sfx = uuid.uuid4().hex[:10]
    base = dict(bootstrap=bootstrap, features_topic=f"test.features.{sfx}", alerts_topic=f"test.alerts.{sfx}",
                deadletter_topic=f"test.dead.{sfx}", group=f"test-group-{sfx}", partitions=PARTITIONS,
                session_timeout_s=10.0)
    return KafkaConfig(**{**base, **kw})


def _topic_flags(cfg: KafkaConfig) -> list[str]:
    return ["--kafka", cfg.bootstrap, "--features-topic", cfg.features_topic, "--alerts-topic", cfg.alerts_topic,
            "--deadletter-topic", cfg.deadletter_topic, "--group", cfg.group, "--partitions", str(cfg.partitions),
            "--session-timeout", "10s"]


class Daemon:
    """An `otsentry` subprocess with a metrics port we can read."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        env = {**os.environ, "OTSENTRY_KAFKA_BOOTSTRAP": ""}
        self.proc = subprocess.Popen([sys.executable, "-m", "otsentry", *args, "--metrics-port", str(self.port),
                                      "--log-format", "kv"], stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                                     cwd=ROOT, env=env)

    def metric(self, name: str) -> float | None:
        return scrape(self.port, name)

    def wait_metric(self, name: str, check, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.metric(name)
            if value is not None and check(value):
                return value
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            time.sleep(0.02)
        raise AssertionError(f"{name} never satisfied the check (last {self.metric(name)}):\n"
                             f"{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        """Send ``sig``; returns how long the process took to exit."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout)
        return time.monotonic() - t0


def _read(bootstrap: str, topic: str, expect: int | None = None, timeout: float = 10.0) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=int(timeout * 1000), enable_auto_commit=False)
    records = []
    try:
        for r in consumer:
            records.append(r)
            if expect is not None and len(records) >= expect:
                break
    finally:
        consumer.close()
    return records


def _caught_up(cfg: KafkaConfig) -> bool:
    """The group's committed offsets reached the end of every partition of the features topic."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    # A consumer that names the group but never subscribes only reads its commits; it does not join.
    consumer = KafkaConsumer(bootstrap_servers=cfg.bootstrap, group_id=cfg.group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(cfg.features_topic, p) for p in range(cfg.partitions)]
        ends = consumer.end_offsets(tps)
        return all((consumer.committed(tp) or -1) >= ends[tp] for tp in tps)
    finally:
        consumer.close(autocommit=False)


def _wait(check, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _publish_paced(cfg: KafkaConfig, pcap: Path, pause_s: float = 0.0, chunk_bytes: int = 64 << 10,
                   on_group=None, source: str = "test-collector") -> WindowPublisher:
    """The collector stage in-process, in many small groups (a paced replay), each acknowledged."""
    ensure_topics(cfg, [cfg.features_topic])
    state = StateLog("broker (producer)")
    out = WindowPublisher(Outbox(KafkaPublisher(cfg), backoff=Backoff(0.2, 2.0), state=state), cfg.features_topic,
                          source)
    out.start()
    for i, group in enumerate(window_batches_from_capture(pcap, 10.0, chunk_bytes=chunk_bytes)):
        out.publish(group)
        if on_group is not None:
            on_group(i)
        time.sleep(pause_s)
    assert out.finish(time.monotonic() + 120)
    out.outbox.publisher.close()
    return out


def _alert_ids(cfg: KafkaConfig) -> list[str]:
    return [decode_alert(r.value).id for r in _read(cfg.bootstrap, cfg.alerts_topic, timeout=5.0)]


# -- (a) the whole path through the CLI ---------------------------------------------------------------------------


def test_pcap_collector_kafka_detector_gives_the_alerts_of_run(kafka_bootstrap, scenario, tmp_path):
    pcap, model, _, ref = scenario
    cfg = _config(kafka_bootstrap)
    collect = subprocess.run([sys.executable, "-m", "otsentry", "collect", "pcap", str(pcap), "--window", "10s",
                              *_topic_flags(cfg)[:4], "--partitions", str(PARTITIONS)],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert collect.returncode == 0, collect.stderr
    assert f"{ref.windows} windows published" in collect.stderr
    worker = Daemon(["detect", "--model", str(model), *_topic_flags(cfg)], tmp_path / "detect.log")
    try:
        worker.wait_metric("otsentry_windows_scored_total", lambda v: v >= ref.windows)
        assert worker.metric("otsentry_alerts_published_total") == len(ref.alerts)
        worker.wait_metric("otsentry_consumer_lag", lambda v: v == 0, timeout=20)
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/healthz").read())
        assert health["status"] == "ok"
    finally:
        took = worker.stop()
    assert worker.proc.returncode == 0 and took < 10.0
    ids = _alert_ids(cfg)
    assert sorted(ids) == sorted(a.id for a in ref.alerts)  # undisturbed: exactly once each
    assert _caught_up(cfg)
    assert "detector done: %d windows scored" % ref.windows in worker.log.read_text()


# -- (b) SIGKILL mid-stream ----------------------------------------------------------------------------------------


def test_detector_killed_mid_stream_loses_nothing(kafka_bootstrap, scenario, tmp_path):
    pcap, model, _, ref = scenario
    cfg = _config(kafka_bootstrap)
    ensure_topics(cfg, [cfg.features_topic, cfg.alerts_topic, cfg.deadletter_topic])
    flags = ["detect", "--model", str(model), *_topic_flags(cfg), "--group-instance-id", "worker-1",
             "--max-poll-records", "20"]
    first = Daemon(flags, tmp_path / "first.log")
    first.wait_metric("otsentry_assigned_partitions", lambda v: v == PARTITIONS)
    collector = threading.Thread(target=_publish_paced, args=(cfg, pcap, 0.05), daemon=True)
    collector.start()
    scored_before = first.wait_metric("otsentry_windows_scored_total", lambda v: v >= ref.windows // 3)
    first.stop(signal.SIGKILL)
    assert scored_before < ref.windows, "the kill came too late to be mid-stream"
    second = Daemon(flags, tmp_path / "second.log")
    try:
        collector.join(120)
        assert not collector.is_alive()
        _wait(lambda: _caught_up(cfg), 90, "the restarted worker to commit every partition to its end")
        rescored = second.metric("otsentry_windows_scored_total")
    finally:
        second.stop()
    assert second.proc.returncode == 0
    ids = _alert_ids(cfg)
    assert set(ids) == {a.id for a in ref.alerts}  # no loss, nothing new: the same set as an undisturbed run
    assert rescored >= ref.windows - scored_before  # every window after the last commit was scored again
    # Copies on the topic are allowed (at-least-once); downstream keeps one document per id.


# -- (c) unreadable records --------------------------------------------------------------------------------------


def test_malformed_records_are_counted_logged_dead_lettered_and_skipped(kafka_bootstrap, scenario, caplog):
    pcap, _, bundle, ref = scenario
    cfg = _config(kafka_bootstrap)
    ensure_topics(cfg, [cfg.features_topic])
    pub = KafkaPublisher(cfg)
    bad = [b"\x00\xffnot json", json.dumps({"record": "feature_window", "schema_version": 99}).encode(),
           json.dumps({"record": "alert", "schema_version": 1}).encode()]
    for i, value in enumerate(bad):
        pub.publish(cfg.features_topic, value, key=b"bad", partition=i % PARTITIONS)
    assert pub.flush(10)
    pub.close()
    _publish_paced(cfg, pcap, chunk_bytes=8 << 20)
    settings = StreamSettings(cfg, StreamConfig(), DaemonConfig(stop_timeout_s=5.0))
    with caplog.at_level(logging.WARNING, logger="otsentry.stream"):
        worker, metrics = run_detector(bundle, settings, until_idle_s=3.0)
    assert worker.malformed == len(bad) and metrics.get("otsentry_malformed_records_total") == len(bad)
    assert sum("unreadable record" in r.getMessage() for r in caplog.records) == len(bad)
    dead = _read(cfg.bootstrap, cfg.deadletter_topic, expect=len(bad))
    assert sorted(r.value for r in dead) == sorted(bad)
    assert all(dict(r.headers)["otsentry.error"] for r in dead)
    assert worker.scored == ref.windows  # the worker went on: no crash loop
    assert set(_alert_ids(cfg)) == {a.id for a in ref.alerts}


# -- (d) two workers share the partitions; stopping one hands them over -------------------------------------------


def test_two_workers_split_partitions_and_hand_over(kafka_bootstrap, scenario, tmp_path):
    pcap, model, _, ref = scenario
    cfg = _config(kafka_bootstrap)
    ensure_topics(cfg, [cfg.features_topic, cfg.alerts_topic, cfg.deadletter_topic])
    flags = ["detect", "--model", str(model), *_topic_flags(cfg)]
    one = Daemon(flags, tmp_path / "one.log")
    one.wait_metric("otsentry_assigned_partitions", lambda v: v == PARTITIONS)
    two = Daemon(flags, tmp_path / "two.log")
    try:
        two.wait_metric("otsentry_assigned_partitions", lambda v: 0 < v < PARTITIONS)
        one.wait_metric("otsentry_assigned_partitions", lambda v: 0 < v < PARTITIONS)
        assert one.metric("otsentry_assigned_partitions") + two.metric("otsentry_assigned_partitions") == PARTITIONS
        stopped = threading.Event()

        def stop_two(i: int) -> None:  # halfway through the replay, one worker leaves
            if i == 15 and not stopped.is_set():
                stopped.set()
                assert two.stop() < 10.0

        _publish_paced(cfg, pcap, 0.05, on_group=stop_two)
        assert stopped.is_set() and two.proc.returncode == 0
        one.wait_metric("otsentry_assigned_partitions", lambda v: v == PARTITIONS)
        _wait(lambda: _caught_up(cfg), 90, "the remaining worker to commit every partition to its end")
        two_done = re.search(r"detector done: (\d+) windows scored", two.log.read_text())
        assert two_done, two.log.read_text()[-2000:]
        assert one.metric("otsentry_windows_scored_total") + int(two_done.group(1)) >= ref.windows
    finally:
        if two.proc.poll() is None:
            two.stop()
        one.stop()
    alerts = [decode_alert(r.value) for r in _read(cfg.bootstrap, cfg.alerts_topic, timeout=5.0)]
    # Window-level anomaly alerts do not depend on who scores what: exactly run's.
    assert {a.id for a in alerts if a.category == "anomaly"} == {a.id for a in ref.alerts if a.category == "anomaly"}
    # Policy rate limiting is per worker, and windows of partitions taken over mid-stream arrive after the new
    # owner scored later windows of its own partitions: a fact shown by several windows of one 10 s (a new
    # talker's pair and flow windows) may be reported on another of them, or by both workers (documented).
    # Nothing is lost: every rule run raised fires at the same time.
    assert {(a.rule_id, a.window_start) for a in alerts} >= {(a.rule_id, a.window_start) for a in ref.alerts}


# -- (e) broker stopped and restarted while a collector publishes -------------------------------------------------


@pytest.fixture()
def private_broker(tmp_path):
    """A second broker, ours alone, started with the project's services/kafka.py on free ports.

    The shared broker of ``make services`` serves other tests, so it is not the one to stop. The install is
    reused (a symlink to the cached jars): only the data and logs are private.
    """
    from services import kafka as service

    cache = tmp_path / "cache"
    (cache / "services").mkdir(parents=True)
    (cache / "services" / service.HOME.name).symlink_to(service.HOME)
    port, controller = free_port(), free_port()
    env = {**os.environ, "OTSENTRY_CACHE": str(cache), "OTSENTRY_KAFKA_PORT": str(port),
           "OTSENTRY_KAFKA_CONTROLLER_PORT": str(controller), "OTSENTRY_KAFKA_HEAP": "256m"}

    def run(command: str) -> None:
        res = subprocess.run([sys.executable, "-m", "services.kafka", command], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr

    run("start")
    try:
        yield f"127.0.0.1:{port}", run
    finally:
        run("stop")


def test_broker_restart_while_publishing_loses_nothing(private_broker, scenario, caplog):
    bootstrap, service = private_broker
    pcap, _, _, ref = scenario
    cfg = _config(bootstrap, delivery_timeout_s=120.0)
    restarted = threading.Event()

    def restart(i: int) -> None:
        if i == 5:
            service("stop")
            # down for longer than the outbox's STALL_S, so the outage must be reported (shorter blips are not)
            threading.Timer(STALL_S + 2.0, lambda: (service("start"), restarted.set())).start()

    t0 = time.monotonic()
    with caplog.at_level(logging.INFO, logger="otsentry.stream"):
        out = _publish_paced(cfg, pcap, 0.02, on_group=restart)
    took = time.monotonic() - t0
    assert restarted.wait(60)
    assert out.stats.windows == ref.windows
    records = [decode_feature_record(r.value) for r in _read(bootstrap, cfg.features_topic, timeout=10.0)]
    windows = {window_identity(w) for w in records if not isinstance(w, Watermark)}
    assert len(windows) == ref.windows  # every window is in the log (copies, if any, are dropped by identity)
    finals = [m for m in records if isinstance(m, Watermark) and m.final]
    assert len(finals) == PARTITIONS
    states = [r.getMessage().split(": ", 1)[1].split(" ")[0] for r in caplog.records
              if r.getMessage().startswith("broker (producer): ")]
    assert states and states[0] == "down" and states[-1] == "up", (took, states)
    assert len(states) <= 4, states  # logged once per state change, not per record or retry


# -- the live collector daemon ------------------------------------------------------------------------------------


def test_live_collector_publishes_windows_and_stops_on_sigterm(kafka_bootstrap, tmp_path):
    from tests.integration.test_live_capture import ModbusServer, exchange, require_capture

    require_capture()
    cfg = _config(kafka_bootstrap)
    server = ModbusServer()
    collector = Daemon(["collect", "live", "--iface", "lo", "--ports", str(server.port), *_topic_flags(cfg)[:4],
                        "--partitions", str(PARTITIONS)], tmp_path / "live.log")
    try:
        collector.wait_metric("otsentry_up", lambda v: v == 1)
        # the capture socket opens once the topics exist and the producer is connected: the daemon says when
        deadline = time.monotonic() + 60.0
        while "event=capturing" not in collector.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        server.start()
        client_ip, _ = exchange(server.port, server)
        collector.wait_metric("otsentry_packets_total", lambda v: v > 0)
    finally:
        took = collector.stop()
    assert collector.proc.returncode == 0, collector.log.read_text()[-2000:]
    assert took < 10.0
    records = [decode_feature_record(r.value) for r in _read(cfg.bootstrap, cfg.features_topic, timeout=5.0)]
    pairs = [w for w in records if not isinstance(w, Watermark) and w.kind == "pair"]
    assert pairs and pairs[0].client_ip == client_ip and pairs[0].server_ip == "127.0.0.1"
    assert sum(isinstance(m, Watermark) and m.final for m in records) == PARTITIONS  # SIGTERM: a clean end
    assert "collector done (SIGTERM)" in collector.log.read_text()


def test_sensor_windows_cross_kafka_and_raise_the_alerts_of_run(kafka_bootstrap, scenario, tmp_path):
    """Evasion evidence travels as sensor windows: the Kafka detector raises run's policy.evasion alerts, same ids."""
    from otsentry.collectors.capture import open_capture
    from otsentry.synth.evasion import evade

    pcap, model, bundle, _ = scenario
    with open_capture(pcap) as reader:  # twenty seconds of the attack, its segments overlapping with other bytes
        chunks = list(reader.chunks())
    start = int(chunks[0].ts_ns[0])
    frames = [c.first_frame + i for c in chunks for i in range(len(c))
              if 420e9 <= int(c.ts_ns[i]) - start < 440e9]
    forged = tmp_path / "conflicts.pcap"
    evade(pcap, forged, frames, "tcp_overlap_conflict")
    ref = pipeline.run([forged], bundle=bundle)
    evasions = [a for a in ref.alerts if a.rule_id == "policy.evasion"]
    assert evasions
    cfg = _config(kafka_bootstrap)
    collect = subprocess.run([sys.executable, "-m", "otsentry", "collect", "pcap", str(forged), "--window", "10s",
                              *_topic_flags(cfg)[:4], "--partitions", str(PARTITIONS)],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert collect.returncode == 0, collect.stderr
    worker = Daemon(["detect", "--model", str(model), *_topic_flags(cfg)], tmp_path / "detect.log")
    try:
        worker.wait_metric("otsentry_windows_scored_total", lambda v: v >= ref.windows)
        worker.wait_metric("otsentry_alerts_published_total", lambda v: v >= len(ref.alerts))
        assert worker.metric("otsentry_malformed_records_total") == 0  # sensor windows are not dead letters
    finally:
        worker.stop()
    assert sorted(_alert_ids(cfg)) == sorted(a.id for a in ref.alerts)
