"""Human and Zeek-compatible renderings of collector output."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import IO, Iterable

from otsentry.collectors.modbus_pdu import exception_name, zeek_func_name
from otsentry.records import FlowEvent, ModbusEvent
from otsentry.contracts.events import OperationEvent

__all__ = ["TableWriter", "ZeekWriter", "zeek_close", "zeek_escape", "zeek_header", "zeek_uid"]

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def zeek_uid(client_ip: str, client_port: int, server_ip: str, server_port: int) -> str:
    """A stable Zeek-style connection uid ("C" + 17 base62 chars), derived from the connection 4-tuple."""
    n = int.from_bytes(hashlib.sha1(f"{client_ip}|{client_port}|{server_ip}|{server_port}".encode()).digest()[:13], "big")
    chars = []
    for _ in range(17):
        n, r = divmod(n, 62)
        chars.append(_B62[r])
    return "C" + "".join(chars)


def zeek_header(path: str, fields: Iterable[str], types: Iterable[str]) -> str:
    """The header lines Zeek's ASCII writer opens a log with."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d-%H-%M-%S")
    return (f"#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\t{path}\n"
            f"#open\t{now}\n#fields\t" + "\t".join(fields) + "\n#types\t" + "\t".join(types) + "\n")


def zeek_escape(raw: bytes) -> str:
    """Bytes as Zeek's ASCII writer prints a string: outside printable ASCII (and the backslash) as ``\\xNN``,
    so that no tab or newline of the wire breaks a log line."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw)


def zeek_close() -> str:
    """The line Zeek's ASCII writer closes a log with."""
    return f"#close\t{datetime.now(timezone.utc).strftime('%Y-%m-%d-%H-%M-%S')}\n"


def _ts(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class ZeekWriter:
    """modbus.log as Zeek writes it: one row per ADU (REQ or RESP), in capture order within each batch."""

    FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "tid", "unit", "func", "pdu_type",
              "exception")
    TYPES = ("time", "string", "addr", "port", "addr", "port", "count", "count", "string", "string", "string")

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        out.write(zeek_header("modbus", self.FIELDS, self.TYPES))

    def write(self, events: Iterable[ModbusEvent], flows: Iterable[FlowEvent] = ()) -> None:
        rows = []
        for ev in events:
            uid = zeek_uid(ev.client_ip, ev.client_port, ev.server_ip, ev.server_port)
            conn = (ev.client_ip, str(ev.client_port), ev.server_ip, str(ev.server_port))
            if ev.request_frame is not None:
                rows.append((ev.request_frame, 0, ev.ts, uid, conn, ev, "REQ", zeek_func_name(ev.function_code), "-"))
            if ev.response_frame is not None:
                exc = ev.exception_code is not None
                func = zeek_func_name(ev.function_code | 0x80 if exc else ev.function_code)
                rows.append((ev.response_frame, 1, ev.response_ts, uid, conn, ev, "RESP", func,
                             exception_name(ev.exception_code) if exc else "-"))
        rows.sort(key=lambda r: (r[0], r[1]))
        for _, _, ts, uid, conn, ev, kind, func, exc in rows:
            self.out.write(f"{ts:.6f}\t{uid}\t" + "\t".join(conn) + f"\t{ev.transaction_id}\t{ev.unit_id}\t{func}\t{kind}\t{exc}\n")

    def close(self) -> None:
        self.out.write(zeek_close())


class TableWriter:
    """An aligned table for people: one line per transaction, flows after them."""

    HEADER = f"{'time (UTC)':23} {'client':>21} -> {'server':21} {'unit':>4} {'tid':>5} {'function':28} " \
             f"{'addr':>5} {'qty':>4} {'latency':>8}  details"

    # Per-connection facts that would repeat on every line; they stay in --json.
    QUIET_FLAGS = frozenset({"midstream"})

    def __init__(self, out: IO[str], max_values: int = 8) -> None:
        self.out = out
        self.max_values = max_values
        self._header_done = False

    def write(self, events: Iterable[ModbusEvent], flows: Iterable[FlowEvent] = (),
              operations: Iterable[OperationEvent] = ()) -> None:
        for op in operations:  # DNP3, IEC 104, S7, EtherNet/IP: station in the unit column, the protocol's names
            self._header()
            details = [op.protocol] + ([",".join(op.objects[:4])] if op.objects else [])
            if op.status:
                details.append(f"ERROR {op.status}")
            if op.values:
                details.append("values=[" + ", ".join(str(v) for v in op.values[: self.max_values])
                               + (f", ... ({len(op.values)})" if len(op.values) > self.max_values else "") + "]")
            shown_flags = [f for f in op.flags if f not in self.QUIET_FLAGS]
            if shown_flags:
                details.append("flags=" + ",".join(shown_flags))
            lat = f"{op.latency_s * 1000:.1f}ms" if op.latency_s is not None else "-"
            station = "-" if op.station is None else str(op.station)
            self.out.write(
                f"{_ts(op.ts):23} {op.client_ip + ':' + str(op.client_port):>21} -> "
                f"{op.server_ip + ':' + str(op.server_port):21} {station:>4} {'-':>5} "
                f"{op.operation_name[:28]:28} {'-':>5} {'-':>4} {lat:>8}  {' '.join(details)}\n")
        for ev in events:
            self._header()
            details = []
            if ev.exception_code is not None:
                details.append(f"EXCEPTION {exception_name(ev.exception_code)}")
            if ev.sub_function is not None:
                details.append(f"sub={ev.sub_function}")
            if ev.values:
                shown = ", ".join(str(v) for v in ev.values[: self.max_values])
                more = f", ... ({len(ev.values)})" if len(ev.values) > self.max_values else ""
                details.append(f"values=[{shown}{more}]")
            shown_flags = [f for f in ev.flags if f not in self.QUIET_FLAGS]
            if shown_flags:
                details.append("flags=" + ",".join(shown_flags))
            lat = f"{ev.latency_s * 1000:.1f}ms" if ev.latency_s is not None else "-"
            addr = "-" if ev.start_address is None else str(ev.start_address)
            qty = "-" if ev.quantity is None else str(ev.quantity)
            self.out.write(
                f"{_ts(ev.ts):23} {ev.client_ip + ':' + str(ev.client_port):>21} -> "
                f"{ev.server_ip + ':' + str(ev.server_port):21} {ev.unit_id:>4} {ev.transaction_id:>5} "
                f"{ev.function_name[:28]:28} {addr:>5} {qty:>4} {lat:>8}  {' '.join(details)}\n"
            )
        for fl in flows:
            self._header()
            self.out.write(
                f"{_ts(fl.ts_first):23} {fl.orig_ip + ':' + str(fl.orig_port):>21} -> "
                f"{fl.resp_ip + ':' + str(fl.resp_port):21} FLOW {fl.transport} "
                f"{fl.service or ('modbus' if fl.modbus else 'other')}"
                f" packets={fl.packets} bytes={fl.bytes_orig + fl.bytes_resp} flags={fl.tcp_flags or '-'}"
                f" duration={fl.ts_last - fl.ts_first:.1f}s\n"
            )

    def _header(self) -> None:
        if not self._header_done:
            self.out.write(self.HEADER + "\n")
            self._header_done = True

    def close(self) -> None:
        if not self._header_done:
            self.out.write("(no OT transactions or flows)\n")
