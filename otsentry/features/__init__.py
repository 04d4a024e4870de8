"""otsentry.features stage (see DESIGN.md): tumbling windows over collector output, with a fixed feature schema.

``Windower`` turns collector batches into ``FeatureWindow``s as windows close; ``windows_from_capture`` wires a
capture file through the collector and the windower; ``to_matrix`` gives the detectors their input. Feature names
and semantics: ``otsentry.contracts.schema``.
"""

from otsentry.contracts.schema import FEATURE_SCHEMA_VERSION, FLOW_FEATURES, PAIR_FEATURES
from otsentry.features.flowwin import FlowWindowObserver
from otsentry.features.from_capture import windows_from_capture
from otsentry.features.windows import Windower, WindowerStats, to_matrix

__all__ = [
    "FLOW_FEATURES",
    "PAIR_FEATURES",
    "FEATURE_SCHEMA_VERSION",
    "FlowWindowObserver",
    "Windower",
    "WindowerStats",
    "to_matrix",
    "windows_from_capture",
]
