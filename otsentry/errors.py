"""One exception hierarchy: every error otsentry raises on purpose is an ``OtsentryError``.

Its message is one line a user can act on; the CLI turns any that reaches it into ``Error: <message>`` with exit
code 2 (``otsentry.cli``), so no command needs its own mapping. Classes keep their builtin base too
(``ValueError``, ``RuntimeError``) where callers catch them by it.

* ``InputError``: a file, option or record that cannot be used as given (captures, configs, model bundles,
  labels, scenario specs, records from a topic, detector parameters);
* ``ServiceError``: an external service failed or refused (Kafka, Elasticsearch, Kibana);
* ``OtsentryError`` itself for the rest (a stop requested while waiting, a model used before it was fitted, a
  worker process that died).
"""

from __future__ import annotations

__all__ = ["InputError", "OtsentryError", "ServiceError"]


class OtsentryError(Exception):
    """Base of the errors otsentry raises on purpose; ``str()`` is a one-line message for the user."""


class InputError(OtsentryError):
    """Input that cannot be used as given: says which file, option or record, and what was wrong."""


class ServiceError(OtsentryError):
    """An external service (Kafka, Elasticsearch, Kibana) failed or refused: says which, and what to check."""
