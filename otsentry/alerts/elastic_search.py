"""Alert triage from a terminal: ECS queries over the ``otsentry-alerts`` alias, printed as a table or JSON lines.

The filters are the questions a SOC asks first (what happened lately, between these two hosts, for this rule), as
plain ECS term/range queries, so the same query works in Kibana's Dev Tools and for any other ECS alert source.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any, Iterable

from otsentry.alerts.elastic_template import DEFAULT_PREFIX

__all__ = ["build_query", "format_table", "parse_pair", "search_alerts"]

_SEVERITY = {"critical": "CRIT", "high": "HIGH", "medium": "MED ", "low": "LOW "}


def _ip_or_cidr(text: str) -> str:
    """Validate one side of a pair: an address or a CIDR block (an ``ip`` field's term query accepts both)."""
    try:
        if "/" in text:
            return str(ipaddress.ip_network(text, strict=False))
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR block") from None


def parse_pair(pair: str) -> tuple[str | None, str | None]:
    """``CLIENT-SERVER`` (either side may be empty or a CIDR block) -> (client, server)."""
    client, sep, server = pair.partition("-")
    if not sep:
        raise ValueError(f"{pair!r}: expected CLIENT-SERVER, e.g. 10.10.1.148-10.10.2.14 or 10.10.1.0/24-")
    return (_ip_or_cidr(client) if client else None, _ip_or_cidr(server) if server else None)


def build_query(since: str | None = None, until: str | None = None, pair: str | None = None,
                rule: str | None = None) -> dict[str, Any]:
    """An ECS bool/filter query. ``since``/``until`` are Elasticsearch dates or date math (``now-1h``)."""
    filters: list[dict[str, Any]] = [{"term": {"event.kind": "alert"}}]
    if since or until:
        filters.append({"range": {"@timestamp": {k: v for k, v in (("gte", since), ("lte", until)) if v}}})
    if pair:
        client, server = parse_pair(pair)
        if client:
            filters.append({"term": {"source.ip": client}})
        if server:
            filters.append({"term": {"destination.ip": server}})
    if rule:
        # a rule id, or a prefix of one ("policy." for every policy rule)
        filters.append({"prefix": {"rule.id": rule}} if rule.endswith(".") else {"term": {"rule.id": rule}})
    return {"bool": {"filter": filters}}


def search_alerts(client, prefix: str = DEFAULT_PREFIX, *, query: dict[str, Any] | None = None,
                  size: int = 50) -> tuple[int, list[dict[str, Any]]]:
    """(total matching, newest ``size`` ECS documents). A missing alias is an empty answer, not an error."""
    response = client.search(index=prefix, query=query or build_query(), size=size, track_total_hits=True,
                              sort=[{"@timestamp": "desc"}, {"event.id": "asc"}], ignore_unavailable=True,
                              allow_no_indices=True)
    hits = response["hits"]
    return int(hits["total"]["value"]), [h["_source"] for h in hits["hits"]]


def format_table(docs: Iterable[dict[str, Any]]) -> list[str]:
    """One readable line per alert, like ``otsentry run``'s table."""
    lines = [f"{'sev':4} {'window start (UTC)':19} {'client':>15} -> {'server':15} {'unit':>4}  {'rule':32} explanation"]
    for doc in docs:
        t = datetime.fromisoformat(doc["@timestamp"].replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
        ots = doc.get("otsentry", {})
        unit = ots.get("unit_id", -1)
        sev = _SEVERITY.get(ots.get("severity", ""), str(ots.get("severity", ""))[:4])
        lines.append(f"{sev:4} {t:19} {doc.get('source', {}).get('ip', ''):>15} -> "
                     f"{doc.get('destination', {}).get('ip', ''):15} {'-' if unit < 0 else unit:>4}  "
                     f"{doc.get('rule', {}).get('id', ''):32} {doc.get('message', '')}")
    return lines
