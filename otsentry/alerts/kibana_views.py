"""Kibana saved objects for incidents (timeline, tactics, hosts) and assets (inventory, roles, device identity).

Same construction and checks as the alert dashboard (``kibana``): built in code, exported into the shipped NDJSON,
every field checked against its own index template (``INCIDENT_MAPPINGS``, ``ASSET_MAPPINGS``).
"""

from __future__ import annotations

from typing import Any

from otsentry.alerts.elastic_template import ASSET_PREFIX, INCIDENT_PREFIX, VARIABLE_PREFIX, index_pattern
from otsentry.alerts.kibana_objects import (count_metric, dashboard, data_view, histogram_params, pie, search, terms,
                                            visualization)

__all__ = ["ASSET_COLUMNS", "INCIDENT_COLUMNS", "VARIABLE_COLUMNS", "asset_objects", "incident_objects",
           "variable_objects"]

INCIDENT_COLUMNS = ["otsentry.incident.severity", "source.ip", "destination.ip", "threat.tactic.name",
                    "otsentry.incident.alert_count", "message"]
VARIABLE_COLUMNS = ["otsentry.variable.server", "otsentry.variable.unit", "otsentry.variable.table",
                    "otsentry.variable.address", "otsentry.variable.low", "otsentry.variable.high",
                    "otsentry.variable.last_value", "otsentry.variable.typical_change", "otsentry.variable.period_s"]
ASSET_COLUMNS = ["host.ip", "host.mac", "otsentry.asset.vendor", "otsentry.asset.roles",
                 "otsentry.asset.identity.vendor_name", "otsentry.asset.identity.product_code", "message"]


def _table(obj_id: str, view: str, title: str, buckets: list[tuple[str, str, int]]) -> dict[str, Any]:
    aggs = [count_metric()] + [terms(str(n + 2), field, size, "bucket", label) for n, (field, label, size)
                               in enumerate(buckets)]
    return visualization(obj_id, view, title, "table",
                         {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False,
                          "showTotal": False, "totalFunc": "sum", "percentageCol": ""}, aggs)


def incident_objects(prefix: str = INCIDENT_PREFIX) -> list[dict[str, Any]]:
    dv = prefix
    view = data_view(dv, index_pattern(prefix), f"otsentry incidents ({prefix})")
    vis = [
        visualization(f"{dv}-timeline", dv, "otsentry: incident timeline by severity", "histogram",
                      histogram_params(), [
                          count_metric(),
                          {"id": "2", "enabled": True, "type": "date_histogram", "schema": "segment",
                           "params": {"field": "@timestamp", "interval": "auto", "min_doc_count": 1,
                                      "extended_bounds": {}, "useNormalizedEsInterval": True,
                                      "drop_partials": False}},
                          terms("3", "otsentry.incident.severity", 4, "group", "Severity"),
                      ]),
        visualization(f"{dv}-tactics", dv, "otsentry: ATT&CK for ICS tactics of incidents", "pie",
                      pie("otsentry: tactics"), [count_metric(), terms("2", "threat.tactic.name", 12, "segment",
                                                                       "Tactic")]),
        _table(f"{dv}-techniques", dv, "otsentry: techniques",
               [("threat.technique.id", "Technique", 20), ("threat.technique.name", "Name", 20)]),
        _table(f"{dv}-hosts", dv, "otsentry: hosts involved", [("related.ip", "Host", 20)]),
    ]
    table = search(f"{dv}-table", dv, "otsentry: incidents", "Every incident with its summary, newest first.",
                   INCIDENT_COLUMNS)
    layout = [(0, 0, 32, 12), (32, 0, 16, 12), (0, 12, 24, 15), (24, 12, 24, 15), (0, 27, 48, 20)]
    board = dashboard(f"{dv}-dashboard", "otsentry: incidents", "Alerts of one attack folded into incidents, with "
                      "their ATT&CK for ICS tactics.", [*vis, table], layout)
    return [view, *vis, table, board]


def variable_objects(prefix: str = VARIABLE_PREFIX) -> list[dict[str, Any]]:
    """The data view and table of the process variables (a panel of the asset dashboard)."""
    view = data_view(prefix, index_pattern(prefix), f"otsentry process variables ({prefix})")
    table = search(f"{prefix}-table", prefix, "otsentry: process variables",
                   "Per server, unit and register: learned range, last value, change per poll, polling period.",
                   VARIABLE_COLUMNS)
    return [view, table]


def asset_objects(prefix: str = ASSET_PREFIX, variables_prefix: str = VARIABLE_PREFIX) -> list[dict[str, Any]]:
    dv = prefix
    view = data_view(dv, index_pattern(prefix), f"otsentry assets ({prefix})")
    vis = [
        visualization(f"{dv}-roles", dv, "otsentry: asset roles", "pie", pie("otsentry: roles"),
                      [count_metric(), terms("2", "otsentry.asset.roles", 6, "segment", "Role")]),
        _table(f"{dv}-vendors", dv, "otsentry: MAC vendors", [("otsentry.asset.vendor", "Vendor", 20)]),
        _table(f"{dv}-identity", dv, "otsentry: device identity (FC 43/14)",
               [("otsentry.asset.identity.vendor_name", "Vendor", 20),
                ("otsentry.asset.identity.product_code", "Product code", 20),
                ("otsentry.asset.identity.revision", "Revision", 10)]),
    ]
    table = search(f"{dv}-table", dv, "otsentry: inventory", "Every host with its roles and identity.", ASSET_COLUMNS)
    variables = variable_objects(variables_prefix)
    layout = [(0, 0, 16, 14), (16, 0, 16, 14), (32, 0, 16, 14), (0, 14, 48, 20), (0, 34, 48, 20)]
    board = dashboard(f"{dv}-dashboard", "otsentry: assets", "The hosts otsentry saw: roles with evidence, vendors, "
                      "what the devices said they are, and their process variables.", [*vis, table, variables[1]],
                      layout)
    return [view, *vis, table, *variables, board]
