"""``otsentry alerts search``: triage indexed alerts from a terminal; plus the Elasticsearch plumbing other commands
share (``otsentry run --es``). Credentials come from environment variables only, never from options, so they do
not end up in shell history or ``ps`` output.
"""

from __future__ import annotations

import json
import logging
import re

import click

from otsentry.cli.common import UserError, parse_duration

__all__ = ["ES_HELP", "alerts", "es_client", "prune_cmd", "search_cmd"]

ES_HELP = ("Elasticsearch URL, e.g. http://127.0.0.1:9200. Auth from OTSENTRY_ES_API_KEY or "
           "OTSENTRY_ES_USER/OTSENTRY_ES_PASSWORD; CA bundle from OTSENTRY_ES_CA.")


def es_client(url: str, timeout_s: float = 30.0):
    """(client, config) for ``url`` with credentials from the environment; bad input is a one-line error."""
    from otsentry.alerts.elastic import ElasticConfig, make_client

    # the transport warns on every failed request during an outage; the sink says it once, with the spool's path
    logging.getLogger("elastic_transport.node_pool").setLevel(logging.ERROR)
    config = ElasticConfig.from_env(url, timeout_s=timeout_s)
    return make_client(config), config


def _time_bound(text: str | None) -> str | None:
    """A duration ("1h": that long ago) or anything Elasticsearch parses as a date (2024-03-01T08:00:00Z)."""
    if text is None:
        return None
    if re.fullmatch(r"\s*[\d.]+\s*(ms|s|m|min|h|d)?\s*", text.lower()):
        return f"now-{int(parse_duration(text))}s"
    return text


@click.group("alerts")
def alerts() -> None:
    """Alerts indexed in Elasticsearch."""


@alerts.command("search")
@click.option("--es", "es_url", required=True, metavar="URL", help=ES_HELP)
@click.option("--index", "prefix", default="otsentry-alerts", show_default=True,
              help="Alias (index prefix) the alerts were indexed under.")
@click.option("--since", default=None, metavar="DURATION|DATE",
              help="Only alerts from the last DURATION (1h, 7d) or since DATE (2024-03-01T08:00:00Z).")
@click.option("--until", default=None, metavar="DURATION|DATE", help="Only alerts before DURATION ago or DATE.")
@click.option("--pair", default=None, metavar="CLIENT-SERVER",
              help="Asset pair; either side may be empty or a CIDR block (10.10.1.0/24-10.10.2.14).")
@click.option("--rule", default=None, help="Rule id (policy.new_talker), or a prefix ending in '.' (policy.).")
@click.option("--size", type=click.IntRange(1, 10000), default=50, show_default=True, help="Newest N alerts.")
@click.option("--json", "as_json", is_flag=True, help="One ECS document per line instead of a table.")
def search_cmd(es_url, prefix, since, until, pair, rule, size, as_json) -> None:
    """Search indexed alerts, newest first; the total is printed on stderr."""
    from elasticsearch import ApiError, TransportError

    from otsentry.alerts.elastic_search import build_query, format_table, search_alerts

    client, config = es_client(es_url)
    try:
        query = build_query(_time_bound(since), _time_bound(until), pair, rule)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    try:
        total, docs = search_alerts(client, prefix, query=query, size=size)
    except ApiError as exc:
        raise UserError(f"{config.url}: search failed (HTTP {exc.status_code}: {exc.message})") from None
    except TransportError as exc:
        raise UserError(f"{config.url} is unreachable ({type(exc).__name__})") from None
    if as_json:
        for doc in docs:
            click.echo(json.dumps(doc, sort_keys=True))
    elif docs:
        click.echo("\n".join(format_table(docs)))
    shown = f"showing the newest {len(docs)}" if len(docs) < total else f"{total} shown"
    click.echo(f"otsentry: {total} alerts match in {prefix} on {config.url} ({shown})", err=True)


@alerts.command("prune")
@click.option("--es", "es_url", required=True, metavar="URL", help=ES_HELP)
@click.option("--older-than", "older_than", required=True, metavar="DURATION",
              help="Delete the daily indices whose whole day is older than this (30d, 12h).")
@click.option("--index", "prefix", default="otsentry-alerts", show_default=True,
              help="Alias (index prefix): only indices named exactly PREFIX-YYYY.MM.DD are considered.")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
def prune_cmd(es_url, older_than, prefix, dry_run) -> None:
    """Delete daily alert indices older than a retention period (there is no ILM on every cluster)."""
    from datetime import datetime, timedelta, timezone

    from elasticsearch import ApiError, TransportError

    from otsentry.alerts.elastic_retention import count_alerts, delete_indices, expired, list_indices

    try:
        seconds = parse_duration(older_than)
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, param_hint="--older-than") from None
    cutoff = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    client, config = es_client(es_url)
    try:
        old = expired(list_indices(client, prefix), prefix, cutoff)
        for idx in old:
            docs = count_alerts(client, idx.name)
            docs = "?" if docs is None else docs
            click.echo(f"{'would delete' if dry_run else 'deleting'} {idx.name} ({docs} alerts)")
        if old and not dry_run:
            delete_indices(client, [i.name for i in old])
    except ApiError as exc:
        raise UserError(f"{config.url}: prune failed (HTTP {exc.status_code}: {exc.message})") from None
    except TransportError as exc:
        raise UserError(f"{config.url} is unreachable ({type(exc).__name__})") from None
    verb = "would be deleted" if dry_run else "deleted"
    click.echo(f"otsentry: {len(old)} daily indices of {prefix} older than {cutoff:%Y-%m-%dT%H:%M:%SZ} {verb} "
               f"on {config.url}", err=True)
