"""Writing collector batches to a stream: shared by ``inspect`` and ``collect`` so both print the same forms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from otsentry.collectors.collector import CollectedBatch
from otsentry.collectors.events import ConnTable
from otsentry.collectors.formats import TableWriter, ZeekWriter
from otsentry.collectors.zeek_dnp3_ext import ZeekDnp3ExtendedWriter
from otsentry.collectors.zeek_enip import ZeekEnipWriter
from otsentry.collectors.zeek_ics import ZeekDnp3Writer
from otsentry.collectors.zeek_s7 import ZeekS7Writer

__all__ = ["BatchPrinter", "ZeekLogs"]


class BatchPrinter:
    """Prints batches as JSON lines (one ModbusEvent, OperationEvent or FlowEvent per line), a table, or Zeek's
    modbus.log.

    ``flush=True`` pushes every batch out at once: a live collector piped into ``jq`` must not sit in a buffer.
    """

    def __init__(self, out: IO[str], fmt: str = "json", no_flows: bool = False, flush: bool = False) -> None:
        if fmt not in ("json", "table", "zeek"):
            raise ValueError(f"unknown output format {fmt!r}")
        self.out = out
        self.no_flows = no_flows
        self.flush = flush
        self.writer = ZeekWriter(out) if fmt == "zeek" else TableWriter(out) if fmt == "table" else None

    def write(self, batch: CollectedBatch, conns: ConnTable) -> None:
        events = batch.modbus.events(conns)
        flows = [] if self.no_flows else batch.flows
        if isinstance(self.writer, TableWriter):
            self.writer.write(events, flows, batch.operations)
        elif self.writer is not None:
            self.writer.write(events, flows)
        else:
            write = self.out.write
            for ev in events:
                write(json.dumps(ev.to_dict()) + "\n")
            for op in batch.operations:
                write(json.dumps(op.to_dict()) + "\n")
            for fl in flows:
                write(json.dumps(fl.to_dict()) + "\n")
        if self.flush:
            self.out.flush()

    def close(self) -> None:
        """End of output: the table's "nothing seen" line, Zeek's ``#close``."""
        if self.writer is not None:
            self.writer.close()
        if self.flush:
            self.out.flush()


class ZeekLogs:
    """Zeek logs in a directory, one file per log: ``modbus.log``, ``dnp3.log`` and ICSNPP's DNP3 (``dnp3_control``,
    ``dnp3_objects``), ENIP/CIP (``enip``, ``cip``, ``cip_identity``, ``cip_io``) and S7comm logs (``cotp``,
    ``s7comm``, ``s7comm_read_szl``, ``s7comm_upload_download``, ``s7comm_known_devices``, ``s7comm_plus``)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        groups = {ZeekDnp3ExtendedWriter: ("dnp3_control", "dnp3_objects"),
                  ZeekEnipWriter: ("enip", "cip", "cip_identity", "cip_io"),
                  ZeekS7Writer: ("cotp", "s7comm", "s7comm_read_szl", "s7comm_upload_download",
                                 "s7comm_known_devices", "s7comm_plus")}
        names = ("modbus", "dnp3", *(n for logs in groups.values() for n in logs))
        self._files = {name: open(directory / f"{name}.log", "w", encoding="utf-8") for name in names}
        self.modbus, self.dnp3 = ZeekWriter(self._files["modbus"]), ZeekDnp3Writer(self._files["dnp3"])
        self._ot = [writer({n: self._files[n] for n in logs}) for writer, logs in groups.items()]

    def write(self, batch: CollectedBatch, conns: ConnTable) -> None:
        self.modbus.write(batch.modbus.events(conns))
        for writer in (self.dnp3, *self._ot):
            writer.write(batch.messages)

    def close(self) -> None:
        for writer in (self.modbus, self.dnp3, *self._ot):
            writer.close()
        for f in self._files.values():
            f.close()
