"""TLS verification and credentials of the Elasticsearch client as otsentry configures it.

The test node of ``make services`` runs without security, so this checks the client side against a local HTTPS
endpoint with a certificate from a throw-away CA (made with openssl): the CA from ``OTSENTRY_ES_CA`` is trusted, an
unknown CA is refused, and the API key or basic credentials are sent as Elasticsearch expects them.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from otsentry.alerts.elastic import ElasticConfig, cluster_health, make_client
from tests.helpers import require_tool


def _certificates(tmp: Path) -> tuple[Path, Path, Path]:
    openssl = require_tool("openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=tmp)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=otsentry test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1")
    (tmp / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                 "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "node.crt", "-days", "2", "-extfile", "ext.cnf")
    return tmp / "ca.crt", tmp / "node.crt", tmp / "node.key"


class _Health(BaseHTTPRequestHandler):
    authorizations: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        type(self).authorizations.append(self.headers.get("Authorization"))
        body = json.dumps({"cluster_name": "tls-test", "status": "green"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def https_endpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    ca, cert, key = _certificates(tmp)
    server = HTTPServer(("127.0.0.1", 0), _Health)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}", ca
    server.shutdown()


def test_ca_from_env_is_trusted_and_api_key_is_sent(https_endpoint):
    url, ca = https_endpoint
    _Health.authorizations.clear()
    client = make_client(ElasticConfig.from_env(url, {"OTSENTRY_ES_CA": str(ca), "OTSENTRY_ES_API_KEY": "a2V5"}))
    assert cluster_health(client)["status"] == "green"
    assert _Health.authorizations[-1] == "ApiKey a2V5"


def test_basic_auth_from_env(https_endpoint):
    url, ca = https_endpoint
    env = {"OTSENTRY_ES_CA": str(ca), "OTSENTRY_ES_USER": "soc", "OTSENTRY_ES_PASSWORD": "s3cret"}
    assert cluster_health(make_client(ElasticConfig.from_env(url, env)))["status"] == "green"
    assert _Health.authorizations[-1] == "Basic " + base64.b64encode(b"soc:s3cret").decode()


def test_an_unknown_ca_is_refused(https_endpoint):
    url, _ = https_endpoint
    _Health.authorizations.clear()
    assert cluster_health(make_client(ElasticConfig.from_env(url, {}, timeout_s=5))) is None
    assert _Health.authorizations == []  # the request never got past the TLS handshake
