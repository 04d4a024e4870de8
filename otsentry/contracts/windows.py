"""Identity, partition key and order of feature windows and alerts: what every stage must agree on.

The collector partitions windows by ``partition_key`` so one pair's windows stay in order on one partition; a
consumer drops a copy sent twice by ``window_identity``; detectors and the correlator see windows and alerts in
``window_order`` / ``alert_order``, so a Kafka deployment builds the same incidents as one ``otsentry run``.
The functions read attributes only (``WindowFields``, ``AlertFields``): this module imports nothing of otsentry.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["AlertFields", "WindowFields", "alert_order", "partition_key", "score_key", "window_identity",
           "window_order"]


class WindowFields(Protocol):
    """The attributes of a FeatureWindow these functions read."""

    kind: str
    window_start: float
    window_end: float
    client_ip: str
    server_ip: str
    unit_id: int
    port: int
    transport: str


class AlertFields(Protocol):
    """The attributes of an Alert ``alert_order`` reads."""

    id: str
    rule_id: str
    window_start: float
    client_ip: str
    server_ip: str
    unit_id: int


def partition_key(w: WindowFields) -> bytes:
    """Partition key: the asset pair (client|server|unit), the conversation (originator|responder|port/proto), or
    a sensor window's stream (sensor|sender|receiver|port/transport; empty addresses for capture loss)."""
    if w.kind == "pair":
        return f"{w.client_ip}|{w.server_ip}|{w.unit_id}".encode()
    if w.kind == "sensor":
        return f"sensor|{w.client_ip}|{w.server_ip}|{w.port}/{w.transport}".encode()
    if w.kind == "ot":
        return f"ot|{w.client_ip}|{w.server_ip}|{w.unit_id}|{w.port}/{w.transport}".encode()
    return f"{w.client_ip}|{w.server_ip}|{w.port}/{w.transport}".encode()


def window_identity(w: WindowFields) -> tuple[Any, ...]:
    """What makes a window unique in a stream: a copy sent twice (a producer retry) has the same identity."""
    return (w.kind, w.client_ip, w.server_ip, w.unit_id, w.port, w.transport, w.window_start, w.window_end)


def window_order(w: WindowFields) -> tuple[Any, ...]:
    """The order windows are released in after event-time buffering: by time, pair windows first."""
    return (w.window_start, w.window_end, w.kind != "pair", w.client_ip, w.server_ip, w.unit_id, w.port,
            w.transport)


def score_key(w: WindowFields) -> tuple[Any, ...]:
    """The key of a window's anomaly score in evaluation: its kind, time slot (rounded) and addresses."""
    return (w.kind, round(w.window_start, 6), w.client_ip, w.server_ip, w.unit_id, w.port, w.transport)


def alert_order(a: AlertFields) -> tuple[Any, ...]:
    """The order a correlator must see alerts in to build the same incidents (``Detection`` emits it per batch)."""
    return (a.window_start, a.client_ip, a.server_ip, a.unit_id, a.rule_id, a.id)
