"""``otsentry alerts prune`` against the real Elasticsearch node: only whole days older than the cutoff go, only
indices named exactly ``PREFIX-YYYY.MM.DD``, and ``--dry-run`` deletes nothing."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from otsentry.alerts.elastic import ElasticSink
from otsentry.cli import main
from tests.integration.test_index_daemon import make_alerts

pytestmark = pytest.mark.integration

DAY = 86400.0


@pytest.fixture
def prefix(es):
    name = f"otsentry-test-{uuid.uuid4().hex[:10]}"
    yield name
    es.indices.delete(index=f"{name}-*", ignore_unavailable=True, allow_no_indices=True, expand_wildcards="all")
    es.options(ignore_status=404).indices.delete_index_template(name=name)


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y.%m.%d")


def _indices(es, prefix: str) -> set[str]:
    return set(es.indices.get(index=f"{prefix}-*", expand_wildcards="all", allow_no_indices=True))


def test_prune_deletes_only_daily_indices_older_than_the_cutoff(es, es_url, prefix, tmp_path):
    now = time.time()
    ages = [40, 35, 1]  # days
    sink = ElasticSink(es, prefix, state_dir=tmp_path)
    for age in ages:
        sink.extend(make_alerts(3, start=now - age * DAY))
    assert sink.close() and sink.stats.indexed == 9
    es.indices.refresh(index=prefix)
    foreign = f"{prefix}-lab-{_day(now - 60 * DAY)}"  # another prefix's index, also matched by PREFIX-*
    es.indices.create(index=foreign)
    old = {f"{prefix}-{_day(now - a * DAY)}" for a in (40, 35)}
    assert old | {f"{prefix}-{_day(now - DAY)}", foreign} <= _indices(es, prefix)

    runner = CliRunner()
    dry = runner.invoke(main, ["alerts", "prune", "--es", es_url, "--index", prefix, "--older-than", "30d",
                               "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert {line.split()[2] for line in dry.stdout.splitlines()} == old
    assert "2 daily indices" in dry.stderr and "would be deleted" in dry.stderr
    assert old <= _indices(es, prefix)

    res = runner.invoke(main, ["alerts", "prune", "--es", es_url, "--index", prefix, "--older-than", "30d"])
    assert res.exit_code == 0, res.output
    assert "deleting" in res.stdout and "(3 alerts)" in res.stdout
    left = _indices(es, prefix)
    assert not old & left and foreign in left and f"{prefix}-{_day(now - DAY)}" in left
    es.indices.refresh(index=prefix)
    assert es.count(index=prefix)["count"] >= 3  # the recent alerts are still searchable through the alias

    again = runner.invoke(main, ["alerts", "prune", "--es", es_url, "--index", prefix, "--older-than", "30d"])
    assert again.exit_code == 0 and "0 daily indices" in again.stderr


def test_prune_on_an_unreachable_node_is_a_one_line_error():
    res = CliRunner().invoke(main, ["alerts", "prune", "--es", "http://127.0.0.1:9", "--older-than", "30d"])
    assert res.exit_code == 2
    assert res.output.strip().startswith("Error:") and "unreachable" in res.output and len(res.output.splitlines()) == 1
