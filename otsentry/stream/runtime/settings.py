"""Configuration of the streaming daemons: the ``kafka``, ``stream`` and ``daemon`` sections of the YAML config.

Each field is also a command-line flag and an environment variable (``cli/streamopts.py`` builds both from the
field metadata below), so a systemd unit, a container and a developer's shell configure the same things the
same way. Precedence: flag, then environment variable, then YAML file, then the default.

Secrets (the SASL password, the TLS key password) are read from environment variables only: a config file is
copied, committed and pasted into tickets, an environment file can be root-only (``EnvironmentFile=`` in the
systemd units). They are wrapped in ``Secret`` so that no ``repr``, log line or exception shows them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

__all__ = ["COMPRESSIONS", "DaemonConfig", "KafkaConfig", "LOG_FORMATS", "SASL_MECHANISMS", "SECRET_ENV",
    "SECURITY_PROTOCOLS", "STREAM_SECTIONS", "Secret", "StreamConfig", "check_kafka", "secret_fields", "with_secrets"]

# Environment variables holding secrets; never a YAML key or a command-line flag.
SECRET_ENV = {"sasl_password": "OTSENTRY_KAFKA_SASL_PASSWORD", "ssl_password": "OTSENTRY_KAFKA_SSL_PASSWORD"}
SASL_MECHANISMS = ("", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
COMPRESSIONS = ("auto", "gzip", "lz4", "zstd", "snappy", "none")
LOG_FORMATS = ("text", "kv", "json")


class Secret:
    """A string that never shows itself: ``repr``/``str`` print ``***`` (or nothing when empty)."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that needs it (the Kafka client's options)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "'***'" if self._value else "''"

    __str__ = __repr__


