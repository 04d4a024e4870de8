"""Retention for the daily alert indices: which ``PREFIX-YYYY.MM.DD`` indices are entirely older than a cutoff.

The Elasticsearch zip the tests use (and some clusters) has no ILM, so retention is deleting whole daily indices
(see ``elastic_template``). Only names that are exactly ``PREFIX-YYYY.MM.DD`` are considered: the pattern
``PREFIX-*`` also matches the indices of a longer prefix (``otsentry-alerts-lab-2024.03.01`` under
``otsentry-alerts``), which belong to someone else. A day's index holds alerts whose ``@timestamp`` falls within that
UTC day, so it goes only once the end of its day is older than the cutoff: nothing newer than the cutoff is deleted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable

__all__ = ["DELETE_CHUNK", "DailyIndex", "count_alerts", "delete_indices", "expired", "list_indices", "parse_daily"]

DELETE_CHUNK = 50  # index names per DELETE request (keeps the URL short)


@dataclass(frozen=True)
class DailyIndex:
    name: str
    day: date


def parse_daily(name: str, prefix: str) -> date | None:
    """The day of ``PREFIX-YYYY.MM.DD``; None for any other name."""
    m = re.fullmatch(re.escape(prefix) + r"-(\d{4})\.(\d{2})\.(\d{2})", name)
    if m is None:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def expired(indices: Iterable[str], prefix: str, cutoff: datetime) -> list[DailyIndex]:
    """The daily indices of ``prefix`` whose whole UTC day ends at or before ``cutoff``, oldest first."""
    cutoff = cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=timezone.utc)
    out = []
    for name in indices:
        day = parse_daily(name, prefix)
        if day is None:
            continue
        end = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)
        if end <= cutoff:
            out.append(DailyIndex(name, day))
    return sorted(out, key=lambda i: (i.day, i.name))


def list_indices(client: Any, prefix: str) -> list[str]:
    """Every index matching ``PREFIX-*``, open or closed."""
    rows = client.cat.indices(index=f"{prefix}-*", format="json", h="index", expand_wildcards="all")
    return [str(row["index"]) for row in rows]


def count_alerts(client: Any, name: str) -> int | None:
    """Alerts in one index (``_count``: ``_cat``'s document count includes the nested ``top_features`` docs)."""
    try:
        return int(client.count(index=name)["count"])
    except Exception:  # noqa: BLE001 - a closed index has no count; the listing says "?"
        return None


def delete_indices(client: Any, names: list[str]) -> None:
    """Delete by exact name (never a wildcard: clusters refuse those with ``action.destructive_requires_name``)."""
    for start in range(0, len(names), DELETE_CHUNK):
        client.indices.delete(index=",".join(names[start:start + DELETE_CHUNK]))
