"""The bottom layer: what every stage agrees on, importing nothing else of otsentry.

* ``schema``: the feature schema (names, meanings, version) shared by features, detectors and bundles;
* ``flags``: event flag names and their bit masks in the collector's columns;
* ``network``: TCP flag bits and transport names;
* ``windows``: identity, partition key and order of feature windows and alerts;
* ``events``: the protocol-independent operation event every OT decoder produces;
* ``attack``: the ATT&CK for ICS techniques and tactics that rules, alerts and incidents name.

Records (``otsentry.records``) sit beside this layer and may import it; nothing here imports them.
"""

__all__ = ["attack", "events", "flags", "network", "schema", "windows"]
