"""The Kafka transport (kafka-python): producer and group consumer behind ``transport``'s protocols, topic set-up.

Producer settings and why: ``acks=all`` and the idempotent producer (kafka-python >= 2.1 implements KIP-98
idempotence and enables it by default since KIP-679; Kafka 4 brokers support it), so the producer's own retries
neither lose nor duplicate a record; compression on (zstd, else lz4 when their libraries are installed, else
gzip from the standard library); 256 KiB batches (a collector flushes after each group of windows anyway, so
batching costs no latency); a long ``delivery_timeout_s`` so a broker restart is ridden out inside the
client, with ``outbox.Outbox`` sending again whatever still fails.

Consumer settings: no auto-commit (the worker commits after the alerts are acknowledged), ``close`` without
commit, and rebalances observed by comparing ``assignment()`` after each poll rather than from kafka-python's
listener callbacks (they run on its IO loop, where a blocking commit would stall heartbeats).

kafka-python is imported here only, so ``otsentry run`` never needs it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Iterable, Iterator

from otsentry.stream.runtime.settings import KafkaConfig
from otsentry.stream.transport import AuthenticationFailed, Delivery, Headers, Message, TopicPartition, TransportError

__all__ = ["KafkaGroupConsumer", "KafkaPublisher", "client_options", "compression_codec", "ensure_topics", "redacted"]

log = logging.getLogger("otsentry.stream")


def compression_codec(name: str) -> str | None:
    """The codec to use: ``auto`` picks zstd, then lz4 (if their libraries are installed), then gzip."""
    if name == "none":
        return None
    if name != "auto":
        return name
    from kafka import codec

    if codec.has_zstd():
        return "zstd"
    if codec.has_lz4():
        return "lz4"
    return "gzip"


def client_options(cfg: KafkaConfig) -> dict[str, Any]:
    """Connection options shared by producer, consumer and admin client (TLS and SASL included)."""
    opts: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in cfg.bootstrap.split(",") if s.strip()],
        "client_id": cfg.client_id,
        "security_protocol": cfg.security_protocol,
        "reconnect_backoff_max_ms": 10_000,
    }
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        opts["ssl_check_hostname"] = cfg.ssl_check_hostname
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(cfg, name):
                opts[name] = getattr(cfg, name)
        if cfg.ssl_password:
            opts["ssl_password"] = cfg.ssl_password.reveal()
    if cfg.sasl_mechanism:
        opts["sasl_mechanism"] = cfg.sasl_mechanism
        opts["sasl_plain_username"] = cfg.sasl_username
        opts["sasl_plain_password"] = cfg.sasl_password.reveal()
    return opts


def redacted(opts: dict[str, Any]) -> dict[str, Any]:
    """Options safe to log: passwords replaced."""
    return {k: ("***" if "password" in k and v else v) for k, v in opts.items()}


def _errors():
    from kafka import errors

    return errors


def _login_refusal(cfg: KafkaConfig) -> str | None:
    """Why the broker refuses our SASL login, or None (accepted, no SASL, or nothing answers: a broker outage)."""
    import ssl

    from otsentry.stream.kafka.sasl import refused_login

    if not cfg.sasl_mechanism:
        return None
    tls = None
    if cfg.security_protocol == "SASL_SSL":
        tls = ssl.create_default_context(cafile=cfg.ssl_cafile or None)
        tls.check_hostname = cfg.ssl_check_hostname
        if cfg.ssl_certfile:
            tls.load_cert_chain(cfg.ssl_certfile, cfg.ssl_keyfile or None,
                                cfg.ssl_password.reveal() if cfg.ssl_password else None)
    for server in (s.strip() for s in cfg.bootstrap.split(",") if s.strip()):
        try:
            return refused_login(server, cfg.sasl_mechanism, cfg.sasl_username, cfg.sasl_password.reveal(),
                                 use_tls=tls is not None, tls=tls)
        except (OSError, ssl.SSLError):
            continue
    return None


@contextlib.contextmanager
def _refused_login_is_fatal(cfg: KafkaConfig) -> Iterator[None]:
    """A client that could not start: ``AuthenticationFailed`` if the broker refuses the login, else TransportError.

    kafka-python 3 reports a refused SASL login as ``Unable to bootstrap``, like a broker that is down (see
    ``sasl_probe``); without telling them apart a daemon would retry a wrong password with backoff forever.
    """
    try:
        yield
    except _errors().KafkaError as exc:
        reason = _login_refusal(cfg)
        if reason is not None:
            raise AuthenticationFailed(
                f"{cfg.bootstrap} refused the {cfg.sasl_mechanism} login as {cfg.sasl_username!r}: {reason}; "
                "check the user name and OTSENTRY_KAFKA_SASL_PASSWORD") from None
        raise TransportError(f"cannot reach {cfg.bootstrap}: {type(exc).__name__}: {exc}") from None


class _KafkaDelivery:
    __slots__ = ("_future",)

    def __init__(self, future: Any) -> None:
        self._future = future

    def done(self) -> bool:
        return bool(self._future.is_done)

    def error(self) -> BaseException | None:
        return self._future.exception if self._future.failed() else None


class KafkaPublisher:
    """``transport.Publisher`` over ``kafka.KafkaProducer``; the constructor raises TransportError if no broker."""

    def __init__(self, cfg: KafkaConfig, *, linger_ms: int = 20) -> None:
        from kafka import KafkaProducer

        self.codec = compression_codec(cfg.compression)
        with _refused_login_is_fatal(cfg):
            self._producer = KafkaProducer(
                **client_options(cfg), acks="all", enable_idempotence=True, compression_type=self.codec,
                linger_ms=linger_ms, batch_size=256 << 10, delivery_timeout_ms=int(cfg.delivery_timeout_s * 1000),
                request_timeout_ms=min(30_000, int(cfg.delivery_timeout_s * 1000)), max_block_ms=10_000,
                bootstrap_timeout_ms=10_000,
            )
        self._partitions: dict[str, list[int]] = {}
        self._reach = _Reachability(cfg.bootstrap)
        self.closed = False

    def partitions(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            deadline = time.monotonic() + 10.0
            while True:
                try:
                    parts = self._producer.partitions_for(topic)
                except _errors().KafkaError as exc:
                    raise TransportError(f"no metadata for {topic}: {exc}") from None
                if parts or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            if not parts:
                raise TransportError(f"topic {topic} has no partitions (does it exist?)")
            self._partitions[topic] = sorted(parts)
        return self._partitions[topic]

    def publish(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None,
                headers: Headers = ()) -> Delivery:
        try:
            future = self._producer.send(topic, value=value, key=key, partition=partition,
                                         headers=list(headers) or None)
        except _errors().KafkaError as exc:  # buffer full for max_block_ms, no metadata: the outbox retries
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        return _KafkaDelivery(future)

    def flush(self, timeout_s: float) -> bool:
        try:
            self._producer.flush(timeout=timeout_s)
        except _errors().KafkaTimeoutError:
            return False
        return True

    def connected(self) -> bool | None:
        return self._reach.check(self._producer.metrics())

    def close(self, timeout_s: float = 5.0) -> None:
        if self.closed:
            return
        self.closed = True
        self._producer.close(timeout=timeout_s)


class KafkaGroupConsumer:
    """``transport.Consumer`` over ``kafka.KafkaConsumer`` subscribed to topics as a group member."""

    def __init__(self, cfg: KafkaConfig, topics: Iterable[str], max_poll_records: int = 500) -> None:
        from kafka import KafkaConsumer

        extra: dict[str, Any] = {}
        if cfg.group_instance_id:
            extra["group_instance_id"] = cfg.group_instance_id
        session_ms = int(cfg.session_timeout_s * 1000)
        with _refused_login_is_fatal(cfg):
            self._consumer = KafkaConsumer(
                **client_options(cfg), group_id=cfg.group, enable_auto_commit=False,
                auto_offset_reset=cfg.auto_offset_reset, max_poll_records=max_poll_records,
                session_timeout_ms=session_ms, heartbeat_interval_ms=max(1000, session_ms // 4),
                bootstrap_timeout_ms=10_000, **extra,
            )
            self._consumer.subscribe(list(topics))
        self._next: dict[TopicPartition, int] = {}
        self._reach = _Reachability(cfg.bootstrap)
        self.closed = False

    def poll(self, timeout_s: float, max_records: int) -> list[Message]:
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except _errors().KafkaError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        out = [Message(r.topic, r.partition, r.offset, r.key, r.value) for recs in batches.values() for r in recs]
        for m in out:
            self._next[(m.topic, m.partition)] = m.offset + 1
        return out

    def commit(self, offsets: dict[TopicPartition, tuple[int, str]]) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition as KTP

        try:
            self._consumer.commit({KTP(t, p): OffsetAndMetadata(o, m, -1) for (t, p), (o, m) in offsets.items()},
                                  timeout_ms=10_000)
        except _errors().KafkaError as exc:
            raise TransportError(f"commit failed: {type(exc).__name__}: {exc}") from None

    def committed(self, tp: TopicPartition) -> tuple[int, str] | None:
        from kafka.structs import TopicPartition as KTP

        try:
            c = self._consumer.committed(KTP(*tp), metadata=True, timeout_ms=10_000)
        except _errors().KafkaError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from None
        return None if c is None or c.offset is None or c.offset < 0 else (c.offset, c.metadata or "")

    def assignment(self) -> set[TopicPartition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        from kafka.structs import TopicPartition as KTP

        self._consumer.pause(*(KTP(*tp) for tp in tps))

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        from kafka.structs import TopicPartition as KTP

        self._consumer.resume(*(KTP(*tp) for tp in tps))

    def lag(self) -> int | None:
        """Records not read yet in the assigned partitions: high watermark minus the next offset to read."""
        total, known = 0, False
        for ktp in self._consumer.assignment():
            high = self._consumer.highwater(ktp)
            pos = self._next.get((ktp.topic, ktp.partition))
            if high is not None and pos is not None:
                total += max(0, high - pos)
                known = True
        return total if known else None

    def connected(self) -> bool | None:
        return self._reach.check(self._consumer.metrics())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._consumer.close(autocommit=False, timeout_ms=5_000)


def _connection_count(metrics: dict[str, dict[str, float]]) -> float | None:
    for group, values in metrics.items():
        if group.endswith("-metrics") and "connection-count" in values:
            return values["connection-count"]
    return None


class _Reachability:
    """Whether the broker is reachable, for the state log and ``/healthz``.

    The client's ``connection-count`` metric drops to 0 in normal operation too (a rebalance, idle connections
    closed), so 0 alone is not "down": only when it stays 0 for ``grace_s`` and a TCP connection to every
    bootstrap server fails (checked at most every ``grace_s``) is the broker reported unreachable.
    """

    def __init__(self, bootstrap: str, grace_s: float = 5.0) -> None:
        self.servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
        self.grace_s = grace_s
        self._zero_since: float | None = None
        self._probed_at = 0.0
        self._probe: bool | None = None

    def check(self, metrics: dict[str, dict[str, float]]) -> bool | None:
        count = _connection_count(metrics)
        if count is None or count > 0:
            self._zero_since = None
            return None if count is None else True
        now = time.monotonic()
        if self._zero_since is None:
            self._zero_since = now
        if now - self._zero_since < self.grace_s:
            return None
        if now - self._probed_at >= self.grace_s:
            self._probed_at, self._probe = now, any(_tcp_open(s) for s in self.servers)
        return self._probe


def _tcp_open(server: str, timeout_s: float = 1.0) -> bool:
    import socket

    host, _, port = server.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def ensure_topics(cfg: KafkaConfig, topics: Iterable[str]) -> list[str]:
    """Create the topics that do not exist yet (``kafka.partitions``, ``kafka.replication_factor``).

    Brokers in production often disable auto-creation, and an auto-created features topic would get the broker's
    default partition count rather than the one the operator chose. Returns the names created.
    """
    from kafka.admin import KafkaAdminClient, NewTopic

    errors = _errors()
    with _refused_login_is_fatal(cfg):
        admin = KafkaAdminClient(**client_options(cfg), bootstrap_timeout_ms=10_000)
    try:
        wanted = [t for t in dict.fromkeys(topics) if t]
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        created = []
        for topic in missing:
            try:
                admin.create_topics([NewTopic(topic, cfg.partitions, cfg.replication_factor)])
                created.append(topic)
            except errors.TopicAlreadyExistsError:
                pass
            except errors.KafkaError as exc:
                raise TransportError(f"cannot create topic {topic}: {type(exc).__name__}: {exc}") from None
        if created:
            log.info("created topic(s) %s with %d partition(s)", ", ".join(created), cfg.partitions)
        return created
    finally:
        admin.close()
