"""Building blocks of Kibana saved objects (data views, aggregation-based visualisations, searches, dashboards).

Shared by the alert dashboard (``kibana``) and the incident and asset dashboards (``kibana_views``). Kibana keeps
visualisation state and panels as JSON strings inside JSON; these helpers write them so nobody edits them by hand.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["INDEX_REF", "MIGRATION", "count_metric", "dashboard", "data_view", "histogram_params", "pie",
           "saved_object", "search", "search_source", "terms", "visualization"]

MIGRATION = {"index-pattern": "8.0.0", "visualization": "8.5.0", "search": "8.0.0", "dashboard": "8.7.0"}
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"


def saved_object(kind: str, obj_id: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict[str, Any]:
    return {"type": kind, "id": obj_id, "attributes": attributes, "references": references, "managed": False,
            "coreMigrationVersion": "8.8.0", "typeMigrationVersion": MIGRATION[kind]}


def search_source(query: str = "") -> dict[str, str]:
    source = {"query": {"query": query, "language": "kuery"}, "filter": [], "indexRefName": INDEX_REF}
    return {"searchSourceJSON": json.dumps(source, sort_keys=True)}


def count_metric() -> dict[str, Any]:
    return {"id": "1", "enabled": True, "type": "count", "params": {}, "schema": "metric"}


def terms(agg_id: str, field: str, size: int, schema: str, label: str) -> dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": "terms", "schema": schema,
            "params": {"field": field, "size": size, "order": "desc", "orderBy": "1", "otherBucket": False,
                       "missingBucket": False, "customLabel": label}}


def pie(title: str) -> dict[str, Any]:
    return {"type": "pie", "addTooltip": True, "legendDisplay": "show", "legendPosition": "right", "isDonut": True,
            "distinctColors": True, "nestedLegend": False, "palette": {"type": "palette", "name": "default"},
            "labels": {"show": True, "values": True, "last_level": True, "truncate": 100}, "title": title}


def histogram_params() -> dict[str, Any]:
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


def visualization(obj_id: str, data_view: str, title: str, vis_type: str, params: dict[str, Any],
                   aggs: list[dict[str, Any]]) -> dict[str, Any]:
    vis_state = {"title": title, "type": vis_type, "params": params, "aggs": aggs}
    attributes = {"title": title, "description": "", "version": 1, "uiStateJSON": "{}",
                  "visState": json.dumps(vis_state, sort_keys=True), "kibanaSavedObjectMeta": search_source()}
    return saved_object("visualization", obj_id, attributes, [{"name": INDEX_REF, "type": "index-pattern", "id": data_view}])




def data_view(obj_id: str, pattern: str, name: str) -> dict[str, Any]:
    return saved_object("index-pattern", obj_id, {
        "title": pattern, "name": name, "timeFieldName": "@timestamp", "fields": "[]", "fieldFormatMap": "{}",
        "runtimeFieldMap": "{}", "sourceFilters": "[]", "allowHidden": False,
    }, [])


def search(obj_id: str, view: str, title: str, description: str, columns: list[str]) -> dict[str, Any]:
    return saved_object("search", obj_id, {
        "title": title, "description": description, "columns": columns, "sort": [["@timestamp", "desc"]],
        "grid": {}, "hideChart": False, "isTextBasedQuery": False, "kibanaSavedObjectMeta": search_source(),
    }, [{"name": INDEX_REF, "type": "index-pattern", "id": view}])


def dashboard(obj_id: str, title: str, description: str, objects: list[dict[str, Any]],
              layout: list[tuple[int, int, int, int]]) -> dict[str, Any]:
    """A dashboard with one panel per object at ``layout`` (x, y, w, h on Kibana's 48-column grid)."""
    panels, refs = [], []
    for n, (obj, (x, y, w, h)) in enumerate(zip(objects, layout)):
        panels.append({"version": "8.8.0", "type": obj["type"], "panelIndex": str(n + 1), "embeddableConfig": {},
                       "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(n + 1)}, "panelRefName": f"panel_{n}"})
        refs.append({"name": f"panel_{n}", "type": obj["type"], "id": obj["id"]})
    return saved_object("dashboard", obj_id, {
        "title": title, "description": description,
        "panelsJSON": json.dumps(panels, sort_keys=True), "timeRestore": False, "version": 1,
        "optionsJSON": json.dumps({"useMargins": True, "syncColors": False, "hidePanelTitles": False}),
        "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"},
                                                                  "filter": []})},
    }, refs)
