"""The real Kafka broker of ``make services`` with kafka-python: keyed, compressed, at-least-once consumption.

What issue 4's pipeline relies on, checked against the broker itself (no mocks):

* a topic with 3 partitions; 1,000 keyed records produced with compression (gzip and lz4), each key on one
  partition, in order;
* a consumer group that commits only what it has processed (manual commit); a consumer that stops after fetching
  records it has not processed yet ("crash" before commit), and a new consumer of the same group that resumes
  exactly at the committed offsets: every record processed once, those fetched-but-unprocessed delivered again;
* ``services/kafka.py``: ``start`` when running says so at once, ``stop``/``start`` works, topics and committed
  offsets survive the restart (slow; it leaves the broker running).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
import warnings
from collections import defaultdict

import pytest

from services import kafka as kafka_service
from tests.helpers import ROOT

with warnings.catch_warnings():  # kafka-python 3.0 loads its protocol schemas with importlib.resources.read_text
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.serializer import DefaultSerializer, JsonSerializer

pytestmark = pytest.mark.integration

MESSAGES = 1_000
KEYS = 25
PARTITIONS = 3
DEADLINE_S = 60.0
SERVICE = [sys.executable, "-m", "services.kafka"]


def new_topic(bootstrap: str, prefix: str) -> str:
    topic = f"otsentry-test-{prefix}-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="otsentry-tests")
    try:
        admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}}, wait_for_metadata=True)
    finally:
        admin.close()
    return topic


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="otsentry-tests")
    try:
        admin.delete_topics([topic], raise_errors=False)
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, count: int, compression: str) -> tuple[dict[tuple[int, int], dict], float]:
    """``count`` keyed JSON records; returns {(partition, offset): record} and the producer's compression rate."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, compression_type=compression, acks="all", linger_ms=5,
        key_serializer=DefaultSerializer(), value_serializer=JsonSerializer(),
    )  # fmt: skip
    try:
        futures = []
        for seq in range(count):
            record = {"seq": seq, "key": f"pair-{seq % KEYS}", "payload": "fc3 holding registers 40001-40010 " * 4}
            futures.append((record, producer.send(topic, key=record["key"], value=record)))
        producer.flush(timeout=DEADLINE_S)
        written = {}
        for record, future in futures:
            metadata = future.get(timeout=DEADLINE_S)
            written[(metadata.partition, metadata.offset)] = record
        rate = producer.metrics()["producer-metrics"]["compression-rate-avg"]
    finally:
        producer.close()
    return written, rate


def consumer(bootstrap: str, topic: str, group: str, batch: int = 50) -> KafkaConsumer:
    return KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=batch, client_id=f"{group}-{uuid.uuid4().hex[:6]}",
        key_deserializer=DefaultSerializer(), value_deserializer=JsonSerializer(),
    )  # fmt: skip


