"""Where alerts go in the embedded pipeline: a readable table on the terminal and ECS JSON lines in a file.

The JSONL sink is idempotent by alert id within one file: a window scored twice (a replay restarted, a capture
given twice) writes its alert once.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from otsentry.alerts.ecs import to_ecs
from otsentry.records import Alert

_SEVERITY_STYLE = {"critical": "CRIT", "high": "HIGH", "medium": "MED ", "low": "LOW "}


class JsonlSink:
    """Appends one ECS document per line; skips ids already in the file (so reruns don't duplicate)."""

    def __init__(self, path: Path, observer_name: str | None = None) -> None:
        self.path = Path(path)
        self.observer_name = observer_name
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

    def write(self, alert: Alert) -> bool:
        if alert.id in self._seen:
            return False
        self._seen.add(alert.id)
        self._file.write(json.dumps(to_ecs(alert, self.observer_name), sort_keys=True) + "\n")
        self.written += 1
        return True

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            self._file.close()


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
