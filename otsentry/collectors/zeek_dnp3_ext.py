"""ICSNPP-DNP3's ``dnp3_control.log`` and ``dnp3_objects.log`` from the collector's DNP3 messages
(``CollectorConfig(keep_messages=True)``): a control row per control relay output (or pattern control) block of a
request or response, an object row per object header of a READ request or a RESPONSE, as ``zeek_dnp3_rows``
reads them from the message's application fragment; ``ts`` is the message's time."""

from __future__ import annotations

from typing import IO, Iterable

from otsentry.collectors.ics.message import KeptMessage
from otsentry.collectors.zeek_conn import close_logs, conn_prefix, open_logs
from otsentry.collectors.zeek_dnp3_rows import dnp3_extended_rows

__all__ = ["ZeekDnp3ExtendedWriter"]

LOGS = {
    "dnp3_control": (("block_type", "function_code", "index_number", "trip_control_code", "operation_type",
                      "clear_bit", "execute_count", "on_time", "off_time", "status_code"),
                     ("string", "string", "count", "string", "string", "bool", "count", "count", "count", "string")),
    "dnp3_objects": (("function_code", "object_type", "object_count", "range_low", "range_high"),
                     ("string", "string", "count", "count", "count")),
}


class ZeekDnp3ExtendedWriter:
    """Writes the two logs to the streams given by log name (``dnp3_control``, ``dnp3_objects``)."""

    def __init__(self, outs: dict[str, IO[str]]) -> None:
        self.outs = outs
        open_logs(outs, LOGS)

    def write(self, messages: Iterable[KeptMessage]) -> None:
        for kept in messages:
            if kept.message.protocol != "dnp3":
                continue
            rows = dnp3_extended_rows(kept.unit, kept.from_client)
            if rows.control or rows.objects:
                prefix = conn_prefix(kept)
                for name, found in (("dnp3_control", rows.control), ("dnp3_objects", rows.objects)):
                    out = self.outs.get(name)
                    if out is not None:
                        out.writelines(prefix + "\t".join(row) + "\n" for row in found)

    def close(self) -> None:
        close_logs(self.outs)
