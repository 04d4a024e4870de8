"""Zeek's ``dnp3.log`` from the collector's DNP3 messages (``CollectorConfig(keep_messages=True)``).

Rows as Zeek's ``base/protocols/dnp3`` script writes them: per connection, a request remembers its function (a
later request replaces it, as Zeek keeps one), the next reply (RESPONSE, UNSOLICITED_RESPONSE or
AUTHENTICATE_RESP) writes one row with both functions and the reply's IIN (IIN1 in the high octet), and clears it;
an unsolicited reply without a request has ``-`` as its request. ``ts`` is the request's time, or the reply's.
A request never answered is written with ``-`` as its reply when the log closes (Zeek writes it when its
connection is removed, so on a long capture Zeek's row comes earlier: the rows are the same, not their order).
"""

from __future__ import annotations

from typing import IO, Iterable

from otsentry.collectors.formats import zeek_close, zeek_header, zeek_uid
from otsentry.collectors.ics.message import KeptMessage
from otsentry.collectors.types import Conn

__all__ = ["ZeekDnp3Writer"]


class ZeekDnp3Writer:
    FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "fc_request", "fc_reply", "iin")
    TYPES = ("time", "string", "addr", "port", "addr", "port", "string", "string", "count")

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._pending: dict[Conn, tuple[float, str]] = {}
        out.write(zeek_header("dnp3", self.FIELDS, self.TYPES))

    def write(self, messages: Iterable[KeptMessage]) -> None:
        for conn, msg, _, _ in messages:
            if msg.protocol != "dnp3":
                continue
            if msg.request:
                self._pending[conn] = (msg.ts_ns / 1e9, msg.operation_name)
                continue
            ts, request = self._pending.pop(conn, (msg.ts_ns / 1e9, "-"))
            self._row(conn, ts, request, msg.operation_name, "-" if msg.status_code is None else str(msg.status_code))

    def _row(self, conn: Conn, ts: float, request: str, reply: str, iin: str) -> None:
        uid = zeek_uid(conn.client_ip, conn.client_port, conn.server_ip, conn.server_port)
        self.out.write(f"{ts:.6f}\t{uid}\t{conn.client_ip}\t{conn.client_port}\t{conn.server_ip}\t"
                       f"{conn.server_port}\t{request}\t{reply}\t{iin}\n")

    def close(self) -> None:
        for conn, (ts, request) in sorted(self._pending.items(), key=lambda kv: kv[1][0]):
            self._row(conn, ts, request, "-", "-")
        self._pending.clear()
        self.out.write(zeek_close())
