"""``otsentry index --kafka BOOTSTRAP --es URL``: the daemon that moves alerts from Kafka into Elasticsearch.

Its consumer group is its own option (``--group``, default ``otsentry-index``), not ``kafka.group`` of the shared
YAML config: that key names the detector workers' group, and an indexer joining it would take partitions of
``otsentry.alerts`` in a group that reads ``otsentry.features``, so each would commit the other's offsets.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from otsentry.alerts.elastic_template import DEFAULT_PREFIX
from otsentry.cli.alerts import ES_HELP, es_client
from otsentry.cli.streamopts import setup_logs, stream_options, stream_params, stream_settings

__all__ = ["INDEX_SKIP", "index_cmd"]

# Config keys that do not apply to the indexer (their flags are left out); kafka.group: see the module docstring.
INDEX_SKIP = frozenset({"kafka.group", "kafka.features_topic", "stream.window_s", "stream.source",
                        "stream.max_buffered_windows", "stream.max_hold_s"})


@click.command("index")
@click.option("--es", "es_url", required=True, metavar="URL", envvar="OTSENTRY_ES_URL",
              help=ES_HELP + " [env OTSENTRY_ES_URL]")
@click.option("--es-index", "es_prefix", default=DEFAULT_PREFIX, show_default=True, envvar="OTSENTRY_ES_INDEX",
              help="Alias and daily-index prefix (indices PREFIX-YYYY.MM.DD), as `run --es-index`. "
                   "[env OTSENTRY_ES_INDEX]")
@click.option("--group", default="otsentry-index", show_default=True, envvar="OTSENTRY_INDEX_GROUP",
              help="Consumer group of the indexers (not kafka.group: that is the detectors'). "
                   "[env OTSENTRY_INDEX_GROUP]")
@click.option("--incidents", is_flag=True,
              help="Index the incidents topic (`otsentry correlate`) instead of alerts: documents are replaced as "
                   "they change; ES_INDEX defaults to otsentry-incidents.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML config (see configs/kafka.yaml); flags and environment variables override it.")
@stream_options(skip=INDEX_SKIP)
def index_cmd(es_url: str, es_prefix: str, group: str, incidents: bool, config_path: Path | None,
              **kwargs: Any) -> None:
    """Index the alerts of a Kafka topic into Elasticsearch, committing offsets only once indexed.

    Reads otsentry.alerts (published by `otsentry detect`; with incident ids: --alerts-topic
    otsentry.alerts.correlated, published by `otsentry correlate`), bulk-indexes each alert as an ECS document under
    the alias ES_INDEX (document id = alert id, so a re-delivered alert is never indexed twice) and commits the
    offsets only after Elasticsearch acknowledged the documents. While Elasticsearch is down it stops reading,
    retries with backoff and resumes where it stopped. Runs until SIGTERM/SIGINT, then indexes what it holds,
    commits and exits within --stop-timeout.

    Secrets come from the environment only: OTSENTRY_ES_API_KEY or OTSENTRY_ES_USER/OTSENTRY_ES_PASSWORD
    (OTSENTRY_ES_CA for the CA), OTSENTRY_KAFKA_SASL_PASSWORD, OTSENTRY_KAFKA_SSL_PASSWORD.
    """
    from otsentry.alerts.elastic import ElasticSink
    from otsentry.alerts.elastic_template import INCIDENT_MAPPINGS, INCIDENT_PREFIX
    from otsentry.stream.index import ES_TIMEOUT_S, IncidentSink, run_indexer

    if not group:
        raise click.BadParameter("must not be empty", param_hint="--group")
    settings = stream_settings(config_path, stream_params(kwargs))
    settings = replace(settings, kafka=replace(settings.kafka, group=group))
    setup_logs(settings)
    if settings.daemon.log_level != "debug":  # the client logs every request at INFO
        logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    client, config = es_client(es_url, timeout_s=ES_TIMEOUT_S)
    # No spool (commit only what Elasticsearch acknowledged); a batch larger than a poll, so writes never flush;
    # few, short in-request retries: the indexer retries outages itself without blocking its loop.
    if incidents and es_prefix == DEFAULT_PREFIX:
        es_prefix = INCIDENT_PREFIX
    sink = ElasticSink(client, es_prefix, spool=False, batch_size=4 * settings.stream.max_poll_records,
                       retries=2, backoff_s=0.5, max_backoff_s=2.0, display_url=config.url,
                       mappings=INCIDENT_MAPPINGS if incidents else None, replace=incidents)
    indexer, _, ok = run_indexer(IncidentSink(sink) if incidents else sink, settings, incidents=incidents)
    if indexer is None or not ok:
        raise SystemExit(1)
