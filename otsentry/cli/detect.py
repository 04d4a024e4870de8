"""``otsentry detect --kafka``: a detector worker of a consumer group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from otsentry.cli.streamopts import DETECTOR_SKIP, setup_logs, stream_options, stream_params, stream_settings

__all__ = ["detect_cmd"]


@click.command("detect")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Model bundle from `otsentry train`.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML config (see configs/kafka.yaml); flags and environment variables override it.")
@stream_options(skip=DETECTOR_SKIP)
def detect_cmd(model: Path, config_path: Path | None, **kwargs: Any) -> None:
    """Score the FeatureWindows of a Kafka topic as a consumer-group worker and publish alerts.

    Reads otsentry.features (published by `otsentry collect ... --kafka`), scores windows in event-time order
    with MODEL, publishes alerts to otsentry.alerts (key: alert id) and commits offsets only after the broker
    acknowledged them. Start several workers with the same --group to share the partitions. Runs until
    SIGTERM/SIGINT, then flushes and commits within --stop-timeout.

    Secrets come from the environment only: OTSENTRY_KAFKA_SASL_PASSWORD, OTSENTRY_KAFKA_SSL_PASSWORD.
    """
    from otsentry.cli.batch import load_bundle
    from otsentry.stream.detect import run_detector

    settings = stream_settings(config_path, stream_params(kwargs))
    setup_logs(settings)
    bundle = load_bundle(model)
    worker, _ = run_detector(bundle, settings)
    if worker is None:
        raise SystemExit(1)
