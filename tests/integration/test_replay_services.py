"""``otsentry replay run --kafka/--es`` against the real broker and Elasticsearch of ``make services``.

Each test uses its own topics and index prefix (a random suffix) and removes them at the end. The scenario is
fc_sweep's quick version (10 minutes: 5 to learn, the sweep at minute 6), generated once into a temporary cache.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from otsentry.features.from_capture import window_batches_from_capture
from otsentry.replay.catalog import generate, get_scenario
from otsentry.stream.codec import Watermark, decode_alert, decode_feature_record
from otsentry.contracts.windows import window_identity
from tests.helpers import ROOT

pytestmark = pytest.mark.integration

SCENARIO = "fc_sweep"
PARTITIONS = 3
DONE = re.compile(r"done: scored (\d+) windows after learning from (\d+): (\d+) alerts")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("replay-cache")
    generate(get_scenario(SCENARIO), folder, None, True)
    return folder


@pytest.fixture
def topics(kafka_bootstrap):
    sfx = uuid.uuid4().hex[:10]
    names = (f"test.replay.features.{sfx}", f"test.replay.alerts.{sfx}")
    yield names
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="otsentry-tests")
    try:
        admin.delete_topics(list(names), raise_errors=False)
    finally:
        admin.close()


@pytest.fixture
def prefix(es):
    name = f"otsentry-test-replay-{uuid.uuid4().hex[:10]}"
    yield name
    es.indices.delete(index=f"{name}-*", ignore_unavailable=True, allow_no_indices=True)
    es.options(ignore_status=404).indices.delete_index_template(name=name)


def replay_run(cache: Path, tmp_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``otsentry replay run fc_sweep --quick ...`` as a user runs it (broker settings only from the flags)."""
    env = {**os.environ, "OTSENTRY_KAFKA_BOOTSTRAP": "", "OTSENTRY_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run([sys.executable, "-m", "otsentry", "replay", "run", SCENARIO, "--quick", "--cache",
                           str(cache), *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


def read_topic(bootstrap: str, topic: str) -> list:
    """Every record of ``topic``, read from the start of each partition up to its end offset."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close(autocommit=False)


def jsonl_ids(path: Path) -> list[str]:
    return [json.loads(line)["otsentry"]["alert_id"] for line in path.read_text().splitlines()]


def test_replay_publishes_its_windows_and_alerts_and_indexes_the_alerts(kafka_bootstrap, topics, es, es_url,
                                                                        prefix, cache, tmp_path):
    features, alerts = topics
    out = tmp_path / "alerts.jsonl"
    run = replay_run(cache, tmp_path, "--as-fast-as-possible", "--alerts-out", str(out),
                     "--kafka", kafka_bootstrap, "--features-topic", features, "--alerts-topic", alerts,
                     "--partitions", str(PARTITIONS), "--es", es_url, "--es-index", prefix)
    assert run.returncode == 0, run.stderr
    scored, learned, n_alerts = map(int, DONE.search(run.stderr).groups())
    printed = [line for line in run.stdout.splitlines() if "policy." in line or "anomaly." in line]
    ids = jsonl_ids(out)
    assert n_alerts == len(ids) == len(printed) == len(set(ids)) > 0
    assert f"{scored + learned} windows published to {features}, {n_alerts} alerts to {alerts}" in run.stderr
    assert f"{es_url}: {n_alerts} indexed" in run.stderr

    # The features topic: every window the in-process run learned from and scored, once; watermarks that end
    # with a final one on every partition, as `collect pcap --kafka` leaves it.
    records = [decode_feature_record(r.value) for r in read_topic(kafka_bootstrap, features)]
    windows = [r for r in records if not isinstance(r, Watermark)]
    assert len(windows) == scored + learned
    pcap = generate(get_scenario(SCENARIO), cache, None, True).pcap
    expected = [w for group in window_batches_from_capture(pcap, 10.0) for w in group]
    assert sorted(map(window_identity, windows)) == sorted(map(window_identity, expected))
    assert [w.to_dict() for w in sorted(windows, key=window_identity)] == \
        [w.to_dict() for w in sorted(expected, key=window_identity)]
    finals = [m for m in records if isinstance(m, Watermark) and m.final]
    assert len(finals) == PARTITIONS and len({m.source for m in records if isinstance(m, Watermark)}) == 1
    assert finals[0].watermark == max(w.window_end for w in windows)

    # The alerts topic and Elasticsearch: exactly the alerts the run printed and wrote.
    published = [r for r in read_topic(kafka_bootstrap, alerts)]
    assert sorted(decode_alert(r.value).id for r in published) == sorted(ids)
    assert all(r.key.decode() == decode_alert(r.value).id for r in published)
    es.indices.refresh(index=prefix)
    hits = es.search(index=prefix, size=1000, query={"match_all": {}})["hits"]["hits"]
    assert sorted(h["_id"] for h in hits) == sorted(ids)
    assert {h["_source"]["rule"]["id"] for h in hits} >= set(get_scenario(SCENARIO).expected_rules) - {
        "anomaly.pair_ensemble", "anomaly.flow_ensemble"}

    # Replaying again indexes nothing twice (alert ids are the documents' ids).
    again = replay_run(cache, tmp_path, "--as-fast-as-possible", "--es", es_url, "--es-index", prefix)
    assert again.returncode == 0, again.stderr
    assert f"{es_url}: 0 indexed, {n_alerts} already there" in again.stderr
    es.indices.refresh(index=prefix)
    assert es.count(index=prefix)["count"] == n_alerts


def test_paced_replay_publishes_windows_as_they_close(kafka_bootstrap, topics, cache, tmp_path):
    features, alerts = topics
    run = replay_run(cache, tmp_path, "--speed", "200x", "--kafka", kafka_bootstrap, "--features-topic", features,
                     "--alerts-topic", "", "--partitions", "1")
    assert run.returncode == 0, run.stderr
    scored, learned, _ = map(int, DONE.search(run.stderr).groups())
    assert f"{scored + learned} windows published to {features}." in run.stderr
    records = read_topic(kafka_bootstrap, features)
    decoded = [decode_feature_record(r.value) for r in records]
    stamps = [r.timestamp for r, d in zip(records, decoded) if not isinstance(d, Watermark)]
    assert len(stamps) == scored + learned
    # 10 minutes of capture at 200x: the windows reach the broker over about 3 s, slot after slot.
    assert (max(stamps) - min(stamps)) / 1000 >= 2.0
    marks = [d for d in decoded if isinstance(d, Watermark)]
    assert len(marks) >= 50 and marks[-1].final
    assert alerts not in _topics(kafka_bootstrap)  # --alerts-topic '': windows only


def _topics(bootstrap: str) -> set[str]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return set(consumer.topics())
    finally:
        consumer.close()


def test_unreachable_broker_is_a_one_line_error(cache, tmp_path):
    run = replay_run(cache, tmp_path, "--as-fast-as-possible", "--kafka", "127.0.0.1:1", timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith("Error: --kafka 127.0.0.1:1: cannot reach")
    assert "Traceback" not in run.stderr
