"""Shared CLI plumbing: user errors as one line, exit code 2."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from otsentry.collectors.collector import CollectorConfig
from otsentry.config import ConfigError, load_config

__all__ = ["JOBS", "UserError", "capture_options", "collector_config", "collector_options", "parse_duration",
    "parse_ports", "resolve_jobs", "ring_config"]


class UserError(click.ClickException):
    """A problem the user can fix; printed as ``Error: ...`` with exit code 2."""

    exit_code = 2


def parse_ports(value: str) -> frozenset[int]:
    try:
        ports = frozenset(int(p) for p in value.split(",") if p.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated port numbers, e.g. 502,5020") from None
    if not ports or any(not 0 < p < 65536 for p in ports):
        raise click.BadParameter(f"{value!r}: ports must be between 1 and 65535")
    return ports


JOBS = click.option(
    "--jobs", "-j", type=click.IntRange(1, 2), default=None,
    help="Processes for captures: 2 decodes the next windows while the current ones are scored (same results, "
         "about 1.4x faster); 1 keeps everything in one process. [default: 2 on Linux with two or more CPUs, else 1]")


def resolve_jobs(jobs: int | None) -> int:
    """``--jobs``, or the default for this machine when it was not given."""
    from otsentry.prefetch import default_jobs

    return default_jobs() if jobs is None else jobs


def collector_options(f):
    """--config, --ports and --pairing-timeout, shared by every command that runs the collector."""
    f = click.option("--pairing-timeout", type=float, default=None,
                     help="Seconds a request waits for its response before it is flagged unanswered [default: 5].")(f)
    f = click.option("--ports", default=None,
                     help="Modbus/TCP server ports, comma-separated [default: 502].")(f)
    f = click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="YAML config (see configs/collector.yaml); command-line options override it.")(f)
    return f


def collector_config(config_path: Path | None, ports: str | None, pairing_timeout: float | None) -> CollectorConfig:
    """The collector config from the YAML file (if any), overridden by the options given on the command line."""
    try:
        config = load_config(config_path)["collector"]
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    changes = {}
    if ports is not None:
        changes["server_ports"] = parse_ports(ports)
    if pairing_timeout is not None:
        changes["pairing_timeout_s"] = pairing_timeout
    return replace(config, **changes)


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """'10s', '1.5m', '2h', '500ms' or a bare number of seconds -> seconds (> 0)."""
    value = text.strip().lower()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if value.endswith(unit):
            number, scale = value[: -len(unit)], _UNITS[unit]
            break
    else:
        number, scale = value, 1.0
    try:
        seconds = float(number) * scale
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected a duration such as 10s, 5m or 1h") from None
    if not seconds > 0:
        raise click.BadParameter(f"{text!r}: a duration must be positive")
    return seconds


def capture_options(f):
    """Live-capture set-up shared by ``collect live`` and ``run --iface``: ring, snap length, fan-out, user."""
    f = click.option("--user", "capture_user", default=None, envvar="OTSENTRY_CAPTURE_USER", metavar="NAME",
                     help="Drop root privileges to this user once the capture ring is open.")(f)
    f = click.option("--fanout-workers", type=click.IntRange(1, 64), default=1, show_default=True,
                     envvar="OTSENTRY_FANOUT_WORKERS",
                     help="Sensors sharing --fanout-group split the traffic N ways by address pair (run N of them).")(f)
    f = click.option("--fanout-group", type=click.IntRange(0, 65535), default=None, envvar="OTSENTRY_FANOUT_GROUP",
                     help="Join this kernel fan-out group: for several collector processes on one busy port.")(f)
    f = click.option("--snaplen", type=click.IntRange(64, 262144), default=65535, show_default=True,
                     help="Bytes kept of each packet (cut packets are flagged, never decoded wrongly).")(f)
    f = click.option("--ring-mb", type=click.IntRange(2, 1 << 16), default=256, show_default=True,
                     envvar="OTSENTRY_RING_MB",
                     help="Kernel capture ring (MiB): absorbs bursts while packets are decoded.")(f)
    return f


def ring_config(ring_mb: int, snaplen: int, fanout_group: int | None, fanout_workers: int, capture_user: str | None):
    from otsentry.collectors.ring import RingConfig

    if fanout_workers > 1 and fanout_group is None:
        raise UserError("--fanout-workers needs --fanout-group (the same id for every worker)")
    try:
        return RingConfig(ring_mb=ring_mb, snaplen=snaplen, fanout_group=fanout_group, fanout_workers=fanout_workers,
                          user=capture_user)
    except ValueError as exc:
        raise UserError(str(exc)) from None
