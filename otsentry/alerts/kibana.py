"""Kibana saved objects for otsentry's alerts (a data view and a SOC dashboard), and their import over HTTP.

Why built in code rather than hand-written NDJSON: Kibana stores visualisation state and dashboard panels as JSON
*strings* inside JSON, which is unreadable and easy to break by hand. The objects are built here, exported with
``otsentry kibana export`` (``configs/kibana/otsentry-alerts.ndjson`` is that output, checked by a test), and every
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

from otsentry.alerts.elastic_template import DEFAULT_PREFIX, index_pattern

MIGRATION = {"index-pattern": "8.0.0", "visualization": "8.5.0", "search": "8.0.0", "dashboard": "8.7.0"}
_INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"


class KibanaError(RuntimeError):
    """Kibana refused the import or could not be reached: a one-line message (never with credentials)."""


def _obj(kind: str, obj_id: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict[str, Any]:
    return {"type": kind, "id": obj_id, "attributes": attributes, "references": references, "managed": False,
            "coreMigrationVersion": "8.8.0", "typeMigrationVersion": MIGRATION[kind]}


def _search_source(query: str = "") -> dict[str, str]:
    source = {"query": {"query": query, "language": "kuery"}, "filter": [], "indexRefName": _INDEX_REF}
    return {"searchSourceJSON": json.dumps(source, sort_keys=True)}


def _count() -> dict[str, Any]:
    return {"id": "1", "enabled": True, "type": "count", "params": {}, "schema": "metric"}


def _terms(agg_id: str, field: str, size: int, schema: str, label: str) -> dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": "terms", "schema": schema,
            "params": {"field": field, "size": size, "order": "desc", "orderBy": "1", "otherBucket": False,
                       "missingBucket": False, "customLabel": label}}


def _pie(title: str) -> dict[str, Any]:
    return {"type": "pie", "addTooltip": True, "legendDisplay": "show", "legendPosition": "right", "isDonut": True,
            "distinctColors": True, "nestedLegend": False, "palette": {"type": "palette", "name": "default"},
            "labels": {"show": True, "values": True, "last_level": True, "truncate": 100}, "title": title}


def _histogram_params() -> dict[str, Any]:
    return {
        "type": "histogram", "addTooltip": True, "addLegend": True, "legendPosition": "right", "times": [],
        "addTimeMarker": False, "grid": {"categoryLines": False},
        "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": True,
                          "scale": {"type": "linear"}, "labels": {"show": True, "filter": True, "truncate": 100},
                          "title": {}}],
        "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left", "show": True,
                       "scale": {"type": "linear", "mode": "normal"},
                       "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                       "title": {"text": "Alerts"}}],
        "seriesParams": [{"show": True, "type": "histogram", "mode": "stacked", "data": {"label": "Alerts", "id": "1"},
                          "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": True, "showCircles": True}],
    }


def _visualization(obj_id: str, data_view: str, title: str, vis_type: str, params: dict[str, Any],
                   aggs: list[dict[str, Any]]) -> dict[str, Any]:
    vis_state = {"title": title, "type": vis_type, "params": params, "aggs": aggs}
    attributes = {"title": title, "description": "", "version": 1, "uiStateJSON": "{}",
                  "visState": json.dumps(vis_state, sort_keys=True), "kibanaSavedObjectMeta": _search_source()}
    return _obj("visualization", obj_id, attributes, [{"name": _INDEX_REF, "type": "index-pattern", "id": data_view}])


ALERT_COLUMNS = ["otsentry.severity", "source.ip", "destination.ip", "otsentry.unit_id", "rule.id", "message"]


def saved_objects(prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]]:
    """The data view, the visualisations, the alert table (a saved search) and the dashboard, in import order."""
    dv = prefix  # object ids derive from the prefix, so a second installation (another prefix) does not collide
    data_view = _obj("index-pattern", dv, {
        "title": index_pattern(prefix), "name": f"otsentry alerts ({prefix})", "timeFieldName": "@timestamp",
        "fields": "[]", "fieldFormatMap": "{}", "runtimeFieldMap": "{}", "sourceFilters": "[]", "allowHidden": False,
    }, [])
    vis = [
        _visualization(f"{dv}-timeline", dv, "otsentry: alert timeline by severity", "histogram", _histogram_params(), [
            _count(),
            {"id": "2", "enabled": True, "type": "date_histogram", "schema": "segment",
             "params": {"field": "@timestamp", "interval": "auto", "min_doc_count": 1, "extended_bounds": {},
                        "useNormalizedEsInterval": True, "drop_partials": False}},
            _terms("3", "otsentry.severity", 4, "group", "Severity"),
        ]),
        _visualization(f"{dv}-pairs", dv, "otsentry: top asset pairs", "table",
                       {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False, "showTotal": False,
                        "totalFunc": "sum", "percentageCol": ""},
                       [_count(), _terms("2", "source.ip", 10, "bucket", "Client"),
                        _terms("3", "destination.ip", 10, "bucket", "Server"),
                        _terms("4", "otsentry.unit_id", 5, "bucket", "Unit")]),
        _visualization(f"{dv}-rules", dv, "otsentry: rules fired", "pie", _pie("otsentry: rules fired"),
                       [_count(), _terms("2", "rule.id", 20, "segment", "Rule")]),
        _visualization(f"{dv}-function-codes", dv, "otsentry: function-code mix of alerted windows", "pie",
                       _pie("otsentry: function-code mix"),
                       [_count(), _terms("2", "otsentry.function_codes", 25, "segment", "Function code")]),
    ]
    table = _obj("search", f"{dv}-table", {
        "title": "otsentry: alerts", "description": "Every alert with its explanation, newest first.",
        "columns": ALERT_COLUMNS, "sort": [["@timestamp", "desc"]], "grid": {}, "hideChart": False,
        "isTextBasedQuery": False, "kibanaSavedObjectMeta": _search_source(),
    }, [{"name": _INDEX_REF, "type": "index-pattern", "id": dv}])
    layout = [(0, 0, 32, 12), (0, 12, 24, 15), (24, 12, 24, 15), (32, 0, 16, 12), (0, 27, 48, 20)]
    panels, refs = [], []
    for n, (obj, (x, y, w, h)) in enumerate(zip([*vis, table], layout)):
        panels.append({"version": "8.8.0", "type": obj["type"], "panelIndex": str(n + 1), "embeddableConfig": {},
                       "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(n + 1)}, "panelRefName": f"panel_{n}"})
        refs.append({"name": f"panel_{n}", "type": obj["type"], "id": obj["id"]})
    dashboard = _obj("dashboard", f"{dv}-dashboard", {
        "title": "otsentry: Modbus/TCP alerts", "description": "Alerts raised by otsentry on the OT network.",
        "panelsJSON": json.dumps(panels, sort_keys=True), "timeRestore": False, "version": 1,
        "optionsJSON": json.dumps({"useMargins": True, "syncColors": False, "hidePanelTitles": False}),
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"},
                                                                  "filter": []})},
    }, refs)
    return [data_view, *vis, table, dashboard]


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
