"""The stages as Kafka daemons, by role (see DESIGN.md and the README's "Layers").

* ``transport``: the transport interface (publisher, group consumer) and the in-memory broker tests use;
  ``kafka/``: its Kafka implementation (``client``), the stdlib wire client (``wire``) and the SASL probe (``sasl``);
* ``codec``: the wire format of windows, watermarks, alerts and incidents;
* ``delivery/``: the outbox (send, acknowledge, retry) and event-time ordering of windows from many partitions;
* ``runtime/``: daemon lifecycle (signals, bounded stop, main loop), retry with backoff, the one consumer loop
  (``membership``), metrics and the settings;
* one module per stage, each with its entry point: ``publish`` (``run_collector``), ``detect`` (``run_detector``),
  ``correlate`` (``run_correlator``), ``index`` (``run_indexer``).
"""

__all__ = ["codec", "correlate", "delivery", "detect", "index", "kafka", "publish", "runtime", "transport"]
