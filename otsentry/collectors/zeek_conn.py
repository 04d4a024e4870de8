"""The connection columns ICSNPP's logs start with: Zeek's ``ts``, ``uid`` and ``id``, then which side sent the
message (``is_orig``) and the message's own source and destination."""

from __future__ import annotations

from typing import IO, Mapping

from otsentry.collectors.formats import zeek_close, zeek_header, zeek_uid
from otsentry.collectors.ics.message import KeptMessage

__all__ = ["CONN_FIELDS", "CONN_TYPES", "close_logs", "conn_prefix", "open_logs"]

CONN_FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "is_orig", "source_h", "source_p",
               "destination_h", "destination_p")
CONN_TYPES = ("time", "string", "addr", "port", "addr", "port", "bool", "addr", "port", "addr", "port")


def conn_prefix(kept: KeptMessage, directed: bool = True) -> str:
    """The connection columns of a kept message's rows, tab-separated and ending in a tab; without ``directed``
    the sender columns are unset (a row about a device, not a message: s7comm_known_devices.log)."""
    conn = kept.conn
    uid = zeek_uid(conn.client_ip, conn.client_port, conn.server_ip, conn.server_port)
    ends = ((conn.client_ip, conn.client_port), (conn.server_ip, conn.server_port))
    (src, sport), (dst, dport) = ends if kept.from_client else ends[::-1]
    sender = f"{'T' if kept.from_client else 'F'}\t{src}\t{sport}\t{dst}\t{dport}\t" if directed else "-\t" * 5
    return (f"{kept.message.ts_ns / 1e9:.6f}\t{uid}\t{conn.client_ip}\t{conn.client_port}\t{conn.server_ip}\t"
            f"{conn.server_port}\t{sender}")


def open_logs(outs: Mapping[str, IO[str]], logs: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> None:
    """Write the header of each ICSNPP log in ``outs``: the connection columns, then its own (``logs[name]``)."""
    for name, out in outs.items():
        fields, types = logs[name]
        out.write(zeek_header(name, CONN_FIELDS + fields, CONN_TYPES + types))


def close_logs(outs: Mapping[str, IO[str]]) -> None:
    for out in outs.values():
        out.write(zeek_close())
