"""The feature schema: fixed, named, versioned. Models and baselines are tied to FEATURE_SCHEMA_VERSION.

Three kinds of windows share the record type:

* ``pair`` windows: one per (window, client ip, server ip, unit id) with Modbus traffic;
* ``flow`` windows: one per (window, originator ip, responder ip, responder port, transport) for every conversation,
  Modbus or not, so a new talker or a new service on the OT segment is visible;
* ``sensor`` windows: what the sensor could not see or saw being forged, only in windows where something
  happened: per (window, sender, receiver, receiver port, transport) for evasion evidence and decoding trouble of
  one stream, and per window with empty addresses for packets the capture lost (kernel / interface drops).
  They need no learning: any non-zero value is reported (``otsentry.detectors.sensor``).

Adding a feature means a new schema version: a model bundle trained on another version is refused.

How each feature is computed (``otsentry.features``; a transaction is one ModbusBatch row, in the window of its
start time; "absent" features are ``ABSENT`` = -1, other features of an empty set are 0)::

  requests / responses / transactions   rows with a request / with a response / all rows
  fc_N, fc_other, fc_distinct           rows per function code (exception responses count under the cleared code)
  exceptions, exc_N, exc_other          rows whose response is an exception, per exception code
  reads / writes / write_ratio          rows with a code in READ_CODES / WRITE_CODES; writes / (reads + writes)
  diag_restart / _listen_only / _other  FC 8 rows with sub-function 1 / 4 / any other
  addr_min / addr_max                   over rows with a start address: lowest start; highest last address
                                        (start + quantity - 1 for RANGE_CODES, else the start); absent if none
  addr_span / addr_distinct             addr_max - addr_min + 1 (0 if none); distinct start addresses
  write_addr_min / write_addr_max       the same over WRITE_ADDRESS_CODES rows (absent if none)
  quantity_mean / quantity_max          over rows with a quantity (request's, else response's)
  interarrival_mean_s / _std_s / _cv    gaps between consecutive request start times of the pair in the window
                                        (population std; cv = std / mean); 0 with fewer than 2 requests
  latency_mean_ms / _p95_ms / _max_ms   response ts - request ts of answered rows; p95 by nearest rank
  unanswered / orphan_responses         rows flagged unanswered / orphan_response by the collector's pairing
  malformed                             rows flagged bad_protocol_id, length_mismatch, malformed_pdu or truncated
  values_count                          register values read: non-exception answered FC 3/4/23 with an address
  value_min / value_max / value_range   over those values (absent if none; range 0)
  value_change_rate                     changed / compared, a value compared with the same position of the previous
                                        read of the same block (see otsentry.features.values); 0 if none compared
  bit_change_rate                       the same for FC 1/2 reads (bits trimmed to the quantity asked)
  values_compared                       register values that had a previous read to compare with (the
                                        denominator of value_change_rate)
  replayed_reads                        FC 3/4/23 reads whose values changed since the previous read of the block
                                        but repeat an older read of it exactly (within the value state's TTL)
  write_value_min / write_value_max     values written by FC 5/6/15/16 requests (absent if none)
  tcp_syn / tcp_rst                     packets with SYN (SYN/ACK too) / RST flag   } over the TCP connections from
  tcp_retransmissions                   data segments bringing no new bytes         } the client to a Modbus port
  tcp_connections                       distinct connections (5-tuples) seen        } of the server in the window:
  tcp_packets / tcp_bytes               packets / bytes on the wire, both ways      } per (client, server), the
                                                                                    } same on every unit id
  flow: packets, bytes (+ _orig/_resp)  per direction, wire length; connections = distinct 5-tuples
  flow: tcp_syn / tcp_rst / tcp_fin     packets with the flag; retransmissions as above
  flow: duration_s                      last - first packet of the window's conversations; modbus = TCP to a
                                        Modbus server port
  sensor: kernel_drops / interface_drops  packets the capture ring / the NIC dropped (live capture)
  sensor: overlap_conflicts             TCP segments overlapping earlier bytes of the stream with other content
  sensor: fragment_overlap_conflicts    IP fragments overlapping earlier fragments with other content
  sensor: tiny_fragments                non-last IP fragments under DefragLimits.tiny_bytes
  sensor: gap_bytes                     sequence space of the stream never seen (holes given up)
  sensor: undecoded_bytes               bytes on a Modbus port that could not be decoded as Modbus/TCP, noted when
                                        a stream keeps sending them without one ADU (a stalled decoder)
"""

from __future__ import annotations

