"""The indexer's commit rule and flow control over the in-process transport (``MemoryBroker``), and its CLI.

The sink here is an in-memory stand-in with ``ElasticSink``'s contract (flush: True, or ``ElasticUnavailable``
keeping the documents); the real sink and Elasticsearch are in tests/integration/test_index_daemon.py.
"""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from otsentry.alerts.elastic import ElasticError, ElasticUnavailable, SinkStats
from otsentry.cli import main
from otsentry.records import Alert, alert_id
from otsentry.stream.codec import encode_alert
from otsentry.stream.runtime.retry import Backoff
from otsentry.stream.index import AlertIndexer, run_indexer
from otsentry.stream.runtime.metrics import Metrics
from otsentry.stream.delivery.outbox import Outbox
from otsentry.stream.runtime.daemon import StreamSettings
from otsentry.stream.runtime.settings import DaemonConfig, KafkaConfig, StreamConfig
from otsentry.stream.transport import MemoryBroker

A, D = "alerts", "dead"


def _alerts(n: int) -> list[Alert]:
    return [Alert(alert_id(t, t + 10, "10.0.0.66", "10.0.0.20", 1, "policy.first_write"), "policy.first_write",
                  "First write", "policy", "policy", "high", 73.0, 3.0, 0.5, t, t + 10, "10.0.0.66", "10.0.0.20", 1,
                  "wrote") for t in (1_700_000_000.0 + 10 * i for i in range(n))]


class MemorySink:
    """Keeps documents by id (like ``_id`` + create); ``down`` makes flush fail and keep the batch."""

    def __init__(self) -> None:
        self.stats = SinkStats()
        self.docs: dict[str, Alert] = {}
        self.buffer: list[Alert] = []
        self.down = False
        self.fatal = False
        self.flushes = 0

    def write(self, alert: Alert) -> None:
        self.buffer.append(alert)

    def flush(self) -> bool:
        self.flushes += 1
        if self.fatal:
            raise ElasticError("http://es:9200 refused the credentials (HTTP 401)")
        if self.down:
            raise ElasticUnavailable("http://es:9200 is unreachable")
        for a in self.buffer:
            if a.id in self.docs:
                self.stats.duplicates += 1
            else:
                self.docs[a.id] = a
                self.stats.indexed += 1
        self.buffer = []
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _broker(alerts: list[Alert], junk: int = 0) -> MemoryBroker:
    broker = MemoryBroker(partitions=3)
    pub = broker.publisher()
    for a in alerts:
        pub.publish(A, encode_alert(a), key=a.id.encode())
    for i in range(junk):
        pub.publish(A, b"{not json", key=f"junk{i}".encode())
    return broker


def _indexer(broker: MemoryBroker, sink: MemorySink, group: str = "g", **kw) -> AlertIndexer:
    kw.setdefault("max_poll_records", 20)
    return AlertIndexer(lambda: broker.consumer([A], group), sink, Outbox(broker.publisher()), deadletter_topic=D,
                        **kw)


def _committed(broker: MemoryBroker, group: str = "g") -> int:
    return sum(o for o, _ in broker.groups[group].committed.values())


def _end(broker: MemoryBroker) -> int:
    return len(broker.records(A))


def test_indexes_every_alert_once_and_commits_to_the_end():
    alerts = _alerts(100)
    broker = _broker(alerts + alerts[:10], junk=2)  # copies on the topic, and unreadable records
    sink = MemorySink()
    ix = _indexer(broker, sink)
    while ix.step(0) or ix.pending:
        pass
    assert set(sink.docs) == {a.id for a in alerts}
    assert sink.stats.indexed == 100 and sink.stats.duplicates == 10
    assert ix.malformed == 2 and len(broker.records(D)) == 2
    assert _committed(broker) == _end(broker) == 112
    assert ix.metrics.get("otsentry_alerts_indexed_total") == 100
    assert ix.metrics.get("otsentry_alerts_duplicate_total") == 10
    ix.close()


def test_nothing_is_committed_while_elasticsearch_is_down_and_reading_pauses(caplog):
    alerts = _alerts(60)
    broker = _broker(alerts)
    sink = MemorySink()
    clock = Clock()
    ix = _indexer(broker, sink, clock=clock, es_backoff=Backoff(1.0, 8.0))
    ix.step(0)
    assert _committed(broker) == 20  # one poll, indexed, committed
    sink.down = True
    with caplog.at_level(logging.INFO, logger="otsentry.stream"):
        ix.step(0)  # reads 20 more; the bulk fails
        assert ix.es_down and ix.metrics.get("otsentry_elasticsearch_up") == 0
        for _ in range(5):  # paused: reads nothing, and does not retry before the backoff delay
            assert ix.step(0) == 0
        assert sink.flushes == 2 and len(sink.buffer) == 20
        clock.now += 1.0
        ix.step(0)  # retried once: still down, next delay 2 s
        assert sink.flushes == 3
        assert _committed(broker) == 20
        sink.down = False
        clock.now += 2.0
        ix.step(0)  # acknowledged: committed and resumed
        assert not ix.es_down and _committed(broker) == 40
        while ix.step(0) or ix.pending:
            pass
    assert _committed(broker) == 60 and len(sink.docs) == 60
    messages = [r.getMessage() for r in caplog.records if r.name == "otsentry.stream"]
    assert sum("elasticsearch: down" in m for m in messages) == 1
    assert sum("elasticsearch: up" in m for m in messages) == 1
    ix.close()


