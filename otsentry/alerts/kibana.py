"""Kibana saved objects for otsentry's alerts (a data view and a SOC dashboard), and their import over HTTP
(with the incident and asset dashboards of ``kibana_views``).

Why built in code rather than hand-written NDJSON: Kibana stores visualisation state and dashboard panels as JSON
*strings* inside JSON, which is unreadable and easy to break by hand. The objects are built here, exported with
``otsentry kibana export`` (``configs/kibana/otsentry.ndjson`` is that output, checked by a test), and every
field they reference is checked against the index template, with its type (a terms aggregation on a ``text`` field
or a date histogram on a keyword breaks a dashboard only when an analyst opens it).

Why aggregation-based visualisations rather than Lens: their saved-object format has been stable across 7.x and
8.x, whereas by-value Lens state changes with every minor; Kibana migrates these on import. ``typeMigrationVersion``
names the format each object is written in.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import urllib.error
import urllib.request
import uuid
from typing import Any, Iterator, Mapping

from otsentry.alerts.elastic_template import ASSET_PREFIX, DEFAULT_PREFIX, INCIDENT_PREFIX, index_pattern
from otsentry.alerts.kibana_objects import (count_metric, dashboard, data_view, histogram_params, pie, search, terms,
                                            visualization)
from otsentry.errors import ServiceError

__all__ = ["ALERT_COLUMNS", "KibanaError", "import_saved_objects", "referenced_fields", "saved_objects",
    "soc_objects", "to_ndjson"]

class KibanaError(ServiceError, RuntimeError):
    """Kibana refused the import or could not be reached: a one-line message (never with credentials)."""


ALERT_COLUMNS = ["otsentry.severity", "source.ip", "destination.ip", "network.protocol", "otsentry.unit_id", "rule.id",
                 "message"]


def saved_objects(prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]]:
    """The data view, the visualisations, the alert table (a saved search) and the dashboard, in import order."""
    dv = prefix  # object ids derive from the prefix, so a second installation (another prefix) does not collide
    view = data_view(dv, index_pattern(prefix), f"otsentry alerts ({prefix})")
    vis = [
        visualization(f"{dv}-timeline", dv, "otsentry: alert timeline by severity", "histogram", histogram_params(), [
            count_metric(),
            {"id": "2", "enabled": True, "type": "date_histogram", "schema": "segment",
             "params": {"field": "@timestamp", "interval": "auto", "min_doc_count": 1, "extended_bounds": {},
                        "useNormalizedEsInterval": True, "drop_partials": False}},
            terms("3", "otsentry.severity", 4, "group", "Severity"),
        ]),
        visualization(f"{dv}-pairs", dv, "otsentry: top asset pairs", "table",
                      {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False, "showTotal": False,
                       "totalFunc": "sum", "percentageCol": ""},
                      [count_metric(), terms("2", "source.ip", 10, "bucket", "Client"),
                       terms("3", "destination.ip", 10, "bucket", "Server"),
                       terms("4", "otsentry.unit_id", 5, "bucket", "Unit")]),
        visualization(f"{dv}-rules", dv, "otsentry: rules fired", "pie", pie("otsentry: rules fired"),
                      [count_metric(), terms("2", "rule.id", 20, "segment", "Rule")]),
        visualization(f"{dv}-function-codes", dv, "otsentry: function-code mix of alerted windows", "pie",
                      pie("otsentry: function-code mix"),
                      [count_metric(), terms("2", "otsentry.function_codes", 25, "segment", "Function code")]),
        # a click on a slice filters the whole dashboard to one protocol (modbus, dnp3, iec104, s7comm, enip...)
        visualization(f"{dv}-protocols", dv, "otsentry: alerts by protocol", "pie", pie("otsentry: alerts by protocol"),
                      [count_metric(), terms("2", "network.protocol", 8, "segment", "Protocol")]),
    ]
    table = search(f"{dv}-table", dv, "otsentry: alerts", "Every alert with its explanation, newest first.",
                   ALERT_COLUMNS)
    layout = [(0, 0, 32, 12), (0, 12, 24, 15), (24, 12, 24, 15), (32, 0, 8, 12), (40, 0, 8, 12), (0, 27, 48, 20)]
    board = dashboard(f"{dv}-dashboard", "otsentry: OT alerts (Modbus, DNP3, IEC 104, S7, EtherNet/IP)",
                      "Alerts raised by otsentry on the OT network; the protocol pie filters by network.protocol.",
                      [*vis, table], layout)
    return [view, *vis, table, board]


def soc_objects(prefix: str = DEFAULT_PREFIX, incidents_prefix: str = INCIDENT_PREFIX,
                assets_prefix: str = ASSET_PREFIX) -> list[dict[str, Any]]:
    """Everything ``kibana export`` ships: the alert, incident and asset dashboards with their data views."""
    from otsentry.alerts.kibana_views import asset_objects, incident_objects

    return [*saved_objects(prefix), *incident_objects(incidents_prefix), *asset_objects(assets_prefix)]


def to_ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects)


def referenced_fields(objects: list[dict[str, Any]]) -> Iterator[tuple[str, str, str]]:
    """(object id, field, how it is used: "time" | "date_histogram" | "terms" | "column" | "sort") for every field
    a saved object names, so a test can check each against the index template."""
    for obj in objects:
        attrs = obj["attributes"]
        if obj["type"] == "index-pattern" and attrs.get("timeFieldName"):
            yield obj["id"], attrs["timeFieldName"], "time"
        if obj["type"] == "visualization":
            for agg in json.loads(attrs["visState"])["aggs"]:
                if "field" in agg["params"]:
                    yield obj["id"], agg["params"]["field"], agg["type"]
        if obj["type"] == "search":
            for column in attrs["columns"]:
                yield obj["id"], column, "column"
            for field, _ in attrs["sort"]:
                yield obj["id"], field, "sort"


def _auth_header(env: Mapping[str, str]) -> str | None:
    """Kibana's own credentials, else the Elasticsearch ones (often the same user)."""
    key = env.get("OTSENTRY_KIBANA_API_KEY") or env.get("OTSENTRY_ES_API_KEY")
    if key:
        return f"ApiKey {key}"
    user = env.get("OTSENTRY_KIBANA_USER") or env.get("OTSENTRY_ES_USER")
    password = env.get("OTSENTRY_KIBANA_PASSWORD") or env.get("OTSENTRY_ES_PASSWORD") or ""
    if user:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


