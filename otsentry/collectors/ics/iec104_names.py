"""IEC 60870-5-104 structure declared once as data: U-frame functions, ASDU type ids, causes of transmission.

Type ids map to (name, operation class, element size in octets without the 3-octet IOA); a type whose size is
not listed (file transfer) has its objects counted but not walked. Unknown ids are named ``reserved-<id>``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

__all__ = ["CAUSES", "TYPES", "U_FUNCTIONS", "cause_name", "type_class", "type_name"]

U_FUNCTIONS: Mapping[int, str] = MappingProxyType({
    0x07: "STARTDT act", 0x0B: "STARTDT con", 0x13: "STOPDT act", 0x23: "STOPDT con", 0x43: "TESTFR act",
    0x83: "TESTFR con"})

_M, _C, _S, _P, _F = "read", "control", "diagnostic", "program", "file"
TYPES: Mapping[int, tuple[str, str, int | None]] = MappingProxyType({
    1: ("M_SP_NA_1", _M, 1), 2: ("M_SP_TA_1", _M, 4), 3: ("M_DP_NA_1", _M, 1), 4: ("M_DP_TA_1", _M, 4),
    5: ("M_ST_NA_1", _M, 2), 6: ("M_ST_TA_1", _M, 5), 7: ("M_BO_NA_1", _M, 5), 8: ("M_BO_TA_1", _M, 8),
    9: ("M_ME_NA_1", _M, 3), 10: ("M_ME_TA_1", _M, 6), 11: ("M_ME_NB_1", _M, 3), 12: ("M_ME_TB_1", _M, 6),
    13: ("M_ME_NC_1", _M, 5), 14: ("M_ME_TC_1", _M, 8), 15: ("M_IT_NA_1", _M, 5), 16: ("M_IT_TA_1", _M, 8),
    17: ("M_EP_TA_1", _M, 6), 18: ("M_EP_TB_1", _M, 7), 19: ("M_EP_TC_1", _M, 7), 20: ("M_PS_NA_1", _M, 5),
    21: ("M_ME_ND_1", _M, 2), 30: ("M_SP_TB_1", _M, 8), 31: ("M_DP_TB_1", _M, 8), 32: ("M_ST_TB_1", _M, 9),
    33: ("M_BO_TB_1", _M, 12), 34: ("M_ME_TD_1", _M, 10), 35: ("M_ME_TE_1", _M, 10), 36: ("M_ME_TF_1", _M, 12),
    37: ("M_IT_TB_1", _M, 12), 38: ("M_EP_TD_1", _M, 10), 39: ("M_EP_TE_1", _M, 11), 40: ("M_EP_TF_1", _M, 11),
    45: ("C_SC_NA_1", _C, 1), 46: ("C_DC_NA_1", _C, 1), 47: ("C_RC_NA_1", _C, 1), 48: ("C_SE_NA_1", _C, 3),
    49: ("C_SE_NB_1", _C, 3), 50: ("C_SE_NC_1", _C, 5), 51: ("C_BO_NA_1", _C, 4),
    58: ("C_SC_TA_1", _C, 8), 59: ("C_DC_TA_1", _C, 8), 60: ("C_RC_TA_1", _C, 8), 61: ("C_SE_TA_1", _C, 10),
    62: ("C_SE_TB_1", _C, 10), 63: ("C_SE_TC_1", _C, 12), 64: ("C_BO_TA_1", _C, 11),
    70: ("M_EI_NA_1", _S, 1),
    100: ("C_IC_NA_1", "read", 1), 101: ("C_CI_NA_1", "read", 1), 102: ("C_RD_NA_1", "read", 0),
    103: ("C_CS_NA_1", "time", 7), 104: ("C_TS_NA_1", _S, 2), 105: ("C_RP_NA_1", _S, 1),
    106: ("C_CD_NA_1", "time", 2), 107: ("C_TS_TA_1", _S, 9),
    110: ("P_ME_NA_1", _P, 3), 111: ("P_ME_NB_1", _P, 3), 112: ("P_ME_NC_1", _P, 5), 113: ("P_AC_NA_1", _P, 1),
    120: ("F_FR_NA_1", _F, None), 121: ("F_SR_NA_1", _F, None), 122: ("F_SC_NA_1", _F, None),
    123: ("F_LS_NA_1", _F, None), 124: ("F_AF_NA_1", _F, None), 125: ("F_SG_NA_1", _F, None),
    126: ("F_DR_TA_1", _F, None), 127: ("F_SC_NB_1", _F, None),
})

CAUSES: Mapping[int, str] = MappingProxyType({
    1: "per/cyc", 2: "back", 3: "spont", 4: "init", 5: "req", 6: "act", 7: "actcon", 8: "deact", 9: "deactcon",
    10: "actterm", 11: "retrem", 12: "retloc", 13: "file", 20: "inrogen",
    **{20 + i: f"inro{i}" for i in range(1, 17)}, 37: "reqcogen", **{37 + i: f"reqco{i}" for i in range(1, 5)},
    44: "unknown_type", 45: "unknown_cause", 46: "unknown_asdu_address", 47: "unknown_object_address",
})


def type_name(type_id: int) -> str:
    entry = TYPES.get(type_id)
    return entry[0] if entry else f"reserved-{type_id}"


def type_class(type_id: int) -> str:
    entry = TYPES.get(type_id)
    return entry[1] if entry else "other"


def cause_name(cause: int) -> str:
    return CAUSES.get(cause, f"reserved-{cause}")
