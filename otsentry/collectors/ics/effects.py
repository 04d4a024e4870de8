"""Which operations of each protocol have an effect the cross-protocol rules always report, declared as data.

(protocol, operation name as the decoder names it) -> effect (``otsentry.contracts.events.OPERATION_EFFECTS``).
S7 PI services are named with their service (``PI_SERVICE(P_PROGRAM)``): the PI service names that start or
delete are listed here too.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

__all__ = ["EFFECTS", "effect_of", "operations_with"]

EFFECTS: Mapping[tuple[str, str], str] = MappingProxyType({
    ("dnp3", "COLD_RESTART"): "restart", ("dnp3", "WARM_RESTART"): "restart",
    ("dnp3", "STOP_APPL"): "stop", ("dnp3", "START_APPL"): "start",
    ("dnp3", "DISABLE_UNSOLICITED"): "reporting_disabled",
    ("dnp3", "RECORD_CURRENT_TIME"): "time_set",
    ("dnp3", "DELETE_FILE"): "program_delete",
    ("dnp3", "SAVE_CONFIG"): "configuration", ("dnp3", "ACTIVATE_CONFIG"): "configuration",
    ("dnp3", "INITIALIZE_DATA"): "configuration", ("dnp3", "INITIALIZE_APPL"): "configuration",
    ("iec104", "C_RP_NA_1"): "restart", ("iec104", "C_CS_NA_1"): "time_set",
    ("s7comm", "PLC_STOP(P_PROGRAM)"): "stop", ("s7comm", "PLC_STOP"): "stop",
    ("s7comm", "PI_SERVICE(P_PROGRAM)"): "start",
    ("s7comm", "PI_SERVICE(_DELE)"): "program_delete", ("s7comm", "PI_SERVICE(_INSE)"): "program_download",
    ("s7comm", "REQUEST_DOWNLOAD"): "program_download", ("s7comm", "DOWNLOAD_BLOCK"): "program_download",
    ("s7comm", "DOWNLOAD_ENDED"): "program_download",
    ("s7comm", "START_UPLOAD"): "program_upload", ("s7comm", "UPLOAD"): "program_upload",
    ("s7comm", "END_UPLOAD"): "program_upload",
    ("s7comm", "SET_CLOCK"): "time_set", ("s7comm", "SET_CLOCK_2"): "time_set",
    ("enip", "Reset"): "restart", ("enip", "Stop"): "stop", ("enip", "Start"): "start",
})


def effect_of(protocol: str, operation_name: str) -> str:
    """The effect of an operation, "" when it has none the rules single out."""
    return EFFECTS.get((protocol, operation_name), "")


def operations_with(protocol: str, effect: str) -> tuple[str, ...]:
    """The protocol's operation names with ``effect`` (for alert wording)."""
    return tuple(sorted(name for (p, name), e in EFFECTS.items() if p == protocol and e == effect))
