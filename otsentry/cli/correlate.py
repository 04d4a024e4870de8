"""``otsentry correlate --kafka BOOTSTRAP``: the daemon that folds the detectors' alerts into incidents."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from otsentry.cli.common import parse_duration
from otsentry.cli.streamopts import setup_logs, stream_options, stream_params, stream_settings

__all__ = ["CORRELATE_SKIP", "correlate_cmd"]

CORRELATE_SKIP = frozenset({"kafka.group", "kafka.features_topic", "stream.window_s", "stream.source",
                            "stream.max_buffered_windows"})


def _default_state(group: str) -> Path:
    base = Path(os.environ["OTSENTRY_STATE_DIR"]) if os.environ.get("OTSENTRY_STATE_DIR") else \
        Path.home() / ".local" / "state" / "otsentry"
    return base / f"correlator-{group}.json"


@click.command("correlate")
@click.option("--group", default="otsentry-correlator", show_default=True, envvar="OTSENTRY_CORRELATE_GROUP",
              help="Consumer group of the correlator (one member: incidents span partitions).")
@click.option("--incident-gap", default="15m", show_default=True, metavar="DURATION",
              help="An incident closes after this long without a new alert (as `run --incident-gap`).")
@click.option("--lateness", default="1m", show_default=True, metavar="DURATION",
              help="How long (window time) alerts wait for the other detector workers' alerts of their window.")
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Checkpoint file (default: $OTSENTRY_STATE_DIR or ~/.local/state/otsentry, "
                   "correlator-GROUP.json).")
@click.option("--until-idle", default=None, metavar="DURATION",
              help="Stop once nothing arrived for this long, closing every incident (replays, tests).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML config (see configs/kafka.yaml); flags and environment variables override it.")
@stream_options(skip=CORRELATE_SKIP)
def correlate_cmd(group: str, incident_gap: str, lateness: str, state_path: Path | None, until_idle: str | None,
                  config_path: Path | None, **kwargs: Any) -> None:
    """Fold the alerts of a Kafka topic into incidents, as `otsentry run` does.

    Reads otsentry.alerts (published by `otsentry detect` workers), publishes every alert again with its
    incident id to otsentry.alerts.correlated and every incident when it closes to otsentry.incidents (keys:
    the ids), checkpoints its state, then commits. Index both with `otsentry index --alerts-topic
    otsentry.alerts.correlated` and `otsentry index --incidents`. Runs until SIGTERM/SIGINT.
    """
    from otsentry.stream.correlate import run_correlator

    if not group:
        raise click.BadParameter("must not be empty", param_hint="--group")
    settings = stream_settings(config_path, stream_params(kwargs))
    settings = replace(settings, kafka=replace(settings.kafka, group=group))
    setup_logs(settings)
    worker, _ = run_correlator(settings, state_path or _default_state(group), parse_duration(incident_gap),
                               parse_duration(lateness),
                               until_idle_s=parse_duration(until_idle) if until_idle else None)
    if worker is None:
        raise SystemExit(1)
