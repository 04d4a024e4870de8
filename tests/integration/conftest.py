"""Fixtures for the real external services started by ``make services`` (services/kafka.py)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import IN_CI, kafka_service


def kafka_bootstrap_address() -> str:
    """``OTSENTRY_KAFKA``, else the broker of ``make services`` (127.0.0.1:9092 unless OTSENTRY_KAFKA_PORT)."""
    service = kafka_service()
    return os.environ.get("OTSENTRY_KAFKA") or f"{service.HOST}:{service.PORT}"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``host:port`` of a Kafka broker that answers (``OTSENTRY_KAFKA``, default 127.0.0.1:9092).

    It must answer a metadata request, not merely accept a TCP connection. A broker that is down fails the test in
    CI (``make test`` starts one) and skips it elsewhere.
    """
    bootstrap = kafka_bootstrap_address()
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if kafka_service().probe(host.strip("[]") or "127.0.0.1", int(port), timeout=5.0) is None:
        message = f"no Kafka broker answers on {bootstrap}: run `make services` (or set OTSENTRY_KAFKA)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return bootstrap