__all__ = ["ABSENT", "BIT_READ_CODES", "DIAG_LISTEN_ONLY", "DIAG_RESTART", "FEATURE_SCHEMA_VERSION", "FLOW_FEATURES",
    "OT_FEATURES", "OT_SCHEMA_VERSION", "PAIR_FEATURES", "RANGE_CODES", "READ_CODES", "REGISTER_READ_CODES", "SENSOR_FEATURES",
    "TRACKED_EXCEPTION_CODES", "TRACKED_FUNCTION_CODES", "WRITE_ADDRESS_CODES", "WRITE_CODES", "WRITE_VALUE_CODES"]

FEATURE_SCHEMA_VERSION = "pair-flow-sensor-v4"  # v4: sensor windows; v3: values_compared, replayed_reads; v2: tcp_packets/bytes

# Function codes with a column of their own; anything else counts in fc_other.
TRACKED_FUNCTION_CODES = (1, 2, 3, 4, 5, 6, 7, 8, 11, 15, 16, 17, 20, 21, 22, 23, 24, 43)
TRACKED_EXCEPTION_CODES = (1, 2, 3, 4, 5, 6, 10, 11)
READ_CODES = frozenset({1, 2, 3, 4, 7, 11, 12, 17, 20, 24})
WRITE_CODES = frozenset({5, 6, 15, 16, 21, 22, 23})
# Codes whose (start address, quantity) name a range of addressed items: addr_max is the range's last address.
RANGE_CODES = frozenset({1, 2, 3, 4, 15, 16, 23})
# Codes whose start address is the one written (FC 23's decoded address is its read address, so it is left out).
WRITE_ADDRESS_CODES = frozenset({5, 6, 15, 16, 22})
# Codes whose values are what a client wrote to coils/registers (write_value_min/max).
WRITE_VALUE_CODES = frozenset({5, 6, 15, 16})
# Read codes whose response values feed the register statistics (value_*) and the bit change rate.
REGISTER_READ_CODES = frozenset({3, 4, 23})
BIT_READ_CODES = frozenset({1, 2})
DIAG_RESTART, DIAG_LISTEN_ONLY = 1, 4  # FC 8 sub-functions 1 (restart communications) and 4 (force listen-only)

# Value of addr_min/max, write_addr_min/max, value_min/max and write_value_min/max when the window has nothing to
# compute them from: addresses and register values are >= 0, so -1 can never be a real value.
ABSENT = -1.0

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
    "value_change_rate",  # fraction of read register values that differ from the previous read of the same address
    "bit_change_rate",  # the same for coils and discrete inputs (FC 1/2)
    "values_compared",  # register values compared with a previous read (value_change_rate's denominator)
    "replayed_reads",  # register reads that changed, back to an exact earlier state of the block (played back)
    "write_value_min",
    "write_value_max",
    "tcp_syn",
    "tcp_rst",
    "tcp_retransmissions",
    "tcp_connections",
    "tcp_packets",
    "tcp_bytes",
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

SENSOR_FEATURES: tuple[str, ...] = (
    "kernel_drops",
    "interface_drops",
    "overlap_conflicts",
    "fragment_overlap_conflicts",
    "tiny_fragments",
    "gap_bytes",
    "undecoded_bytes",
)


# ``ot`` windows: one per (window, client ip, server ip, station, server port, "transport/protocol") with operations
# of DNP3, IEC 104, S7comm, S7comm-plus or EtherNet/IP (``otsentry.features.otwin``); ``unit_id`` is the station
# (-1 when the protocol names none). Their own schema version: adding them left the pair/flow/sensor schema as it was.
#
#   operations                        operation events (requests, answered or not) starting in the window
#   read ... other                    operations per class (``contracts.events.OPERATION_CLASSES``)
#   errors / unanswered / malformed   answers with an error status / requests never answered / malformed ones
#   distinct_operations / _objects    distinct operation names / addressed objects
#   latency_mean_ms / latency_max_ms  over answered operations (0 when none)
#   restart ... configuration         operations per effect (``contracts.events.OPERATION_EFFECTS``)
OT_SCHEMA_VERSION = "ot-v1"
OT_FEATURES = (
    "operations", "read", "write", "control", "diagnostic", "program", "time", "file", "other", "errors",
    "unanswered", "malformed", "distinct_operations", "distinct_objects", "latency_mean_ms", "latency_max_ms",
    "restart", "stop", "start", "reporting_disabled", "time_set", "program_download", "program_upload",
    "program_delete", "configuration",
)
