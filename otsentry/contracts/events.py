"""The protocol-independent operation event: what every OT decoder produces, whatever the protocol.

A Modbus function code, a DNP3 function, an IEC 104 type id or an S7 job are all one ``OperationEvent``: who
asked whom (client/server, the station or unit behind the server address), which operation (its code, its name
as the protocol spells it, and its class), on which objects, with which values, and how it ended (status,
latency). Policy rules and features that speak of "a write", "a restart" or "a new operation for a pair" read
these fields only, so a new decoder plugs into them without copying a Modbus path.

Modbus produces it today (``otsentry.collectors.operations``); each new decoder adds its producer beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

__all__ = ["OPERATION_CLASSES", "OPERATION_EFFECTS", "OPERATION_EVENT_VERSION", "OperationEvent"]

OPERATION_EVENT_VERSION = 1

# What an operation does, whatever its protocol: the vocabulary of cross-protocol policy rules.
OPERATION_CLASSES = (
    "read",        # reads process data (registers, points, tags)
    "write",       # changes process data
    "control",     # operates equipment (select/operate, commands, start/stop)
    "diagnostic",  # diagnostics, restarts, identification, counters
    "program",     # program or configuration download/upload/delete
    "time",        # clock read or set
    "file",        # file transfer
    "other",       # anything else, reserved or vendor-specific codes included
)

# What an operation does to the device, beyond its class: the operations cross-protocol rules always report
# (each decoder declares which of its codes have which effect, e.g. DNP3 COLD_RESTART -> "restart").
OPERATION_EFFECTS = (
    "restart",               # cold/warm restart, reset process, CIP Reset
    "stop",                  # PLC stop, STOP_APPL, CIP Stop, STOPDT
    "start",                 # PLC hot/cold start, START_APPL, CIP Start
    "reporting_disabled",    # DNP3 DISABLE_UNSOLICITED: the outstation stops reporting events
    "time_set",              # clock set or synchronised
    "program_download",      # program or block written to the device
    "program_upload",        # program or block read from the device
    "program_delete",        # program, block or file deleted
    "configuration",         # configuration saved, activated or initialised
)


@dataclass(frozen=True, slots=True)
class OperationEvent:
    """One request and its response (or their absence), protocol-independent.

    ``station`` is the addressed device behind ``server_ip`` (Modbus unit id, DNP3 outstation, IEC 104 common
    address); ``objects`` names what was addressed in the protocol's own notation (``"40001-40010"``, ``"g30v1"``).
    ``status`` is None for a normal answer, else the protocol's error name (an exception, a negative
    confirmation); ``latency_s`` is None when unanswered.
    """

    protocol: str
    ts: float
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    station: int | None
    operation: int
    operation_name: str
    operation_class: str
    objects: tuple[str, ...] = ()
    values: tuple[int, ...] = ()
    status: str | None = None
    latency_s: float | None = None
    request_frame: int | None = None
    response_frame: int | None = None
    flags: tuple[str, ...] = ()
    effect: str = ""  # one of OPERATION_EFFECTS, or "" (no effect of note)
    transport: str = "tcp"
    identity: tuple[tuple[str, str], ...] = ()  # what the server said of itself in the answer (vendor, product...)

    def __post_init__(self) -> None:
        if self.operation_class not in OPERATION_CLASSES:
            raise ValueError(f"operation_class {self.operation_class!r} is not one of {', '.join(OPERATION_CLASSES)}")
        if self.effect and self.effect not in OPERATION_EFFECTS:
            raise ValueError(f"effect {self.effect!r} is not one of {', '.join(OPERATION_EFFECTS)}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "objects": list(self.objects), "values": list(self.values),
                "flags": list(self.flags), "identity": [list(kv) for kv in self.identity], "kind": "operation",
                "event_version": OPERATION_EVENT_VERSION}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "OperationEvent":
        """The inverse of ``to_dict``; a dict of another version or with fields this one lacks is refused."""
        version, body = data.get("event_version"), dict(data)
        if version != OPERATION_EVENT_VERSION:
            raise ValueError(f"OperationEvent: event_version {version!r} is not supported "
                             f"(expected {OPERATION_EVENT_VERSION})")
        body.pop("kind", None), body.pop("event_version")
        try:
            return cls(**{**body, **{k: tuple(body.get(k, ())) for k in ("objects", "values", "flags")},
                          "identity": tuple((str(k), str(v)) for k, v in body.get("identity", ()))})
        except TypeError as exc:  # an unknown or missing field
            raise ValueError(f"OperationEvent: {exc}") from None
