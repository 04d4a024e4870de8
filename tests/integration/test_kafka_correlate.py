"""Correlation on the real broker: detector workers -> `otsentry correlate` -> the incidents of `otsentry run`.

The whole Kafka path (collector stage, a detector worker, the correlator), compared with the embedded pipeline on
the same capture and model; then a correlator stopped half-way and restarted from its checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import replace

import pytest

from otsentry import pipeline
from otsentry.detectors.bundle import ModelBundle
from otsentry.records import Incident
from otsentry.stream.correlate import CorrelatorWorker, run_correlator
from otsentry.stream.kafka.client import KafkaGroupConsumer, KafkaPublisher, ensure_topics
from otsentry.stream.delivery.outbox import Outbox
from otsentry.stream.runtime.daemon import StreamSettings
from otsentry.stream.detect import run_detector
from otsentry.stream.runtime.settings import DaemonConfig, KafkaConfig, StreamConfig
from tests.helpers import ROOT
from tests.integration.test_stream_kafka import _publish_paced, _read

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GAP_S = 120.0


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    from otsentry.synth.library import generate

    folder = tmp_path_factory.mktemp("correlate")
    pcap, _, _, _ = generate("repeat_campaign", folder)
    # detector workers see windows, not reads: the Kafka path has no process-variable watch
    trained = replace(pipeline.train([pcap], learn_for_s=600), variables=())
    bundle = ModelBundle.load(trained.save(folder / "plant.otsb"))
    ref = pipeline.run([pcap], bundle=bundle, idle_gap_s=GAP_S)
    assert len(ref.incidents) >= 3
    return pcap, bundle, ref


def _config(bootstrap: str) -> KafkaConfig:
    sfx = uuid.uuid4().hex[:10]
    return KafkaConfig(bootstrap=bootstrap, features_topic=f"test.features.{sfx}", alerts_topic=f"test.alerts.{sfx}",
                       correlated_topic=f"test.correlated.{sfx}", incidents_topic=f"test.incidents.{sfx}",
                       deadletter_topic=f"test.dead.{sfx}", group=f"test-group-{sfx}", partitions=4,
                       session_timeout_s=10.0)


def _latest(bootstrap: str, topic: str) -> dict[str, dict]:
    return {r.key.decode(): json.loads(r.value) for r in _read(bootstrap, topic, timeout=5.0)}


def _alerts_on_kafka(cfg: KafkaConfig, pcap, bundle) -> None:
    _publish_paced(cfg, pcap, chunk_bytes=8 << 20)
    settings = StreamSettings(cfg, StreamConfig(), DaemonConfig(stop_timeout_s=5.0))
    worker, _ = run_detector(bundle, settings, until_idle_s=3.0)
    assert worker is not None and worker.alerts_published > 0


def test_kafka_path_builds_the_incidents_of_run(kafka_bootstrap, campaign, tmp_path) -> None:
    pcap, bundle, ref = campaign
    cfg = _config(kafka_bootstrap)
    _alerts_on_kafka(cfg, pcap, bundle)
    correlator_cfg = KafkaConfig(**{**cfg.__dict__, "group": cfg.group + "-corr"})
    settings = StreamSettings(correlator_cfg, StreamConfig(), DaemonConfig(stop_timeout_s=5.0))
    worker, metrics = run_correlator(settings, tmp_path / "state.json", GAP_S, 60.0, until_idle_s=3.0)
    assert worker is not None and metrics.get("otsentry_incidents_published_total") == len(ref.incidents)
    incidents = {k: Incident.from_dict(v) for k, v in _latest(cfg.bootstrap, cfg.incidents_topic).items()}
    assert incidents == {i.id: i for i in ref.incidents}
    correlated = _latest(cfg.bootstrap, cfg.correlated_topic)
    assert {k: v["incident_id"] for k, v in correlated.items()} == {a.id: a.incident_id for a in ref.alerts}


def test_a_correlator_stopped_half_way_resumes_from_its_checkpoint(kafka_bootstrap, campaign, tmp_path) -> None:
    pcap, bundle, ref = campaign
    cfg = _config(kafka_bootstrap)
    _alerts_on_kafka(cfg, pcap, bundle)
    group = cfg.group + "-corr"
    ccfg = KafkaConfig(**{**cfg.__dict__, "group": group, "session_timeout_s": 6.0})
    ensure_topics(ccfg, [ccfg.correlated_topic, ccfg.incidents_topic])
    state = tmp_path / "state.json"

    def worker(max_poll: int) -> CorrelatorWorker:
        return CorrelatorWorker(lambda: KafkaGroupConsumer(ccfg, [ccfg.alerts_topic], max_poll),
                                Outbox(KafkaPublisher(ccfg)), correlated_topic=ccfg.correlated_topic,
                                incidents_topic=ccfg.incidents_topic, state_path=state, idle_gap_s=GAP_S,
                                lateness_s=60.0, max_poll_records=max_poll)

    first = worker(5)
    steps = 0
    while first.alerts_correlated + len(first._held) < 10 and steps < 200:
        first.step(timeout_s=1.0)
        steps += 1
    first.close()  # checkpoint, commit, leave the group
    assert state.exists() and first.alerts_correlated + len(first._held) < len(ref.alerts)
    # the rest by the CLI daemon, from the same checkpoint
    args = [sys.executable, "-m", "otsentry", "correlate", "--kafka", ccfg.bootstrap, "--alerts-topic",
            ccfg.alerts_topic, "--correlated-topic", ccfg.correlated_topic, "--incidents-topic",
            ccfg.incidents_topic, "--deadletter-topic", ccfg.deadletter_topic, "--group", group,
            "--incident-gap", "2m", "--state", str(state), "--until-idle", "4s", "--session-timeout", "6s"]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    incidents = {k: Incident.from_dict(v) for k, v in _latest(cfg.bootstrap, cfg.incidents_topic).items()}
    assert incidents == {i.id: i for i in ref.incidents}
    assert {k: v["incident_id"] for k, v in _latest(cfg.bootstrap, cfg.correlated_topic).items()} == \
        {a.id: a.incident_id for a in ref.alerts}


def test_index_incidents_moves_them_into_elasticsearch_once(kafka_bootstrap, es, campaign, tmp_path) -> None:
    from otsentry.alerts.elastic import ElasticSink
    from otsentry.alerts.elastic_template import INCIDENT_MAPPINGS
    from otsentry.stream.codec import encode_incident
    from otsentry.stream.index import IncidentSink, run_indexer

    _, _, ref = campaign
    cfg = _config(kafka_bootstrap)
    ensure_topics(cfg, [cfg.incidents_topic])
    pub = KafkaPublisher(cfg)
    for i in ref.incidents * 2:  # a correlator restarted before its commit publishes its incidents again
        pub.publish(cfg.incidents_topic, encode_incident(i), key=i.id.encode())
    assert pub.flush(10)
    pub.close()
    prefix = f"otsentry-test-inc-{uuid.uuid4().hex[:8]}"
    sink = ElasticSink(es, prefix, spool=False, state_dir=tmp_path, mappings=INCIDENT_MAPPINGS, replace=True)
    settings = StreamSettings(KafkaConfig(**{**cfg.__dict__, "group": cfg.group + "-idx"}), StreamConfig(),
                              DaemonConfig(stop_timeout_s=5.0))
    try:
        indexer, _, ok = run_indexer(IncidentSink(sink), settings, until_idle_s=3.0, incidents=True)
        assert ok and indexer.consumed == 2 * len(ref.incidents)
        es.indices.refresh(index=f"{prefix}-*")
        hits = es.search(index=prefix, size=100)["hits"]["hits"]
        assert sorted(h["_id"] for h in hits) == sorted(i.id for i in ref.incidents)
        assert all(h["_source"]["threat"]["framework"] == "MITRE ATT&CK for ICS" for h in hits)
    finally:
        es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
        es.options(ignore_status=404).indices.delete_index_template(name=prefix)
