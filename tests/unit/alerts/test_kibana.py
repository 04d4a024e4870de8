"""Kibana saved objects: every field they use is in the index template with a type that use needs; references are
consistent; the shipped NDJSON is what ``otsentry kibana export`` writes; import speaks Kibana's API shape.

Kibana itself cannot be installed here (no registry carries it), so the import is checked against a small local
HTTP endpoint that records the request; the field checks run against the real index in tests/integration too.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from otsentry.alerts.elastic_template import field_types
from otsentry.alerts.elastic_template import ASSET_MAPPINGS, INCIDENT_MAPPINGS, VARIABLE_MAPPINGS
from otsentry.alerts.kibana import (KibanaError, import_saved_objects, referenced_fields, saved_objects, soc_objects,
                                    to_ndjson)
from otsentry.alerts.kibana_views import asset_objects, incident_objects
from otsentry.cli.kibana import kibana

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "configs" / "kibana" / "otsentry.ndjson"
AGGREGATABLE = {"keyword", "ip", "date", "long", "integer", "short", "byte", "double", "float"}
NEEDS = {"time": {"date"}, "date_histogram": {"date"}, "sort": {"date"} | AGGREGATABLE, "terms": AGGREGATABLE}


def test_every_referenced_field_is_in_the_template_with_the_right_type():
    types = field_types()
    used = list(referenced_fields(saved_objects()))
    assert {f for _, f, _ in used} >= {"@timestamp", "otsentry.severity", "source.ip", "destination.ip", "rule.id",
                                       "otsentry.function_codes", "message"}
    for obj_id, field, use in used:
        assert field in types, f"{obj_id}: {field} is not in the index template"
        allowed = NEEDS.get(use)
        if allowed is not None:
            assert types[field] in allowed, f"{obj_id}: {use} on {field} needs {sorted(allowed)}, not {types[field]}"
        assert types[field] != "nested", f"{obj_id}: {field} is a nested object, Kibana cannot use it as a field"


MAPPINGS_OF_VIEW = {"otsentry-incidents": INCIDENT_MAPPINGS, "otsentry-assets": ASSET_MAPPINGS,
                    "otsentry-variables": VARIABLE_MAPPINGS}


@pytest.mark.parametrize("objects, must", [
    (incident_objects, {"threat.tactic.name", "related.ip", "otsentry.incident.severity"}),
    (asset_objects, {"otsentry.asset.roles", "otsentry.asset.identity.product_code", "host.ip",
                     "otsentry.variable.last_value"}),
], ids=["incidents", "assets"])
def test_incident_and_asset_dashboards_use_fields_their_templates_map(objects, must):
    built = objects()
    view_of = {o["id"]: next((r["id"] for r in o["references"] if r["type"] == "index-pattern"), o["id"])
               for o in built}
    used = list(referenced_fields(built))
    assert {f for _, f, _ in used} >= must
    for obj_id, field, use in used:
        types = field_types(MAPPINGS_OF_VIEW[view_of[obj_id]])
        assert field in types, f"{obj_id}: {field} is not in its index template"
        allowed = NEEDS.get(use)
        if allowed is not None:
            assert types[field] in allowed, f"{obj_id}: {use} on {field} needs {sorted(allowed)}, not {types[field]}"
    assert [o["type"] for o in built].count("dashboard") == 1


def test_everything_shipped_has_unique_ids_and_resolvable_references():
    objects = soc_objects()
    keys = {(o["type"], o["id"]) for o in objects}
    assert len(keys) == len(objects) == 23
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in keys, f"{obj['id']} references a missing {ref}"


def test_references_are_consistent():
    objects = saved_objects("otsentry-x")
    by_key = {(o["type"], o["id"]) for o in objects}
    assert len(by_key) == len(objects)
    for obj in objects:
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in by_key, f"{obj['id']} references a missing {ref}"
    (dashboard,) = [o for o in objects if o["type"] == "dashboard"]
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    assert {p["panelRefName"] for p in panels} == {r["name"] for r in dashboard["references"]}
    assert len(panels) == 6 and {p["type"] for p in panels} == {"visualization", "search"}
    cells = set()
    for p in panels:  # no two panels overlap on Kibana's 48-column grid
        g = p["gridData"]
        assert g["x"] + g["w"] <= 48
        new = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & new
        cells |= new
    (data_view,) = [o for o in objects if o["type"] == "index-pattern"]
    assert data_view["attributes"]["title"] == "otsentry-x-*" and data_view["id"] == "otsentry-x"


def test_shipped_ndjson_is_the_export(tmp_path):
    assert SHIPPED.read_text() == to_ndjson(soc_objects()), "regenerate: otsentry kibana export -o " + str(SHIPPED)
    out = tmp_path / "k.ndjson"
    result = CliRunner().invoke(kibana, ["export", "-o", str(out)])
    assert result.exit_code == 0 and out.read_text() == SHIPPED.read_text()


class _Recorder(BaseHTTPRequestHandler):
    requests: list[tuple[str, object, bytes]] = []
    answer: dict = {"success": True, "successCount": 7}

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append((self.path, self.headers, body))  # case-insensitive, like HTTP
        data = json.dumps(type(self).answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def endpoint():
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.requests.clear()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_import_posts_ndjson_multipart_with_xsrf_and_auth(endpoint):
    ndjson = to_ndjson(saved_objects())
    answer = import_saved_objects(endpoint, ndjson, space="soc", env={"OTSENTRY_KIBANA_API_KEY": "abc"})
    assert answer["successCount"] == 7
    ((path, headers, body),) = _Recorder.requests
    assert path == "/s/soc/api/saved_objects/_import?overwrite=true"
    assert headers["kbn-xsrf"] and headers["Authorization"] == "ApiKey abc"
    assert headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="otsentry.ndjson"' in body and ndjson.encode() in body


def test_import_errors_are_one_line(endpoint):
    _Recorder.answer = {"success": False, "successCount": 6,
                        "errors": [{"type": "dashboard", "id": "x", "error": {"type": "missing_references"}}]}
    try:
        with pytest.raises(KibanaError, match="missing_references"):
            import_saved_objects(endpoint, "{}\n", env={})
    finally:
        _Recorder.answer = {"success": True, "successCount": 7}
    with pytest.raises(KibanaError, match="unreachable"):
        import_saved_objects("http://127.0.0.1:1", "{}\n", env={})
