"""Helpers of the integration tests (the fixtures are in conftest.py): where the services of ``make services`` are."""

from __future__ import annotations

import json
import os
import urllib.request

from services import kafka as kafka_service

__all__ = ["ES_DEFAULT_URL", "es_health", "kafka_bootstrap_address"]


def kafka_bootstrap_address() -> str:
    """``OTSENTRY_KAFKA``, else the broker of ``make services`` (127.0.0.1:9092 unless OTSENTRY_KAFKA_PORT)."""
    service = kafka_service
    return os.environ.get("OTSENTRY_KAFKA") or f"{service.HOST}:{service.PORT}"


ES_DEFAULT_URL = "http://127.0.0.1:9200"


def es_health(url: str) -> dict | None:
    """``_cluster/health`` of ``url`` (the minimal distribution has no ``GET /``), None if it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=5) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return None
