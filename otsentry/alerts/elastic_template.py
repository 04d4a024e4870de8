"""The Elasticsearch index template for otsentry's ECS alert documents, and the index naming scheme.

Why explicit mappings: with dynamic mapping Elasticsearch guesses ``source.ip`` as text and ``otsentry.unit_id`` as
whatever the first document held, and Kibana then cannot do CIDR queries or numeric ranges. Every field ``to_ecs``
produces is mapped here with its ECS type; ``dynamic: false`` keeps a field added to ``to_ecs`` later in ``_source``
(never rejected, never lost) until the template maps it (a unit test checks that it does).

Why daily indices behind an alias: the Elasticsearch zip used by the tests (and some clusters) has no ILM or data
streams, so retention is "delete the indices older than N days", which daily plain indices make a one-liner; searches
and Kibana go through the alias (``otsentry-alerts``), which the template attaches to every new index. The day comes
from the alert's own ``@timestamp``, so the same alert always lands in the same index and its ``_id`` (the alert id)
deduplicates it even when a capture is replayed months later.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

__all__ = ["ASSET_MAPPINGS", "ASSET_PREFIX", "DEFAULT_PREFIX", "INCIDENT_MAPPINGS", "INCIDENT_PREFIX", "MAPPINGS",
    "TEMPLATE_PRIORITY", "TEMPLATE_VERSION", "THREAT", "VARIABLE_MAPPINGS", "VARIABLE_PREFIX", "field_types",
    "index_for", "index_pattern", "index_template", "template_name"]

DEFAULT_PREFIX = "otsentry-alerts"
TEMPLATE_VERSION = 1

_KEYWORD: dict[str, Any] = {"type": "keyword", "ignore_above": 1024}
_IP: dict[str, Any] = {"type": "ip"}
_DATE: dict[str, Any] = {"type": "date"}


def _props(**fields: dict[str, Any]) -> dict[str, Any]:
    return {"properties": fields}


# ECS threat.* (arrays of keywords: an incident carries several techniques, an alert one).
THREAT: dict[str, Any] = _props(
    framework=_KEYWORD,
    technique=_props(id=_KEYWORD, name=_KEYWORD, reference=_KEYWORD),
    tactic=_props(id=_KEYWORD, name=_KEYWORD, reference=_KEYWORD),
)

# ECS 8.x field types; message is ECS match_only_text, which needs the mapper-extras module: text is the portable
# equivalent. rule.description is keyword in ECS; it also gets a text sub-field so analysts can full-text it.
MAPPINGS: dict[str, Any] = {
    "dynamic": False,
    "date_detection": False,
    "_meta": {"managed_by": "otsentry", "template_version": TEMPLATE_VERSION},
    "properties": {
        "@timestamp": _DATE,
        "message": {"type": "text"},
        "event": _props(
            kind=_KEYWORD, category=_KEYWORD, type=_KEYWORD, id=_KEYWORD, module=_KEYWORD, dataset=_KEYWORD,
            start=_DATE, end=_DATE, severity={"type": "long"}, risk_score={"type": "float"},
        ),
        "rule": _props(
            id=_KEYWORD, name=_KEYWORD, category=_KEYWORD, ruleset=_KEYWORD,
            description={**_KEYWORD, "fields": {"text": {"type": "text"}}},
        ),
        "source": _props(ip=_IP, port={"type": "long"}),
        "destination": _props(ip=_IP, port={"type": "long"}),
        "network": _props(transport=_KEYWORD, protocol=_KEYWORD),
        "related": _props(ip=_IP),
        "observer": _props(type=_KEYWORD, vendor=_KEYWORD, product=_KEYWORD, version=_KEYWORD, hostname=_KEYWORD,
                           name=_KEYWORD),
        "threat": THREAT,
        "otsentry": _props(
            alert_id=_KEYWORD,
            incident=_props(id=_KEYWORD),
            capture=_props(path=_KEYWORD, first_frame={"type": "long"}, last_frame={"type": "long"}),
            detector=_KEYWORD,
            severity=_KEYWORD,
            score={"type": "double"},
            threshold={"type": "double"},
            unit_id={"type": "integer"},  # -1 for flow (non-Modbus) windows, so not unsigned
            function_codes={"type": "short"},
            window_s={"type": "float"},
            # nested: "feature fc_3 above 100" must match name and value of the same feature, not of two different ones
            top_features={"type": "nested", "properties": {
                "name": _KEYWORD,
                "value": {"type": "double"},
                "baseline_low": {"type": "double"},
                "baseline_high": {"type": "double"},
                "contribution": {"type": "float"},
            }},
        ),
    },
}


INCIDENT_PREFIX = "otsentry-incidents"
# Incidents share the alert document's envelope (event, source, destination, related, observer, threat); their own
# fields live under otsentry.incident. Steps are objects, not nested: "which incidents have a step on 10.0.0.31" is
# the question, not "which step has this actor and that rule".
INCIDENT_MAPPINGS: dict[str, Any] = {
    **{k: v for k, v in MAPPINGS.items() if k != "properties"},
    "properties": {
        **{k: v for k, v in MAPPINGS["properties"].items() if k not in ("rule", "network", "otsentry")},
        "event": _props(**MAPPINGS["properties"]["event"]["properties"], duration={"type": "long"}),
        "otsentry": _props(incident=_props(
            id=_KEYWORD, severity=_KEYWORD, escalated={"type": "boolean"}, alert_count={"type": "long"},
            first_alert_id=_KEYWORD, last_alert_id=_KEYWORD, merged=_KEYWORD,
            summary={"type": "text", "fields": {"keyword": _KEYWORD}},
            rules=_props(id=_KEYWORD, alerts={"type": "long"}),
            steps=_props(start=_DATE, end=_DATE, actor=_IP, rule=_KEYWORD, technique=_KEYWORD,
                         alerts={"type": "long"}, targets=_IP, services=_KEYWORD, units={"type": "integer"},
                         function_codes={"type": "short"}),
        )),
    },
}


def _host_documents(host: dict[str, Any], otsentry: dict[str, Any]) -> dict[str, Any]:
    """Mappings of per-host documents (assets, variables): the alerts' envelope without rule, source, destination."""
    base = MAPPINGS["properties"]
    return {
        **{k: v for k, v in MAPPINGS.items() if k != "properties"},
        "properties": {"@timestamp": _DATE, "message": {"type": "text"}, "event": base["event"], "host": host,
                       "related": _props(ip=_IP), "observer": base["observer"], "otsentry": otsentry},
    }


