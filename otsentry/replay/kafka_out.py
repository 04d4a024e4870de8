"""``otsentry replay run --kafka``: the replay's windows into the features topic, its alerts into the alerts topic.

Windows go out through the collector's ``WindowPublisher`` (start watermark, each group acknowledged before its
watermark, a final watermark at the end), so the topic holds what ``otsentry collect pcap --kafka`` would publish
and ``otsentry detect --kafka`` workers can score it. They are the very windows the in-process replay scores, teed
off as it takes them, so they reach the topic at the replay's pace. Alerts are encoded as the detector workers do
(``codec.encode_alert``, key = alert id), so the same consumers read both.

Unlike the daemons, a replay does not wait for an absent broker: the first connection must succeed (else
``TransportError``); once connected, the ``Outbox`` rides out a broker restart as it does for the daemons.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from otsentry.records import Alert, FeatureWindow
from otsentry.stream.codec import encode_alert
from otsentry.stream.delivery.outbox import Outbox
from otsentry.stream.publish import WindowPublisher, default_source
from otsentry.stream.runtime.settings import KafkaConfig
from otsentry.stream.transport import Publisher

__all__ = ["KafkaReplayOutput", "KafkaReplayStats"]


@dataclass
class KafkaReplayStats:
    windows: int = 0
    alerts: int = 0
    finished: bool = False


class KafkaReplayOutput:
    """Publishes a replay to Kafka: ``windows`` for each group the pipeline takes, ``alert`` for each alert."""

    def __init__(self, kafka: KafkaConfig, scenario: str, *, max_in_flight: int = 20000, stop_timeout_s: float = 10.0,
                 make_publisher: Callable[[], Publisher] | None = None,
                 ensure: Callable[[Sequence[str]], object] | None = None) -> None:
        if make_publisher is None:
            from otsentry.stream.kafka import kafka_transport

            make_publisher, _, ensure = kafka_transport(kafka)
        self.kafka = kafka
        self.stop_timeout_s = stop_timeout_s
        self.stats = KafkaReplayStats()
        if ensure is not None:
            ensure([t for t in (kafka.features_topic, kafka.alerts_topic) if t])
        self.publisher = make_publisher()
        self.outbox = Outbox(self.publisher, max_in_flight=max_in_flight)
        self.windows_out = WindowPublisher(self.outbox, kafka.features_topic, default_source(f"replay/{scenario}"))
        try:
            self.windows_out.start()
        except BaseException:
            self.publisher.close(0.0)
            raise

    def windows(self, group: list[FeatureWindow]) -> None:
        """One group of closed windows; returns once the broker acknowledged it (its watermark is queued)."""
        self.windows_out.publish(group)
        self.stats.windows = self.windows_out.stats.windows

    def alert(self, alert: Alert) -> None:
        """Queue one alert (acknowledged by the next group's flush, or at ``close``); '' alerts topic: none."""
        if self.kafka.alerts_topic:
            self.outbox.send(self.kafka.alerts_topic, encode_alert(alert), key=alert.id.encode())
            self.stats.alerts += 1

    def close(self, finished: bool) -> bool:
        """Final watermark if the replay ``finished``, then wait (at most ``stop_timeout_s``) for every
        acknowledgement; False if some records were not acknowledged in time."""
        deadline = time.monotonic() + self.stop_timeout_s
        try:
            if finished:
                ok = self.windows_out.finish(deadline)
                self.stats.finished = ok
            else:
                ok = self.outbox.flush(deadline)
        finally:
            self.publisher.close(max(0.0, deadline - time.monotonic()))
        return ok
