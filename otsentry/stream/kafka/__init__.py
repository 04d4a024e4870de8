"""The Kafka transport (kafka-python, imported lazily: it is only needed with --kafka) and its SASL probe."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from otsentry.stream.runtime.settings import KafkaConfig
from otsentry.stream.transport import Consumer, Publisher

__all__ = ["kafka_transport"]


def kafka_transport(kafka: KafkaConfig) -> tuple[Callable[[], Publisher], Callable[[int], Consumer],
                                                  Callable[[Sequence[str]], Any]]:
    """Factories of the Kafka transport (imported lazily: kafka-python is only needed with --kafka)."""
    from otsentry.stream.kafka.client import KafkaGroupConsumer, KafkaPublisher, ensure_topics

    return (lambda: KafkaPublisher(kafka),
            lambda max_poll: KafkaGroupConsumer(kafka, [kafka.features_topic], max_poll),
            lambda topics: ensure_topics(kafka, topics))
