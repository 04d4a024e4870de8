"""The Elasticsearch sink of ``run --es`` and ``replay run --es``: opened, written and closed with one-line errors."""

from __future__ import annotations

from otsentry.cli.common import UserError

__all__ = ["close_es_sink", "open_es_sink", "write_es"]


def open_es_sink(url: str, prefix: str, live: bool, incidents: bool = False):
    """The Elasticsearch sink of ``run --es``: live scoring flushes every second so an alert is not held back.
    Incidents replace their older version (same id) instead of being created once."""
    from otsentry.alerts.elastic import ElasticSink
    from otsentry.alerts.elastic_template import INCIDENT_MAPPINGS
    from otsentry.cli.alerts import es_client

    client, config = es_client(url)
    return ElasticSink(client, prefix, flush_interval_s=1.0 if live else None, display_url=config.url,
                       mappings=INCIDENT_MAPPINGS if incidents else None, replace=incidents)


def write_es(es, record) -> None:
    from otsentry.alerts.ecs import incident_to_ecs
    from otsentry.alerts.elastic import ElasticError
    from otsentry.records import Incident

    try:
        if isinstance(record, Incident):
            es.write_document(incident_to_ecs(record))
        else:
            es.write(record)
    except ElasticError as exc:  # credentials or a bad URL: retrying cannot help; the batch is in the spool
        raise UserError(f"{exc} (alerts kept in {es.spool_path})") from None


def close_es_sink(es) -> str:
    """Flush at the end; the summary says what was indexed, and where anything not indexed went."""
    if es is None:
        return ""
    from otsentry.alerts.elastic import ElasticError

    try:
        es.close()
    except ElasticError as exc:
        raise UserError(f"{exc} (alerts kept in {es.spool_path})") from None
    st = es.stats
    parts = [f"; {es.display_url}: {st.indexed} indexed"] + ([f"{st.duplicates} already there"] if st.duplicates else [])
    if st.dead_lettered:
        parts.append(f"{st.dead_lettered} rejected (see {es.dead_letter_path})")
    pending = es.pending_in_spool()
    if pending:
        parts.append(f"{pending} waiting in {es.spool_path} (unreachable; sent on the next run)")
    return ", ".join(parts)