def _opt(default: Any, help: str, *, flag: str | None = None, choices: tuple[str, ...] | None = None,
         duration: bool = False) -> Any:
    """A config field with what its CLI flag needs: help text, flag name, choices, duration parsing."""
    meta = {"help": help, "flag": flag, "choices": choices, "duration": duration}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class KafkaConfig:
    """How to reach the broker and which topics to use (names configurable: tests and tenants need their own)."""

    bootstrap: str = _opt("", "Kafka bootstrap servers, host:port[,host:port...].", flag="--kafka")
    client_id: str = _opt("otsentry", "Client id shown in the broker's logs and quotas.")
    features_topic: str = _opt("otsentry.features", "Topic of the FeatureWindows.")
    alerts_topic: str = _opt("otsentry.alerts", "Topic of the alerts.")
    correlated_topic: str = _opt("otsentry.alerts.correlated", "Topic of the alerts with their incident id "
                                 "(written by `otsentry correlate`).")
    incidents_topic: str = _opt("otsentry.incidents", "Topic of the incidents (written by `otsentry correlate`).")
    deadletter_topic: str = _opt("otsentry.deadletter", "Where unreadable records are copied ('' drops them).")
    group: str = _opt("otsentry-detectors", "Consumer group of the detector workers.", flag="--group")
    group_instance_id: str = _opt("", "Static group membership id: a worker restarted within the session "
                                      "timeout gets its partitions back without a rebalance.")
    session_timeout_s: float = _opt(30.0, "Seconds before the group gives a silent worker's partitions away.")
    partitions: int = _opt(6, "Partitions of topics otsentry creates (existing topics are left as they are).")
    replication_factor: int = _opt(1, "Replication factor of topics otsentry creates.")
    auto_offset_reset: str = _opt("earliest", "Where a new group starts reading.", choices=("earliest", "latest"))
    compression: str = _opt("auto", "Producer compression; auto: zstd, else lz4 if installed, else gzip.",
                            choices=COMPRESSIONS)
    delivery_timeout_s: float = _opt(300.0, "How long the producer retries a record before giving it back to "
                                            "otsentry (which sends it again).")
    security_protocol: str = _opt("PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
                                  choices=SECURITY_PROTOCOLS)
    ssl_cafile: str = _opt("", "CA bundle (PEM) to verify the broker.")
    ssl_certfile: str = _opt("", "Client certificate (PEM) for mutual TLS.")
    ssl_keyfile: str = _opt("", "Client private key (PEM); its password from OTSENTRY_KAFKA_SSL_PASSWORD.")
    ssl_check_hostname: bool = _opt(True, "Check that the broker's certificate names its host.")
    sasl_mechanism: str = _opt("", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (password from "
                                   "OTSENTRY_KAFKA_SASL_PASSWORD).", choices=SASL_MECHANISMS)
    sasl_username: str = _opt("", "SASL user name.")
    sasl_password: Secret = field(default_factory=Secret, metadata={"secret": True})
    ssl_password: Secret = field(default_factory=Secret, metadata={"secret": True})


@dataclass(frozen=True)
class StreamConfig:
    """Windowing, batching and the bounds that keep a daemon's memory flat."""

    window_s: float = _opt(10.0, "Length of the feature windows a collector publishes (e.g. 10s, 1m); "
                                 "a detector uses its model's.", flag="--window", duration=True)
    source: str = _opt("", "Name of this collector in watermark records (default: the host name).")
    max_poll_records: int = _opt(500, "Records a detector takes per poll (one scoring batch at most).")
    max_buffered_windows: int = _opt(50000, "Windows a detector holds for event-time ordering before it pauses "
                                            "the partitions that are ahead.")
    max_hold_s: float = _opt(30.0, "Wall-clock seconds a window waits for the watermarks of the other "
                                   "partitions before it is scored anyway.", duration=True)
    max_in_flight: int = _opt(20000, "Records sent but not yet acknowledged before a producer stops reading.")


@dataclass(frozen=True)
class DaemonConfig:
    """Process behaviour: logs, health/metrics endpoint, shutdown and retry timing."""

    metrics_port: int = _opt(0, "Port of the /healthz and /metrics endpoint (0: off).")
    metrics_host: str = _opt("127.0.0.1", "Address the endpoint listens on (keep it local or firewalled).")
    log_format: str = _opt("text", "text, kv (key=value) or json (one object per line).", choices=LOG_FORMATS)
    log_level: str = _opt("info", "debug, info, warning or error.",
                          choices=("debug", "info", "warning", "error"))
    stop_timeout_s: float = _opt(10.0, "After SIGTERM/SIGINT: flush and commit within this many seconds, "
                                       "then exit anyway.", duration=True)
    backoff_initial_s: float = _opt(0.5, "First retry delay when the broker is unreachable.", duration=True)
    backoff_max_s: float = _opt(30.0, "Longest retry delay (the delay doubles up to this).", duration=True)


STREAM_SECTIONS: dict[str, type] = {"kafka": KafkaConfig, "stream": StreamConfig, "daemon": DaemonConfig}


def secret_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.metadata.get("secret"))


def with_secrets(config: KafkaConfig, environ: Mapping[str, str] | None = None) -> KafkaConfig:
    """The config with its secrets read from the environment (``OTSENTRY_KAFKA_SASL_PASSWORD``...)."""
    env = os.environ if environ is None else environ
    return replace(config, **{name: Secret(env.get(var, "")) for name, var in SECRET_ENV.items()})


def check_kafka(config: KafkaConfig) -> None:
    """Combinations the client would only reject at connect time, rejected at start with the option's name."""
    if not config.bootstrap:
        raise ValueError("no broker: give --kafka HOST:PORT (or kafka.bootstrap in the config, "
                         "or OTSENTRY_KAFKA_BOOTSTRAP)")
    uses_sasl = config.security_protocol.startswith("SASL_")
    if uses_sasl and not config.sasl_mechanism:
        raise ValueError(f"kafka.security_protocol {config.security_protocol} needs kafka.sasl_mechanism")
    if config.sasl_mechanism and not uses_sasl:
        raise ValueError(f"kafka.sasl_mechanism {config.sasl_mechanism} needs security_protocol SASL_PLAINTEXT "
                         "or SASL_SSL")
    if uses_sasl and not (config.sasl_username and config.sasl_password):
        raise ValueError(f"SASL needs kafka.sasl_username and the password in {SECRET_ENV['sasl_password']}")
    for name in ("partitions", "replication_factor"):
        if getattr(config, name) < 1:
            raise ValueError(f"kafka.{name} must be at least 1")
