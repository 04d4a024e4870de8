"""``otsentry index`` against the real broker and Elasticsearch of ``make services`` (issue 5's proof): alerts from
Kafka end up indexed exactly once, offsets are committed only after Elasticsearch acknowledged, and an Elasticsearch
restart while the daemon runs and alerts keep arriving loses and duplicates nothing.

Every test uses its own topics, group and index prefix (a random suffix) and removes its indices at the end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from otsentry.records import Alert, FeatureEvidence, alert_id
from otsentry.stream.codec import encode_alert
from otsentry.stream.runtime.metrics import scrape
from otsentry.stream.runtime.settings import KafkaConfig
from tests.helpers import ROOT, free_port
from tests.integration.helpers import ES_DEFAULT_URL as DEFAULT_URL, es_health as _health

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 3
ES_SERVICE = [sys.executable, "-m", "services.elasticsearch"]  # run from the clone's root


def _service(command: str) -> None:
    """Stop or start the Elasticsearch node of ``make services``."""
    proc = subprocess.run([*ES_SERVICE, command], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def make_alerts(n: int, start: float = 1_700_092_000.0) -> list[Alert]:
    """``n`` distinct alerts, 10 s apart (they straddle a midnight: two daily indices behind the alias)."""
    out = []
    for i in range(n):
        t = start + 10.0 * i
        client = f"10.0.{i % 7}.{i % 200 + 1}"
        out.append(Alert(id=alert_id(t, t + 10, client, "10.0.0.20", 1, "policy.first_write"),
                         rule_id="policy.first_write", rule_name="First write from a client that only read",
                         category="policy", detector="policy", severity="high", risk_score=73.0, score=3.0,
                         threshold=0.5, window_start=t, window_end=t + 10, client_ip=client, server_ip="10.0.0.20",
                         unit_id=1, explanation=f"{client} wrote to 10.0.0.20 unit 1 but never wrote while learning",
                         evidence=(FeatureEvidence("writes", 3.0, 0.0, 0.0, 1.0),), function_codes=(16,),
                         server_port=502))
    return out


@pytest.fixture
def names(kafka_bootstrap, es, es_url):
    sfx = uuid.uuid4().hex[:10]
    cfg = KafkaConfig(bootstrap=kafka_bootstrap, alerts_topic=f"test.alerts.{sfx}", deadletter_topic=f"test.dead.{sfx}",
                      group=f"test-index-{sfx}", partitions=PARTITIONS)
    prefix = f"otsentry-test-{sfx}"
    yield cfg, prefix
    if _health(es_url) is not None:
        es.options(ignore_status=404).indices.delete(index=f"{prefix}-*", ignore_unavailable=True,
                                                       allow_no_indices=True)
        es.options(ignore_status=404).indices.delete_index_template(name=prefix)


class Publisher:
    """Alerts onto the topic as a detector would (key = alert id), each group acknowledged."""

    def __init__(self, cfg: KafkaConfig) -> None:
        from otsentry.stream.kafka.client import KafkaPublisher, ensure_topics

        ensure_topics(cfg, [cfg.alerts_topic, cfg.deadletter_topic])
        self.cfg = cfg
        self.producer = KafkaPublisher(cfg)

    def send(self, alerts: list[Alert]) -> None:
        for a in alerts:
            self.producer.publish(self.cfg.alerts_topic, encode_alert(a), key=a.id.encode())
        assert self.producer.flush(30.0)

    def send_raw(self, value: bytes) -> None:
        self.producer.publish(self.cfg.alerts_topic, value, key=b"junk")
        assert self.producer.flush(30.0)

    def close(self) -> None:
        self.producer.close()


class IndexDaemon:
    """``otsentry index`` as a subprocess, with its metrics endpoint."""

    def __init__(self, cfg: KafkaConfig, es_url: str, prefix: str, tmp: Path) -> None:
        self.port = free_port()
        tmp.mkdir(parents=True, exist_ok=True)
        self.log = tmp / "index.log"
        env = {**os.environ, "OTSENTRY_KAFKA_BOOTSTRAP": "", "OTSENTRY_STATE_DIR": str(tmp / "state")}
        args = ["index", "--kafka", cfg.bootstrap, "--es", es_url, "--es-index", prefix,
                "--alerts-topic", cfg.alerts_topic, "--deadletter-topic", cfg.deadletter_topic, "--group", cfg.group,
                "--partitions", str(cfg.partitions), "--session-timeout", "10s", "--max-poll-records", "100",
                "--backoff-max", "2s", "--metrics-port", str(self.port), "--log-format", "kv"]
        self.proc = subprocess.Popen([sys.executable, "-m", "otsentry", *args], stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "w"), cwd=ROOT, env=env)

    def metric(self, name: str) -> float | None:
        return scrape(self.port, name)

    def wait(self, check, what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"otsentry index exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 20.0) -> float:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _offsets(cfg: KafkaConfig) -> tuple[int, int]:
    """(sum of the group's committed offsets, sum of the end offsets) over the alerts topic's partitions."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=cfg.bootstrap, group_id=cfg.group, enable_auto_commit=False)
    try:  # naming the group without subscribing only reads its commits; it does not join
        tps = [TopicPartition(cfg.alerts_topic, p) for p in range(cfg.partitions)]
        ends = consumer.end_offsets(tps)
        return sum(consumer.committed(tp) or 0 for tp in tps), sum(ends.values())
    finally:
        consumer.close(autocommit=False)


def _caught_up(cfg: KafkaConfig, total: int) -> bool:
    committed, end = _offsets(cfg)
    return committed == end == total


def _indexed_ids(es, prefix: str) -> list[str]:
    es.indices.refresh(index=prefix, ignore_unavailable=True, allow_no_indices=True)
    resp = es.search(index=prefix, size=10000, source=False, query={"match_all": {}},
                     ignore_unavailable=True, allow_no_indices=True)
    return [h["_id"] for h in resp["hits"]["hits"]]


def _count(es, prefix: str) -> int:
    es.indices.refresh(index=prefix, ignore_unavailable=True, allow_no_indices=True)
    return int(es.count(index=prefix, ignore_unavailable=True, allow_no_indices=True)["count"])


def _dead_letters(cfg: KafkaConfig) -> list:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(cfg.deadletter_topic, bootstrap_servers=cfg.bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000, enable_auto_commit=False)
    try:
        return list(consumer)
    finally:
        consumer.close()


def test_index_daemon_indexes_each_alert_once_and_commits_after_ack(names, es, es_url, tmp_path):
    cfg, prefix = names
    alerts = make_alerts(300)
    pub = Publisher(cfg)
    try:
        pub.send(alerts)
        pub.send(alerts[:50])  # copies on the topic, as after a detector's crash: still one document each
        pub.send_raw(b"{not json")
    finally:
        pub.close()
    daemon = IndexDaemon(cfg, es_url, prefix, tmp_path)
    try:
        daemon.wait(lambda: _caught_up(cfg, 351), "offsets committed to the end")
        assert sorted(_indexed_ids(es, prefix)) == sorted(a.id for a in alerts)
        assert daemon.metric("otsentry_alerts_indexed_total") == 300
        assert daemon.metric("otsentry_alerts_duplicate_total") == 50
        assert daemon.metric("otsentry_malformed_records_total") == 1
        took = daemon.stop()
    finally:
        daemon.kill()
    assert daemon.proc.returncode == 0, daemon.log.read_text()
    assert took < 15
    (dead,) = _dead_letters(cfg)
    assert dead.value == b"{not json" and dict(dead.headers)["otsentry.error"].startswith(b"not JSON")
    log = daemon.log.read_text()
    assert "indexer done: 350 alerts read, 300 indexed, 50 already indexed, 0 rejected, 1 unreadable" in log
    # two daily indices behind the alias, made by the template
    assert len(es.indices.get_alias(name=prefix)) == 2


def test_elasticsearch_restart_under_the_index_daemon_loses_and_duplicates_nothing(names, es, es_url, tmp_path):
    if es_url != DEFAULT_URL:
        pytest.skip("restarts only the node of `make services` (OTSENTRY_ES points elsewhere)")
    cfg, prefix = names
    alerts = iter(make_alerts(3000))
    pub = Publisher(cfg)
    es_down, outage_fed, es_back = threading.Event(), threading.Event(), threading.Event()
    sent: list[Alert] = []
    errors: list[BaseException] = []

    def send(n: int = 25) -> None:
        group = [next(alerts) for _ in range(n)]
        pub.send(group)
        sent.extend(group)
        time.sleep(0.2)

    def feed() -> None:  # a steady trickle of alerts before, during and after the outage
        try:
            while not es_down.is_set() and len(sent) < 1500:
                send()
            at_outage = len(sent)
            while len(sent) < at_outage + 500:
                send()
            outage_fed.set()
            assert es_back.wait(300)
            for _ in range(20):
                send()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            outage_fed.set()

    daemon = IndexDaemon(cfg, es_url, prefix, tmp_path)
    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        daemon.wait(lambda: (daemon.metric("otsentry_alerts_indexed_total") or 0) >= 200, "alerts indexed")
        _service("stop")
        daemon.wait(lambda: daemon.metric("otsentry_elasticsearch_up") == 0, "the daemon seeing Elasticsearch down")
        committed, _ = _offsets(cfg)
        es_down.set()
        assert outage_fed.wait(300) and not errors, errors
        # 500 alerts arrived while it was down, and nothing more was committed
        assert _offsets(cfg) == (committed, len(sent))
        assert committed <= len(sent) - 500
        _service("start")
        es_back.set()
        feeder.join(timeout=300)
        assert not errors, errors
        daemon.wait(lambda: _caught_up(cfg, len(sent)), "offsets committed to the end", timeout=180)
        assert daemon.metric("otsentry_elasticsearch_up") == 1
        took = daemon.stop()
    finally:
        es_back.set()
        feeder.join(timeout=300)
        pub.close()
        daemon.kill()
        if _health(DEFAULT_URL) is None:
            _service("start")  # leave the node running for the other tests
    assert daemon.proc.returncode == 0, daemon.log.read_text()[-3000:]
    assert took < 15
    ids = _indexed_ids(es, prefix)
    assert len(ids) == _count(es, prefix) == len(sent)  # every alert, each exactly once
    assert set(ids) == {a.id for a in sent}
    log = daemon.log.read_text()
    # the outage is logged once when it starts and once when it ends, not per retry
    assert len(re.findall(r"elasticsearch: down", log)) == 1, log[-3000:]
    assert len(re.findall(r"elasticsearch: up", log)) == 1, log[-3000:]


def test_sigterm_while_elasticsearch_is_down_exits_promptly_and_the_next_run_indexes_the_rest(names, es, es_url,
                                                                                               tmp_path):
    if es_url != DEFAULT_URL:
        pytest.skip("restarts only the node of `make services` (OTSENTRY_ES points elsewhere)")
    cfg, prefix = names
    alerts = make_alerts(400)
    pub = Publisher(cfg)
    first = IndexDaemon(cfg, es_url, prefix, tmp_path / "first")
    try:
        pub.send(alerts[:200])
        first.wait(lambda: _caught_up(cfg, 200), "the first 200 alerts committed")
        _service("stop")
        pub.send(alerts[200:])
        first.wait(lambda: first.metric("otsentry_elasticsearch_up") == 0, "the daemon seeing Elasticsearch down")
        took = first.stop()
        assert first.proc.returncode == 0, first.log.read_text()[-3000:]
        assert took < 15
        assert _offsets(cfg) == (200, 400)  # what Elasticsearch never acknowledged is not committed
        assert "not acknowledged by Elasticsearch: offsets not committed" in first.log.read_text()
        _service("start")
        second = IndexDaemon(cfg, es_url, prefix, tmp_path / "second")
        try:
            second.wait(lambda: _caught_up(cfg, 400), "all 400 alerts committed by the next run", timeout=120)
            assert second.stop() < 15 and second.proc.returncode == 0
        finally:
            second.kill()
    finally:
        pub.close()
        first.kill()
        if _health(DEFAULT_URL) is None:
            _service("start")
    ids = _indexed_ids(es, prefix)
    assert len(ids) == len(set(ids)) == 400 and set(ids) == {a.id for a in alerts}
