"""Which daily alert indices ``otsentry alerts prune`` deletes: exact names only, whole days before the cutoff."""

from __future__ import annotations

from datetime import date, datetime, timezone

from click.testing import CliRunner

from otsentry.alerts.elastic_retention import expired, parse_daily
from otsentry.cli import main


def test_parse_daily_accepts_only_prefix_and_a_real_day():
    assert parse_daily("otsentry-alerts-2024.03.01", "otsentry-alerts") == date(2024, 3, 1)
    assert parse_daily("otsentry-alerts-lab-2024.03.01", "otsentry-alerts") is None  # another prefix's index
    assert parse_daily("otsentry-alerts-2024.02.30", "otsentry-alerts") is None
    assert parse_daily("otsentry-alerts-2024.03.01-restored", "otsentry-alerts") is None
    assert parse_daily("a.b-2024.03.01", "a.b") == date(2024, 3, 1)
    assert parse_daily("axb-2024.03.01", "a.b") is None  # the prefix is literal, not a pattern


def test_expired_keeps_a_day_that_ends_after_the_cutoff():
    names = ["p-2024.02.28", "p-2024.02.29", "p-2024.03.01", "p-lab-2020.01.01", "p", "p-2024.01.15"]
    cutoff = datetime(2024, 3, 1, 0, 0, tzinfo=timezone.utc)
    assert [i.name for i in expired(names, "p", cutoff)] == ["p-2024.01.15", "p-2024.02.28", "p-2024.02.29"]
    cutoff = datetime(2024, 2, 29, 23, 59)  # naive: UTC
    assert [i.name for i in expired(names, "p", cutoff)] == ["p-2024.01.15", "p-2024.02.28"]


def test_prune_cli_errors_are_one_line():
    runner = CliRunner()
    for args, needle in ((["--es", "http://h:9200", "--older-than", "soon"], "--older-than"),
                         (["--es", "http://h:9200", "--older-than", "0d"], "positive"),
                         (["--older-than", "30d"], "--es"),
                         (["--es", "ftp://h", "--older-than", "30d"], "not an Elasticsearch URL")):
        res = runner.invoke(main, ["alerts", "prune", *args])
        assert res.exit_code == 2, res.output
        errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and needle in errors[0], res.output
