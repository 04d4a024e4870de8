"""ICSNPP-ENIP's ``enip.log``, ``cip.log`` and ``cip_identity.log`` from the collector's EtherNet/IP messages
(``CollectorConfig(keep_messages=True)``): one enip.log row per encapsulation message in either direction, a
cip.log row per CIP message it carries (and per service of a Multiple Service Packet), a cip_identity.log row per
identity item of a ListIdentity reply, a cip_io.log row per class 0/1 I/O datagram (UDP 2222). The field values
come from ``zeek_enip_rows``; ``ts`` is the message's time.
"""

from __future__ import annotations

from typing import IO, Iterable

from otsentry.collectors.ics.message import KeptMessage
from otsentry.collectors.zeek_conn import close_logs, conn_prefix, open_logs
from otsentry.collectors.zeek_enip_rows import cip_io_row, cip_rows, enip_row, identity_rows

__all__ = ["ZeekEnipWriter"]

LOGS = {
    "enip": (("enip_command_code", "enip_command", "length", "session_handle", "enip_status", "sender_context",
              "options"), ("string", "string", "count", "string", "string", "string", "string")),
    "cip": (("cip_sequence_count", "direction", "cip_service_code", "cip_service", "cip_status_code", "cip_status",
             "cip_extended_status_code", "cip_extended_status", "class_id", "class_name", "instance_id",
             "attribute_id"), ("count",) + ("string",) * 11),
    "cip_io": (("connection_id", "sequence_number", "data_length", "data"), ("string", "count", "count", "string")),
    "cip_identity": (("encapsulation_version", "socket_address", "socket_port", "vendor_id", "vendor_name",
                      "device_type_id", "device_type_name", "product_code", "revision", "device_status",
                      "serial_number", "product_name", "device_state"),
                     ("count", "addr", "port", "count", "string", "count", "string", "count", "string", "string",
                      "string", "string", "string")),
}


class ZeekEnipWriter:
    """Writes the logs to the streams given by log name (``enip``, ``cip``, ``cip_identity``, ``cip_io``)."""

    def __init__(self, outs: dict[str, IO[str]]) -> None:
        self.outs = outs
        open_logs(outs, LOGS)

    def write(self, messages: Iterable[KeptMessage]) -> None:
        for kept in messages:
            if kept.message.protocol == "cip_io":
                row = cip_io_row(kept.unit)
                self._write("cip_io", conn_prefix(kept), [row] if row is not None else [])
                continue
            if kept.message.protocol != "enip":
                continue
            row = enip_row(kept.unit)
            if row is None:
                continue
            prefix = conn_prefix(kept)
            self._write("enip", prefix, [row])
            self._write("cip", prefix, cip_rows(kept.unit))
            if not kept.from_client:
                self._write("cip_identity", prefix, identity_rows(kept.unit))

    def _write(self, name: str, prefix: str, rows: list[tuple[str, ...]]) -> None:
        out = self.outs.get(name)
        if out is not None:
            for row in rows:
                out.write(prefix + "\t".join(row) + "\n")

    def close(self) -> None:
        close_logs(self.outs)
