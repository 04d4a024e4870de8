"""Fixtures (only) for the real external services started by ``make services`` (services/kafka.py,
services/elasticsearch.py)."""

from __future__ import annotations

import os

import pytest

from services import kafka as kafka_service
from tests.helpers import IN_CI
from tests.integration.helpers import ES_DEFAULT_URL, es_health, kafka_bootstrap_address


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``host:port`` of a Kafka broker that answers (``OTSENTRY_KAFKA``, default 127.0.0.1:9092).

    It must answer a metadata request, not merely accept a TCP connection. A broker that is down fails the test in
    CI (``make test`` starts one) and skips it elsewhere.
    """
    bootstrap = kafka_bootstrap_address()
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if kafka_service.probe(host.strip("[]") or "127.0.0.1", int(port), timeout=5.0) is None:
        message = f"no Kafka broker answers on {bootstrap}: run `make services` (or set OTSENTRY_KAFKA)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return bootstrap


@pytest.fixture(scope="session")
def kafka_sasl() -> dict:
    """The SASL_PLAINTEXT listener of ``make services`` and its test-only user: ``{"bootstrap", "username",
    "password"}`` (``OTSENTRY_KAFKA_SASL`` overrides the address, default 127.0.0.1:9094 unless
    OTSENTRY_KAFKA_SASL_PORT; the user and password are those services/kafka.py configures).

    The user must log in with SASL PLAIN; a listener that is down or refuses it fails the test in CI and skips it
    elsewhere.
    """
    service = kafka_service
    bootstrap = os.environ.get("OTSENTRY_KAFKA_SASL") or f"{service.HOST}:{service.SASL_PORT}"
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        refused = service.sasl_login("PLAIN", host=host.strip("[]") or "127.0.0.1", port=int(port), timeout=5.0)
    except OSError as error:
        refused = f"no answer ({error})"
    if refused:
        message = (f"the SASL listener {bootstrap} does not take the test user {service.SASL_USERNAME}: {refused}; "
                   "run `make services` (a broker started before the SASL listener existed: "
                   "`python3 -m services.kafka restart`)")
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return {"bootstrap": bootstrap, "username": service.SASL_USERNAME, "password": service.SASL_PASSWORD}


@pytest.fixture(scope="session")
def es_url() -> str:
    """URL of an Elasticsearch that answers ``_cluster/health`` (``OTSENTRY_ES``, default 127.0.0.1:9200).

    Down: the test fails in CI (``make test`` starts it) and is skipped elsewhere.
    """
    url = (os.environ.get("OTSENTRY_ES") or ES_DEFAULT_URL).rstrip("/")
    health = es_health(url)
    if health is None or health.get("status") not in ("green", "yellow"):
        message = f"no healthy Elasticsearch on {url}: run `make services` (or set OTSENTRY_ES)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.fixture
def es(es_url):
    """A client of ``es_url`` (credentials from the environment, as the CLI takes them)."""
    from otsentry.alerts.elastic import ElasticConfig, make_client

    return make_client(ElasticConfig.from_env(es_url))