def process_and_commit(worker: KafkaConsumer, limit: int, processed: list, leftover: bool = True) -> list:
    """Poll, "process" (append ``(partition, offset, key, seq)``) and commit what was processed, batch by batch.

    Stops once ``limit`` records are processed. Then (``leftover``) fetches one more batch and returns it
    unprocessed and uncommitted: what a worker killed between fetch and commit leaves behind.
    """
    deadline = time.monotonic() + DEADLINE_S
    done = 0
    while done < limit and time.monotonic() < deadline:
        batches = worker.poll(timeout_ms=1000)
        commit = {}
        for tp, records in batches.items():
            for record in records:
                processed.append((tp.partition, record.offset, record.key, record.value["seq"]))
                done += 1
            commit[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
        if commit:
            worker.commit(commit)  # only after processing
    assert done >= limit, f"processed {done} of {limit} records in {DEADLINE_S:.0f} s"
    fetched: list = []
    while leftover and not fetched and time.monotonic() < deadline:
        for tp, records in worker.poll(timeout_ms=1000).items():
            fetched += [(tp.partition, record.offset) for record in records]
    return fetched


def drain(worker: KafkaConsumer, until: int, processed: list) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while len(processed) < until and time.monotonic() < deadline:
        batches = worker.poll(timeout_ms=1000)
        for tp, records in batches.items():
            for record in records:
                processed.append((tp.partition, record.offset, record.key, record.value["seq"]))
            worker.commit({tp: OffsetAndMetadata(records[-1].offset + 1, "", -1)})


@pytest.mark.parametrize("compression", ["gzip", "lz4"])
def test_keyed_compressed_records_resume_from_the_committed_offsets(kafka_bootstrap, compression):
    topic = new_topic(kafka_bootstrap, compression)
    group = f"{topic}-workers"
    try:
        written, compression_rate = produce(kafka_bootstrap, topic, MESSAGES, compression)
        assert len(written) == MESSAGES
        assert compression_rate < 0.5, f"{compression}: compressed/uncompressed {compression_rate:.2f}"
        partitions_of_key = defaultdict(set)
        for (partition, _), record in written.items():
            partitions_of_key[record["key"]].add(partition)
        assert all(len(parts) == 1 for parts in partitions_of_key.values()), "a key spread over partitions"
        assert {partition for partition, _ in written} == set(range(PARTITIONS))

        first = consumer(kafka_bootstrap, topic, group)
        processed_first: list = []
        try:
            unprocessed = process_and_commit(first, 400, processed_first)
            committed = {tp.partition: first.committed(tp) for tp in first.assignment()}
        finally:
            first.close(autocommit=False)  # "crashes": the last fetched batch is neither processed nor committed
        assert unprocessed, "the first worker fetched nothing past what it processed"
        assert len(committed) == PARTITIONS

        second = consumer(kafka_bootstrap, topic, group)
        processed_second: list = []
        try:
            drain(second, MESSAGES - len(processed_first), processed_second)
            end = second.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
            final = {tp.partition: second.committed(tp) for tp in end}
        finally:
            second.close(autocommit=False)

        # The second worker starts on each partition exactly where the first one committed.
        first_offsets = {}
        for partition, offset, _, _ in processed_second:
            first_offsets.setdefault(partition, offset)
        for partition, offset in first_offsets.items():
            assert offset == (committed[partition] or 0), f"partition {partition} resumed at {offset}"
        # None twice, none lost; what was fetched but not committed is delivered again.
        seen = [(partition, offset) for partition, offset, _, _ in processed_first + processed_second]
        assert len(seen) == len(set(seen)) == MESSAGES
        assert set(seen) == set(written)
        assert set(unprocessed) <= {(partition, offset) for partition, offset, _, _ in processed_second}
        # Content and per-key order (one key = one partition = in order).
        by_key = defaultdict(list)
        for partition, offset, key, seq in processed_first + processed_second:
            assert written[(partition, offset)]["seq"] == seq and written[(partition, offset)]["key"] == key
            by_key[key].append(seq)
        assert all(seqs == sorted(seqs) for seqs in by_key.values())
        assert final == {tp.partition: offset for tp, offset in end.items()}
    finally:
        delete_topic(kafka_bootstrap, topic)


def run_service(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(SERVICE + list(args), capture_output=True, text=True, timeout=timeout, check=False,
                          cwd=ROOT)


@pytest.mark.slow
def test_service_start_is_idempotent_and_data_survives_a_restart(kafka_bootstrap):
    service = kafka_service
    if kafka_bootstrap.split(",")[0] != f"{service.HOST}:{service.PORT}" or service.running_pid() is None:
        pytest.skip(f"the broker on {kafka_bootstrap} was not started by services/kafka.py in {service.RUN}")
    topic = new_topic(kafka_bootstrap, "restart")
    group = f"{topic}-workers"
    try:
        began = time.monotonic()
        again = run_service("start")
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stdout
        assert time.monotonic() - began < 10

        written, _ = produce(kafka_bootstrap, topic, 100, "lz4")
        worker = consumer(kafka_bootstrap, topic, group, batch=20)
        processed: list = []
        try:
            process_and_commit(worker, 60, processed, leftover=False)
        finally:
            worker.close(autocommit=False)
        assert 60 <= len(processed) < 100

        stopped = run_service("stop")
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped" in stopped.stdout
        assert run_service("status").returncode == 3
        assert service.probe() is None
        assert "not running" in run_service("stop").stdout

        restarted = run_service("start")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        assert "ready in" in restarted.stdout
        assert "already running" in run_service("start").stdout
        assert run_service("status").returncode == 0

        # The topic and the group's committed offsets survived: the group resumes, a new group reads everything.
        resumed: list = []
        worker = consumer(kafka_bootstrap, topic, group)
        try:
            drain(worker, 100 - len(processed), resumed)
        finally:
            worker.close(autocommit=False)
        assert len(processed) + len(resumed) == 100
        assert {(p, o) for p, o, _, _ in processed} | {(p, o) for p, o, _, _ in resumed} == set(written)
        everything: list = []
        worker = consumer(kafka_bootstrap, topic, f"{group}-fresh")
        try:
            drain(worker, 100, everything)
        finally:
            worker.close(autocommit=False)
        assert {(p, o) for p, o, _, _ in everything} == set(written)
    finally:
        if service.running_pid() is None:  # leave the broker running for the other tests, whatever happened
            run_service("start")
        delete_topic(kafka_bootstrap, topic)
