"""The real external services of otsentry's tests and development (``make services``): Apache Kafka and
Elasticsearch on 127.0.0.1, run with ``python3 -m services.kafka|services.elasticsearch start|stop|status``.

Standard library only (they run before the virtualenv exists); ``common`` holds what both share.
"""

__all__ = ["common", "elasticsearch", "kafka"]
