"""The feature schema: fixed, named, versioned. Models and baselines are tied to SCHEMA_VERSION.

Two kinds of windows share the record type:

* ``pair`` windows: one per (window, client ip, server ip, unit id) with Modbus traffic;
* ``flow`` windows: one per (window, originator ip, responder ip, responder port, transport) for every conversation,
  Modbus or not, so a new talker or a new service on the OT segment is visible.

Adding a feature means a new schema version: a model bundle trained on another version is refused.
"""

from __future__ import annotations

SCHEMA_VERSION = "pair-flow-v1"

# Function codes with a column of their own; anything else counts in fc_other.
TRACKED_FUNCTION_CODES = (1, 2, 3, 4, 5, 6, 7, 8, 11, 15, 16, 17, 20, 21, 22, 23, 24, 43)
TRACKED_EXCEPTION_CODES = (1, 2, 3, 4, 5, 6, 10, 11)
READ_CODES = frozenset({1, 2, 3, 4, 7, 11, 12, 17, 20, 24})
WRITE_CODES = frozenset({5, 6, 15, 16, 21, 22, 23})

PAIR_FEATURES: tuple[str, ...] = (
    "requests",
    "responses",
    "transactions",
    *(f"fc_{c}" for c in TRACKED_FUNCTION_CODES),
    "fc_other",
    "fc_distinct",
    "exceptions",
    *(f"exc_{c}" for c in TRACKED_EXCEPTION_CODES),
    "exc_other",
    "reads",
    "writes",
    "write_ratio",
    "diag_restart",  # FC 8 sub-function 1 (restart communications)
    "diag_listen_only",  # FC 8 sub-function 4 (force listen-only mode)
    "diag_other",
    "addr_distinct",
    "addr_min",
    "addr_max",
    "addr_span",
    "write_addr_min",
    "write_addr_max",
    "quantity_mean",
    "quantity_max",
    "interarrival_mean_s",
    "interarrival_std_s",
    "interarrival_cv",
    "latency_mean_ms",
    "latency_p95_ms",
    "latency_max_ms",
    "unanswered",
    "orphan_responses",
    "malformed",
    "values_count",
    "value_min",
    "value_max",
    "value_range",
    "value_change_rate",  # fraction of read values that differ from the previous read of the same address
    "write_value_min",
    "write_value_max",
    "tcp_syn",
    "tcp_rst",
    "tcp_retransmissions",
    "tcp_connections",
)

FLOW_FEATURES: tuple[str, ...] = (
    "packets",
    "bytes",
    "packets_orig",
    "packets_resp",
    "bytes_orig",
    "bytes_resp",
    "connections",
    "tcp_syn",
    "tcp_rst",
    "tcp_fin",
    "retransmissions",
    "duration_s",
    "modbus",  # 1 when the responder port is a Modbus server port
)