def test_stopping_while_elasticsearch_is_down_commits_nothing_and_the_next_run_indexes_it():
    alerts = _alerts(30)
    broker = _broker(alerts)
    sink = MemorySink()
    sink.down = True
    ix = _indexer(broker, sink)
    ix.step(0)
    ix.close(1.0)
    assert _committed(broker) == 0 and not sink.docs
    sink.down = False
    again = _indexer(broker, sink)
    while again.step(0) or again.pending:
        pass
    again.close()
    assert _committed(broker) == 30 and len(sink.docs) == 30


def test_a_revoked_partition_is_no_longer_committed_and_its_new_owner_reads_it_again():
    alerts = _alerts(90)
    broker = _broker(alerts)
    sink = MemorySink()
    first = _indexer(broker, sink)
    first.step(0)
    second = _indexer(broker, sink)
    for _ in range(50):
        first.step(0)
        second.step(0)
    assert not first.pending and not second.pending
    assert _committed(broker) == 90 and len(sink.docs) == 90  # nothing lost; copies answered as duplicates
    first.close()
    second.close()


def _settings(**daemon) -> StreamSettings:
    return StreamSettings(KafkaConfig(bootstrap="memory", alerts_topic=A, deadletter_topic=D, group="g"),
                          StreamConfig(max_poll_records=20),
                          DaemonConfig(stop_timeout_s=2.0, backoff_initial_s=0.01, backoff_max_s=0.02, **daemon))


def test_run_indexer_in_process_until_idle():
    alerts = _alerts(50)
    broker = _broker(alerts, junk=1)
    sink = MemorySink()
    ix, metrics, ok = run_indexer(sink, _settings(), make_publisher=broker.publisher,
                                  make_consumer=lambda n: broker.consumer([A], "g"), until_idle_s=0.2)
    assert ok and ix is not None
    assert len(sink.docs) == 50 and _committed(broker) == 51
    assert metrics.get("otsentry_commits_total") >= 1 and metrics.get("otsentry_deadletter_total") == 1
    assert "otsentry_alerts_indexed_total" in metrics.render()


def test_run_indexer_stops_on_an_error_retrying_cannot_fix():
    broker = _broker(_alerts(10))
    sink = MemorySink()
    sink.fatal = True
    ix, _, ok = run_indexer(sink, _settings(), make_publisher=broker.publisher,
                            make_consumer=lambda n: broker.consumer([A], "g"), until_idle_s=5.0)
    assert not ok and ix is not None
    assert _committed(broker) == 0


def test_cli_index_help():
    res = CliRunner().invoke(main, ["index", "--help"])
    assert res.exit_code == 0
    for flag in ("--kafka", "--es", "--es-index", "--group", "--config", "--metrics-port", "--alerts-topic"):
        assert flag in res.output
    assert "--features-topic" not in res.output and "--window" not in res.output
    assert "index" in CliRunner().invoke(main, ["--help"]).output


@pytest.mark.parametrize("args, needle", [
    (["--kafka", "h:9092", "--es", "http://h:9200", "--bogus"], "No such option --bogus"),
    (["--kafka", "h:9092"], "Missing option '--es'"),
    (["--es", "http://h:9200"], "no broker: give --kafka"),
    (["--kafka", "h:9092", "--es", "ftp://h"], "not an Elasticsearch URL"),
    (["--kafka", "h:9092", "--es", "http://h:9200", "--group", ""], "--group"),
])
def test_cli_index_user_errors_are_one_line(args, needle, monkeypatch):
    for var in ("OTSENTRY_KAFKA_BOOTSTRAP", "OTSENTRY_ES_URL"):
        monkeypatch.delenv(var, raising=False)
    res = CliRunner().invoke(main, ["index", *args])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle.lower().replace("'", "") in errors[0].lower().replace("'", ""), res.output


def test_systemd_unit_runs_index_with_flags_the_cli_accepts():
    import shlex

    from tests.helpers import ROOT

    text = (ROOT / "configs" / "systemd" / "otsentry-index.service").read_text().replace("\\\n", " ")
    (exec_start,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start.split("=", 1)[1])
    assert argv[0].endswith("/otsentry") and argv[1] == "index"
    res = CliRunner().invoke(main, [*argv[1:], "--help"])  # unknown flags fail while parsing, before --help
    assert res.exit_code == 0, res.output
    assert "OTSENTRY_STATE_DIR=/var/lib/otsentry" in text and "StateDirectory=otsentry" in text


def test_health_follows_elasticsearch_for_the_indexer():
    metrics = Metrics("indexer")
    metrics.running = metrics.broker_up = True
    assert metrics.health()[0] is True and "elasticsearch_up" not in metrics.health()[1]
    metrics.set_downstream_up(False)
    ok, body = metrics.health()
    assert ok is False and body["elasticsearch_up"] is False
    assert 'otsentry_elasticsearch_up{role="indexer"} 0' in metrics.render()
    metrics.set_downstream_up(True)
    assert metrics.health()[0] is True
    assert 'otsentry_elasticsearch_up{role="indexer"} 1' in metrics.render()
