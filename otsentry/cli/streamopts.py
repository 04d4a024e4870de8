"""Command-line flags and environment variables for the ``kafka``, ``stream`` and ``daemon`` config sections.

Built from the dataclass fields of ``otsentry.stream.runtime.settings``, so that every config key has a flag and an
environment variable and none is forgotten when a key is added: ``kafka.features_topic`` is
``--features-topic`` and ``OTSENTRY_KAFKA_FEATURES_TOPIC``; a few keep a short flag (``kafka.bootstrap`` is
``--kafka``, ``kafka.group`` is ``--group``, ``stream.window_s`` is ``--window``). The variables are named by
section, not by command, so one ``EnvironmentFile`` serves the collector and the detector units.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import click

from otsentry.cli.common import UserError, parse_duration
from otsentry.config import load_config
from otsentry.stream.runtime.settings import STREAM_SECTIONS, check_kafka, with_secrets

__all__ = ["COLLECTOR_SKIP", "CORRELATION_TOPICS", "DETECTOR_SKIP", "env_name", "kafka_requested", "setup_logs",
           "stream_options", "stream_params", "stream_settings"]

# Config keys that do not apply to a role (their flags are left out of that command).
CORRELATION_TOPICS = frozenset({"kafka.correlated_topic", "kafka.incidents_topic"})
COLLECTOR_SKIP = frozenset({"kafka.group", "kafka.group_instance_id", "kafka.session_timeout_s",
                            "kafka.auto_offset_reset", "kafka.alerts_topic", "kafka.deadletter_topic",
                            "stream.max_poll_records", "stream.max_buffered_windows", "stream.max_hold_s"}
                           | CORRELATION_TOPICS)
DETECTOR_SKIP = frozenset({"stream.window_s", "stream.source"}) | CORRELATION_TOPICS


def _param(section: str, name: str) -> str:
    return f"{section}__{name}"


def env_name(section: str, name: str) -> str:
    return f"OTSENTRY_{section}_{name}".upper()


def stream_options(skip: Iterable[str] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator adding one option per config key of the stream sections (minus ``skip``: ``section.key``)."""
    skipped = frozenset(skip)

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for section, cls in reversed(list(STREAM_SECTIONS.items())):
            for fld in reversed(fields(cls)):
                if fld.metadata.get("secret") or f"{section}.{fld.name}" in skipped:
                    continue
                f = _option(section, fld)(f)
        return f

    return decorate


def _option(section: str, fld: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    meta = dict(fld.metadata)
    base = fld.name[:-2] if fld.name.endswith("_s") else fld.name  # seconds: --stop-timeout 10s
    meta["duration"] = meta.get("duration") or fld.name.endswith("_s")
    flag = meta.get("flag") or "--" + base.replace("_", "-")
    env = env_name(section, fld.name)
    help_text = f"{meta.get('help', '')} [config {section}.{fld.name}; env {env}; default: {fld.default!r}]"
    name = _param(section, fld.name)
    if isinstance(fld.default, bool):
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None, envvar=env, help=help_text)
    if meta.get("choices"):
        kind: Any = click.Choice([c for c in meta["choices"] if c])
    elif meta.get("duration"):
        kind = str
    elif isinstance(fld.default, int):
        kind = int
    elif isinstance(fld.default, float):
        kind = float
    else:
        kind = str
    metavar = "DURATION" if meta.get("duration") else None
    return click.option(flag, name, type=kind, default=None, envvar=env, help=help_text, metavar=metavar,
                        show_envvar=False)


def stream_settings(config_path: Path | None, params: Mapping[str, Any]):
    """The stream settings: YAML file (if any), overridden by flags/environment variables, secrets from the env."""
    from otsentry.stream.runtime.daemon import StreamSettings

    loaded = load_config(config_path)
    sections = {}
    for section, cls in STREAM_SECTIONS.items():
        changes = {}
        for fld in fields(cls):
            value = params.get(_param(section, fld.name))
            if value is None:
                continue
            if (fld.metadata.get("duration") or fld.name.endswith("_s")) and isinstance(value, str):
                try:
                    value = parse_duration(value)
                except click.BadParameter as exc:
                    raise UserError(f"{section}.{fld.name}: {exc.message}") from None
            changes[fld.name] = value
        sections[section] = replace(loaded[section], **changes)
    kafka = with_secrets(sections["kafka"])
    try:
        check_kafka(kafka)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return StreamSettings(kafka, sections["stream"], sections["daemon"])


def stream_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the stream options out of a command's keyword arguments."""
    return {k: kwargs.pop(k) for k in list(kwargs) if "__" in k}


def kafka_requested(config_path: Path | None, params: Mapping[str, Any]) -> bool:
    """Whether a broker is configured (flag, env var or config file): ``collect`` then publishes windows."""
    if params.get(_param("kafka", "bootstrap")):
        return True
    return bool(load_config(config_path)["kafka"].bootstrap)


def setup_logs(settings: Any) -> None:
    """The daemons' log format and level, as the settings say."""
    from otsentry.stream.runtime.daemon import setup_logging

    setup_logging(settings.daemon.log_format, settings.daemon.log_level)