ASSET_PREFIX = "otsentry-assets"
ASSET_MAPPINGS: dict[str, Any] = _host_documents(
    _props(ip=_IP, mac=_KEYWORD, type=_KEYWORD),
    _props(asset=_props(
        ip=_IP, mac=_KEYWORD, vendor=_KEYWORD, roles=_KEYWORD,
        evidence=_props(role=_KEYWORD, text={"type": "text"}),
        unit_ids={"type": "integer"}, served_function_codes={"type": "short"},
        used_function_codes={"type": "short"}, services=_KEYWORD, peers=_IP, transactions={"type": "long"},
        identity=_props(**{name: _KEYWORD for name in ("vendor_name", "product_code", "revision", "vendor_url",
                                                       "product_name", "model_name", "user_application_name")}),
    )),
)


VARIABLE_PREFIX = "otsentry-variables"
VARIABLE_MAPPINGS: dict[str, Any] = _host_documents(
    _props(ip=_IP),
    _props(variable=_props(
        server=_IP, unit={"type": "integer"}, table=_KEYWORD, address={"type": "integer"},
        reads={"type": "long"}, low={"type": "double"}, high={"type": "double"},
        typical_change={"type": "double"}, period_s={"type": "double"}, last_value={"type": "double"},
        counter={"type": "boolean"}, setpoint={"type": "boolean"},
    )),
)
TEMPLATE_PRIORITY = {"alerts": 200, "incidents": 201, "assets": 202, "variables": 203}


def _kind(mappings: dict[str, Any] | None) -> str:
    if mappings is INCIDENT_MAPPINGS:
        return "incidents"
    if mappings is ASSET_MAPPINGS:
        return "assets"
    if mappings is VARIABLE_MAPPINGS:
        return "variables"
    return "alerts"


def template_name(prefix: str = DEFAULT_PREFIX) -> str:
    return prefix


def index_pattern(prefix: str = DEFAULT_PREFIX) -> str:
    """Indices the template applies to; the alias name itself (``prefix``) deliberately does not match."""
    return f"{prefix}-*"


def index_template(prefix: str = DEFAULT_PREFIX, *, shards: int = 1, replicas: str = "0-1",
                   mappings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of ``PUT _index_template/<prefix>``.

    ``auto_expand_replicas 0-1``: green on a single test node, one replica as soon as the cluster has two nodes.
    Incident and asset templates rank above the alerts' (Elasticsearch refuses two templates of one priority whose
    patterns overlap, as ``P-*`` and ``P-inc-*`` do when an operator derives one prefix from the other; the more
    specific kind then wins for its indices).
    """
    return {
        "index_patterns": [index_pattern(prefix)],
        "priority": TEMPLATE_PRIORITY.get(_kind(mappings), 200),
        "version": TEMPLATE_VERSION,
        "_meta": {"managed_by": "otsentry", "description": f"otsentry documents ({prefix}) as ECS documents"},
        "template": {
            "settings": {"number_of_shards": shards, "auto_expand_replicas": replicas, "refresh_interval": "1s"},
            "mappings": MAPPINGS if mappings is None else mappings,
            "aliases": {prefix: {}},
        },
    }


def index_for(timestamp: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The daily index of a document whose ``@timestamp`` is ``timestamp`` (ISO 8601, as ``to_ecs`` writes it)."""
    ts = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    return f"{prefix}-{ts.astimezone(timezone.utc):%Y.%m.%d}"


def field_types(mappings: dict[str, Any] = MAPPINGS) -> dict[str, str]:
    """Flattened ``{"source.ip": "ip", ...}`` for every mapped leaf field (sub-fields as ``name.sub``).

    Used by tests and by the Kibana saved-objects check, so "does the template map this field" has one answer.
    """
    out: dict[str, str] = {}

    def walk(props: dict[str, Any], path: str) -> None:
        for name, spec in props.items():
            full = f"{path}{name}"
            if "properties" in spec:
                if spec.get("type") == "nested":
                    out[full] = "nested"
                walk(spec["properties"], full + ".")
            else:
                out[full] = spec["type"]
                for sub, sub_spec in spec.get("fields", {}).items():
                    out[f"{full}.{sub}"] = sub_spec["type"]

    walk(mappings["properties"], "")
    return out
