"""ICSNPP-S7comm's ``cotp.log``, ``s7comm.log`` and ``s7comm_plus.log`` from the collector's S7 messages
(``CollectorConfig(keep_messages=True)``): one row per COTP TPDU, and one per S7comm or S7comm-plus PDU in either
direction (and one per Read SZL in ``s7comm_read_szl.log``, per block upload or download step in
``s7comm_upload_download.log``), with the field values of ``zeek_s7_rows``; ``ts`` is the message's time. A PDU segmented over several
COTP data TPDUs is read from the TPDU that completed it (the plugin reads the first; such segmentation is rare,
the negotiated PDU size usually fits one TPDU). ``s7comm_known_devices.log`` has one row per device whose component
identification (SZL 0x001c) was read, with the names it gave.
"""

from __future__ import annotations

from typing import IO, Iterable

from otsentry.collectors.formats import zeek_escape
from otsentry.collectors.ics.message import KeptMessage
from otsentry.collectors.zeek_conn import close_logs, conn_prefix, open_logs
from otsentry.collectors.zeek_s7_names import COTP_PDU_TYPES
from otsentry.collectors.zeek_s7_rows import cotp_payload, read_szl_row, s7comm_row, s7plus_row, upload_download_row

__all__ = ["ZeekS7Writer"]

LOGS = {
    "cotp": (("pdu_code", "pdu_name"), ("string", "string")),
    "s7comm_read_szl": (("pdu_reference", "method", "szl_id", "szl_id_name", "szl_index", "return_code",
                         "return_code_name"), ("count", "string", "string", "string", "string", "string", "string")),
    "s7comm_known_devices": (("automation_system_name", "module_name", "plant_name", "module_serial"),
                             ("string", "string", "string", "string")),
    "s7comm_upload_download": (("rosctr", "pdu_reference", "function_name", "function_status", "session_id",
                                "blocklength", "filename", "block_type", "block_number", "destination_filesystem"),
                               ("string", "count", "string", "string", "count", "count", "string", "string",
                                "string", "string")),
    "s7comm": (("rosctr_code", "rosctr_name", "pdu_reference", "function_code", "function_name",
                "subfunction_code", "subfunction_name", "error_class", "error_code"),
               ("count", "string", "count", "string", "string", "string", "string", "string", "string")),
    "s7comm_plus": (("version", "opcode", "opcode_name", "function_code", "function_name"),
                    ("count", "string", "string", "string", "string")),
}
_ROWS = {"s7comm": s7comm_row, "s7commplus": s7plus_row}
_LOG_OF = {"s7comm": "s7comm", "s7commplus": "s7comm_plus"}


class ZeekS7Writer:
    """Writes the logs to the streams given by log name (``cotp``, ``s7comm``, ``s7comm_plus``)."""

    def __init__(self, outs: dict[str, IO[str]]) -> None:
        self.outs = outs
        self._known: set[str] = set()  # devices written to s7comm_known_devices.log
        open_logs(outs, LOGS)

    def write(self, messages: Iterable[KeptMessage]) -> None:
        for kept in messages:
            protocol = kept.message.protocol
            if protocol == "cotp":
                code = kept.message.operation >> 4
                self._put("cotp", kept, (f"0x{code:02x}", COTP_PDU_TYPES.get(code, f"Unknown COTP PDU-0x{code:02x}")))
            elif protocol in _ROWS:
                payload = cotp_payload(kept.unit)
                self._put(_LOG_OF[protocol], kept, _ROWS[protocol](payload))
                if protocol == "s7comm":
                    self._known_device(kept)
                    self._put("s7comm_read_szl", kept, read_szl_row(payload))
                    self._put("s7comm_upload_download", kept, upload_download_row(payload))

    def _known_device(self, kept: KeptMessage) -> None:
        """A CPU's component identification (SZL 0x001c answer), once per device, as the plugin's known devices."""
        said = dict(kept.message.identity)
        out = self.outs.get("s7comm_known_devices")
        if out is None or not ("system_name" in said or "module_name" in said) or kept.conn.server_ip in self._known:
            return
        self._known.add(kept.conn.server_ip)
        fields = (zeek_escape(said.get(k, "").encode("latin-1")) or "(empty)"
                  for k in ("system_name", "module_name", "plant_id", "serial"))
        out.write(conn_prefix(kept, directed=False) + "\t".join(fields) + "\n")

    def _put(self, log: str, kept: KeptMessage, row: tuple[str, ...] | None) -> None:
        out = self.outs.get(log)
        if out is not None and row is not None:
            out.write(conn_prefix(kept) + "\t".join(row) + "\n")

    def close(self) -> None:
        close_logs(self.outs)