def import_saved_objects(kibana_url: str, ndjson: str, *, space: str | None = None, overwrite: bool = True,
                         env: Mapping[str, str] = os.environ, timeout_s: float = 60.0) -> dict[str, Any]:
    """POST the NDJSON to Kibana's saved-objects import API; returns Kibana's answer, raises KibanaError."""
    base = kibana_url.rstrip("/")
    url = f"{base}{f'/s/{space}' if space else ''}/api/saved_objects/_import?overwrite={str(overwrite).lower()}"
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"otsentry.ndjson\"\r\n"
            f"Content-Type: application/ndjson\r\n\r\n{ndjson}\r\n--{boundary}--\r\n").encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "kbn-xsrf": "otsentry", "Content-Type": f"multipart/form-data; boundary={boundary}"})
    auth = _auth_header(env)
    if auth:
        request.add_header("Authorization", auth)
    ca = env.get("OTSENTRY_KIBANA_CA") or env.get("OTSENTRY_ES_CA")
    context = ssl.create_default_context(cafile=ca) if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise KibanaError(f"{base}: import refused (HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')})") \
            from None
    except (urllib.error.URLError, OSError) as exc:
        raise KibanaError(f"{base} is unreachable ({getattr(exc, 'reason', exc)})") from None
    if not answer.get("success"):
        errors = "; ".join(f"{e.get('type')} {e.get('id')}: {e.get('error', {}).get('type')}"
                           for e in answer.get("errors", [])[:5])
        raise KibanaError(f"{base}: {answer.get('successCount', 0)} objects imported, errors: {errors}")
    return answer
