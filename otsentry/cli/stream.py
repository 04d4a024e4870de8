"""``otsentry detect --kafka``: a detector worker; and the ``--kafka`` mode of ``otsentry collect pcap|live``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import click

from otsentry.cli.streamopts import DETECTOR_SKIP, stream_options, stream_params, stream_settings
from otsentry.collectors.collector import CollectorConfig

__all__ = ["detect_cmd", "publish", "setup_logs"]


def setup_logs(settings: Any) -> None:
    from otsentry.stream.runtime.daemon import setup_logging

    setup_logging(settings.daemon.log_format, settings.daemon.log_level)


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
    from otsentry.cli.detect import load_bundle
    from otsentry.stream.detect import run_detector

    settings = stream_settings(config_path, stream_params(kwargs))
    setup_logs(settings)
    bundle = load_bundle(model)
    worker, _ = run_detector(bundle, settings)
    if worker is None:
        raise SystemExit(1)


def publish(captures: Sequence[Path] | None, config: CollectorConfig, config_path: Path | None,
            params: dict[str, Any], **live: Any) -> None:
    """The ``--kafka`` mode of ``collect pcap`` (``captures``) and ``collect live`` (``live['iface']``)."""
    from otsentry.stream.publish import run_collector

    settings = stream_settings(config_path, params)
    setup_logs(settings)
    stats, _ = run_collector(captures, settings, config, **live)
    if not stats.finished and stats.stop_reason not in ("SIGTERM", "SIGINT", "stopped"):
        raise SystemExit(1)

