"""Alert -> Elastic Common Schema document: what lands in Elasticsearch and in ``--alerts-out FILE.jsonl``.

Field choices follow ECS 8.x: ``event.kind: alert``, the window as ``event.start``/``event.end``, the asset pair as
``source``/``destination``, the rule under ``rule.*``; otsentry's own fields live under ``otsentry.*``. Numbers stay
numbers (register values, scores), never comma-joined strings.
"""

from __future__ import annotations

import socket
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from otsentry import __version__
from otsentry.contracts.attack import FRAMEWORK, Technique, technique
from otsentry.records import Alert, Asset, FeatureEvidence, Incident, ProcessVariable

__all__ = ["SEVERITY_NUMBER", "alert_from_ecs", "asset_to_ecs", "incident_to_ecs", "iso", "observer", "threat",
    "to_ecs", "variable_to_ecs"]

# ECS event.severity is numeric; these follow Elastic's detection-rule convention.
SEVERITY_NUMBER = {"low": 21, "medium": 47, "high": 73, "critical": 99}


def iso(ts: float) -> str:
    """Epoch seconds as an ISO-8601 UTC timestamp with milliseconds (what Elasticsearch's date type expects)."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=1)
def _hostname() -> str:
    return socket.gethostname()


def threat(techniques: list[Technique]) -> dict[str, Any]:
    """ECS ``threat.*`` for techniques in order (tactics deduplicated, first occurrence first); {} for none."""
    if not techniques:
        return {}
    tactics = list(dict.fromkeys(t.tactic for t in techniques))
    return {
        "framework": FRAMEWORK,
        "technique": {"id": [t.id for t in techniques], "name": [t.name for t in techniques],
                      "reference": [t.reference for t in techniques]},
        "tactic": {"id": [t.id for t in tactics], "name": [t.name for t in tactics],
                   "reference": [t.reference for t in tactics]},
    }


def observer(observer_name: str | None = None) -> dict[str, Any]:
    return {
        "type": "ids",
        "vendor": "otsentry",
        "product": "otsentry",
        "version": __version__,
        "hostname": _hostname(),
        "name": observer_name or _hostname(),
    }


def to_ecs(alert: Alert, observer_name: str | None = None) -> dict[str, Any]:
    """The ECS document for one alert (a plain dict, JSON-serialisable)."""
    related = sorted({alert.client_ip, alert.server_ip} - {""})
    destination: dict[str, Any] = {"ip": alert.server_ip} if alert.server_ip else {}
    if alert.server_port:
        destination["port"] = alert.server_port
    source: dict[str, Any] = {"ip": alert.client_ip} if alert.client_ip else {}  # sensor-wide alerts name no host
    doc = {
        "@timestamp": iso(alert.window_start),
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "id": alert.id,
            "module": "otsentry",
            "dataset": "otsentry.alerts",
            "start": iso(alert.window_start),
            "end": iso(alert.window_end),
            "severity": SEVERITY_NUMBER.get(alert.severity, 47),
            "risk_score": round(float(alert.risk_score), 2),
        },
        "rule": {
            "id": alert.rule_id,
            "name": alert.rule_name,
            "category": alert.category,
            "ruleset": "otsentry",
            "description": alert.explanation,
        },
        "source": source,
        "destination": destination,
        "network": {"transport": alert.transport or "tcp", "protocol": alert.protocol or "modbus"},
        "related": {"ip": related},
        "observer": observer(observer_name),
        "message": alert.explanation,
        "otsentry": {
            "alert_id": alert.id,
            "detector": alert.detector,
            "severity": alert.severity,
            "score": float(alert.score),
            "threshold": float(alert.threshold),
            "unit_id": int(alert.unit_id),
            "function_codes": [int(c) for c in alert.function_codes],
            "window_s": round(alert.window_end - alert.window_start, 6),
            "top_features": [
                {
                    "name": e.name,
                    "value": float(e.value),
                    "baseline_low": float(e.baseline_low),
                    "baseline_high": float(e.baseline_high),
                    "contribution": float(e.contribution),
                }
                for e in alert.evidence
            ],
        },
    }
    if alert.technique_id:
        doc["threat"] = threat([technique(alert.technique_id)])
    if alert.incident_id:
        doc["otsentry"]["incident"] = {"id": alert.incident_id}
    if alert.capture or alert.first_frame:
        doc["otsentry"]["capture"] = {"path": alert.capture or None, "first_frame": alert.first_frame,
                                      "last_frame": alert.last_frame}
    return doc


def incident_to_ecs(incident: Incident, observer_name: str | None = None) -> dict[str, Any]:
    """The ECS document for one incident (index ``otsentry-incidents``, ``--incidents-out``)."""
    techniques = [technique(t) for t in incident.techniques]
    doc: dict[str, Any] = {
        "@timestamp": iso(incident.start),
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "id": incident.id,
            "module": "otsentry",
            "dataset": "otsentry.incidents",
            "start": iso(incident.start),
            "end": iso(incident.end),
            "duration": int(round((incident.end - incident.start) * 1e9)),
            "severity": SEVERITY_NUMBER.get(incident.severity, 47),
            "risk_score": round(float(incident.risk_score), 2),
        },
        "source": {"ip": list(incident.actors)} if incident.actors else {},
        "destination": {"ip": list(incident.targets)} if incident.targets else {},
        "related": {"ip": list(incident.related)},
        "observer": observer(observer_name),
        "message": incident.summary,
        "otsentry": {
            "incident": {
                "id": incident.id,
                "severity": incident.severity,
                "escalated": incident.escalated,
                "alert_count": incident.alert_count,
                "first_alert_id": incident.first_alert_id,
                "last_alert_id": incident.last_alert_id,
                "summary": incident.summary,
                "merged": list(incident.merged),
                "rules": [{"id": r, "alerts": n} for r, n in incident.rules],
                "steps": [
                    {"start": iso(s.first_ts), "end": iso(s.last_ts), "actor": s.actor or None, "rule": s.rule_id,
                     "technique": s.technique_id or None, "alerts": s.alerts, "targets": list(s.targets),
                     "services": list(s.services), "units": s.units, "function_codes": list(s.function_codes)}
                    for s in incident.steps
                ],
            },
        },
    }
    if techniques:
        doc["threat"] = threat(techniques)
    return doc


def _ecs_mac(mac: str) -> str:
    """ECS spells MAC addresses upper-case with hyphens."""
    return mac.upper().replace(":", "-")


def asset_to_ecs(asset: Asset, observer_name: str | None = None) -> dict[str, Any]:
    """The ECS document for one asset (index ``otsentry-assets``): ``host.*`` plus ``otsentry.asset.*``."""
    roles = [r for r, _ in asset.roles]
    host: dict[str, Any] = {"ip": [asset.ip]}
    if asset.mac:
        host["mac"] = [_ecs_mac(asset.mac)]
    if roles:
        host["type"] = roles[0]
    identity = dict(asset.identity)
    label = " ".join(v for k, v in asset.identity if k in ("vendor_name", "product_code") and v) or asset.vendor
    return {
        "@timestamp": iso(asset.first_seen),
        "event": {"kind": "asset", "category": ["host"], "type": ["info"], "id": asset.id, "module": "otsentry",
                  "dataset": "otsentry.assets", "start": iso(asset.first_seen), "end": iso(asset.last_seen)},
        "host": host,
        "related": {"ip": sorted({asset.ip, *asset.peers})},
        "observer": observer(observer_name),
        "message": f"{asset.ip}: {', '.join(roles) or 'no role'}" + (f" ({label})" if label else ""),
        "otsentry": {"asset": {
            "ip": asset.ip, "mac": asset.mac or None, "vendor": asset.vendor or None, "roles": roles,
            "evidence": [{"role": r, "text": e} for r, e in asset.roles],
            "unit_ids": list(asset.unit_ids), "served_function_codes": list(asset.served_function_codes),
            "used_function_codes": list(asset.used_function_codes), "services": list(asset.services),
            "peers": list(asset.peers), "transactions": asset.transactions, "identity": identity,
        }},
    }


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _first(ids: Any) -> str:
    if isinstance(ids, str):
        return ids
    return str(ids[0]) if isinstance(ids, list) and ids else ""


def alert_from_ecs(doc: dict[str, Any]) -> Alert:
    """The Alert behind an ECS document of ``to_ecs`` (a line of ``--alerts-out``); window times keep the
    document's millisecond precision. Raises ``KeyError``/``ValueError``/``TypeError``/``AttributeError`` for
    another document (callers turn them into one line)."""
    ots, event = doc["otsentry"], doc["event"]
    return Alert(
        id=str(event["id"]), rule_id=doc["rule"]["id"], rule_name=doc["rule"]["name"],
        category=doc["rule"].get("category", "policy"), detector=ots.get("detector", ""),
        severity=ots.get("severity", "medium"), risk_score=float(event.get("risk_score", 47.0)),
        score=float(ots.get("score", 1.0)), threshold=float(ots.get("threshold", 0.5)),
        window_start=_epoch(event["start"]), window_end=_epoch(event["end"]),
        client_ip=doc.get("source", {}).get("ip", ""), server_ip=doc.get("destination", {}).get("ip", ""),
        unit_id=int(ots.get("unit_id", -1)), explanation=doc.get("message", ""),
        evidence=tuple(FeatureEvidence(e["name"], float(e["value"]), float(e["baseline_low"]),
                                       float(e["baseline_high"]), float(e.get("contribution", 0.0)))
                       for e in ots.get("top_features", ())),
        function_codes=tuple(int(c) for c in ots.get("function_codes", ())),
        server_port=int(doc.get("destination", {}).get("port", 0)),
        transport=doc.get("network", {}).get("transport", "tcp"),
        technique_id=_first(doc.get("threat", {}).get("technique", {}).get("id")),
        incident_id=ots.get("incident", {}).get("id", ""),
        first_frame=int(ots.get("capture", {}).get("first_frame", 0)),
        last_frame=int(ots.get("capture", {}).get("last_frame", 0)),
        capture=ots.get("capture", {}).get("path") or "",
    )


def variable_to_ecs(v: ProcessVariable, observer_name: str | None = None) -> dict[str, Any]:
    """The ECS document for one process variable (index ``otsentry-variables``), replaced as it is re-learned."""
    import hashlib

    key = f"variable|{v.server}|{v.unit}|{v.table}|{v.address}"
    return {
        "@timestamp": iso(v.last_ts),
        "event": {"kind": "state", "category": ["host"], "type": ["info"], "module": "otsentry",
                  "dataset": "otsentry.variables", "id": hashlib.sha256(key.encode()).hexdigest()[:32]},
        "host": {"ip": [v.server]},
        "related": {"ip": [v.server]},
        "observer": observer(observer_name),
        "message": f"{v.server} unit {v.unit} {v.table.replace('_', ' ')} {v.address}: {v.low:g}-{v.high:g}, "
                   f"last {v.last_value:g}",
        "otsentry": {"variable": {
            "server": v.server, "unit": v.unit, "table": v.table, "address": v.address, "reads": v.reads,
            "low": v.low, "high": v.high, "typical_change": v.typical_change, "period_s": v.period_s,
            "last_value": v.last_value, "counter": v.counter, "setpoint": v.written,
        }},
    }
