"""Where alerts go in the embedded pipeline: a readable table on the terminal and ECS JSON lines in a file.

The JSONL sink is idempotent by alert id within one file: a window scored twice (a replay restarted, a capture
given twice) writes its alert once.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable

from otsentry.alerts.ecs import incident_to_ecs, to_ecs
from otsentry.contracts.attack import technique
from otsentry.records import Alert, Incident

__all__ = ["AlertTable", "JsonlSink", "incidents_sink"]

_SEVERITY_STYLE = {"critical": "CRIT", "high": "HIGH", "medium": "MED ", "low": "LOW "}


class JsonlSink:
    """Appends one ECS document per line; skips ids already in the file (so reruns don't duplicate).

    ``to_doc`` maps a record (with an ``id``) to its document: alerts by default, ``incident_to_ecs`` for
    ``--incidents-out``.
    """

    def __init__(self, path: Path, observer_name: str | None = None,
                 to_doc: Callable[[Any, str | None], dict[str, Any]] = to_ecs) -> None:
        self.path = Path(path)
        self.observer_name = observer_name
        self.to_doc = to_doc
        self._seen: set[str] = set()
        if self.path.exists():
            with self.path.open() as f:
                for line in f:
                    try:
                        self._seen.add(json.loads(line)["event"]["id"])
                    except (ValueError, KeyError, TypeError):
                        continue
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("a")
        self.written = 0

    def write(self, record: Alert | Incident) -> bool:
        if record.id in self._seen:
            return False
        self._seen.add(record.id)
        self._file.write(json.dumps(self.to_doc(record, self.observer_name), sort_keys=True) + "\n")
        self.written += 1
        return True

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()


def incidents_sink(path: Path, observer_name: str | None = None) -> JsonlSink:
    return JsonlSink(path, observer_name, incident_to_ecs)


class AlertTable:
    """A readable line per alert: severity, time, asset pair, rule, explanation."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.count = 0

    def write(self, alert: Alert) -> None:
        if self.count == 0:
            self.out.write(f"{'sev':4} {'window start (UTC)':19} {'client':>15} -> {'server':15} {'unit':>4}  "
                           f"{'rule':32} explanation\n")
        self.count += 1
        t = datetime.fromtimestamp(alert.window_start, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        unit = "-" if alert.unit_id < 0 else str(alert.unit_id)
        self.out.write(f"{_SEVERITY_STYLE.get(alert.severity, alert.severity[:4]):4} {t:19} {alert.client_ip:>15} -> "
                       f"{alert.server_ip:15} {unit:>4}  {alert.rule_id:32} {alert.explanation}\n")
        self.out.flush()

    def write_incident(self, incident: Incident) -> None:
        t = datetime.fromtimestamp(incident.start, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        t_end = datetime.fromtimestamp(incident.end, tz=timezone.utc).strftime("%H:%M:%S")
        tactics = ", ".join(dict.fromkeys(technique(t).tactic.name for t in incident.techniques)) or "-"
        self.out.write(f"{_SEVERITY_STYLE.get(incident.severity, incident.severity[:4]):4} incident "
                       f"{incident.id[:12]} {t}-{t_end} {incident.alert_count} alerts [{tactics}]: "
                       f"{incident.summary}\n")
        self.out.flush()
