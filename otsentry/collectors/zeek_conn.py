"""The connection columns ICSNPP's logs start with: Zeek's ``ts``, ``uid`` and ``id``, then which side sent the
message (``is_orig``) and the message's own source and destination."""

from __future__ import annotations

from otsentry.collectors.formats import zeek_uid
from otsentry.collectors.ics.message import KeptMessage

__all__ = ["CONN_FIELDS", "CONN_TYPES", "conn_prefix"]

CONN_FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "is_orig", "source_h", "source_p",
               "destination_h", "destination_p")
CONN_TYPES = ("time", "string", "addr", "port", "addr", "port", "bool", "addr", "port", "addr", "port")


def conn_prefix(kept: KeptMessage) -> str:
    """The connection columns of a kept message's rows, tab-separated and ending in a tab."""
    conn = kept.conn
    uid = zeek_uid(conn.client_ip, conn.client_port, conn.server_ip, conn.server_port)
    ends = ((conn.client_ip, conn.client_port), (conn.server_ip, conn.server_port))
    (src, sport), (dst, dport) = ends if kept.from_client else ends[::-1]
    return (f"{kept.message.ts_ns / 1e9:.6f}\t{uid}\t{conn.client_ip}\t{conn.client_port}\t{conn.server_ip}\t"
            f"{conn.server_port}\t{'T' if kept.from_client else 'F'}\t{src}\t{sport}\t{dst}\t{dport}\t")
