"""The field values of ICSNPP-S7comm's ``s7comm.log``, ``s7comm_read_szl.log``, ``s7comm_upload_download.log`` and
``s7comm_plus.log`` rows, from one framed TPKT unit
(pure functions; the writer adds the connection columns).

They follow that plugin's parser where it differs from Wireshark's, so that its rows are reproduced:

- the PDU reference is read byte-swapped (the plugin swaps the big-endian field);
- a User-Data message's function code is its type-and-group octet ("Request: CPU Functions" for 0x44), its
  subfunction is named within the group; a response (method 0x12) reads an error code after the data unit
  reference whatever its parameter length; a request has no error;
- a Job's PLC Control (0x28) names its PI service as the subfunction;
- an ACK-Data without parameters has no function code;
- S7comm-plus: the fourth octet is read as a digest length (V3 framing) and the opcode follows the digest; a
  Request's or Response's function is the low 16 bits of the next 32.

A unit whose COTP payload does not start a PDU (a continuation of a segmented S7 PDU) gives no row, as in the
plugin.
"""

from __future__ import annotations

import struct

from otsentry.collectors.formats import zeek_escape
from otsentry.collectors.zeek_s7_names import (BLOCK_TYPES, ERROR_CLASSES, FILESYSTEMS, FUNCTIONS, PI_SERVICES,
                                               PLUS_FUNCTIONS, PLUS_OPCODES, ROSCTR, SZL_IDS, USERDATA_GROUPS,
                                               USERDATA_METHODS, USERDATA_RETURN_CODES, USERDATA_SUBFUNCTIONS)

__all__ = ["cotp_payload", "read_szl_row", "s7comm_row", "s7plus_row", "upload_download_row"]

UNSET = "-"
Row = tuple[str, ...]
_KINDS = {0x00: "Push: ", 0x40: "Request: ", 0x80: "Response: "}


def cotp_payload(unit: bytes) -> bytes:
    """What follows the TPKT and COTP headers of a unit (empty for a connection TPDU or a short unit)."""
    if len(unit) < 5:
        return b""
    end = min(len(unit), struct.unpack_from(">H", unit, 2)[0])
    return unit[5 + unit[4] : end]


def _function(rosctr: int, code: int) -> tuple[str, str]:
    if code == 0xFF:
        return UNSET, UNSET
    if rosctr == 0x07:
        group = USERDATA_GROUPS.get(code & 0x0F, "unknown")
        return f"0x{code:02x}", _KINDS.get(code & 0xF0, "Unknown: ") + group
    return f"0x{code:02x}", FUNCTIONS.get(code, "unknown")


def _error(error_class: int, code: int | None) -> tuple[str, str]:
    if code is None:
        return UNSET, UNSET
    if error_class != 0xFE:
        return ERROR_CLASSES.get(error_class, f"Unknown error class-0x{error_class:02x}"), f"0x{code:02x}"
    return ("No error" if code == 0 else "Parameter Error"), f"0x{code:02x}"


def _pi_service(pdu: bytes) -> str | None:
    """The PI service name of a Job's PLC Control parameters (after the 7 static octets and the parameter block)."""
    pos = 10 + 1 + 7
    if pos + 2 > len(pdu):
        return None
    pos += 2 + struct.unpack_from(">H", pdu, pos)[0]
    if pos >= len(pdu):
        return None
    return zeek_escape(pdu[pos + 1 : pos + 1 + pdu[pos]])


def s7comm_row(pdu: bytes) -> Row | None:
    """s7comm.log's fields after the connection columns for an S7comm PDU (starting 0x32), or None."""
    if len(pdu) < 10 or pdu[0] != 0x32:
        return None
    rosctr = pdu[1]
    reference = pdu[4] | pdu[5] << 8
    subfunction: tuple[str, str] = (UNSET, UNSET)
    error_class, error_code = 0xFF, None
    if rosctr == 0x01:
        if len(pdu) < 11:
            return None
        code = pdu[10]
        if code == 0x28:
            service = _pi_service(pdu)
            if service is None:
                return None
            subfunction = (service or "(empty)", PI_SERVICES.get(service, "unknown"))
    elif rosctr in (0x02, 0x03):
        if len(pdu) < 12:
            return None
        error_class, error_code = pdu[10], pdu[11]
        params = struct.unpack_from(">H", pdu, 6)[0]
        if rosctr == 0x02 or params:
            if len(pdu) < 13:
                return None
            code = pdu[12]
        else:
            code = 0xFF
        if error_code == 0xFF:
            error_code = None
    elif rosctr == 0x07:
        if len(pdu) < 18:
            return None
        method, code, sub = pdu[14], pdu[15], pdu[16]
        if sub != 0xFF:
            names = USERDATA_SUBFUNCTIONS.get(code & 0x0F)
            subfunction = (f"0x{sub:02x}", UNSET if names is None else names.get(sub, "unknown"))
        error_class = 0xFE
        if method == 0x12:
            if len(pdu) < 22:
                return None
            error_code = struct.unpack_from(">H", pdu, 20)[0]
            if error_code in (0xFF, 0xFFFF):  # the plugin's two "no error code" markers
                error_code = None
    else:
        return None
    return (str(rosctr), ROSCTR[rosctr], str(reference), *_function(rosctr, code), *subfunction,
            *_error(error_class, error_code))


def read_szl_row(pdu: bytes) -> Row | None:
    """s7comm_read_szl.log's fields for a User-Data Read SZL (CPU functions, subfunction 1), or None.

    As the plugin at the baselines' commit: the SZL id and index are read from the data unit, named by the id's low
    octet; a request without them (asking for the next part of an answer) and an answer part that holds fewer
    records than its header counts (a part of a multi-part answer) give no row: the plugin's record does not parse
    them (the length field alone does not explain it: the first part's is exact)."""
    if len(pdu) < 18 or pdu[0] != 0x32 or pdu[1] != 0x07 or pdu[15] & 0x0F != 0x04 or pdu[16] != 0x01:
        return None
    params, length = struct.unpack_from(">HH", pdu, 6)
    data = pdu[10 + params : 10 + params + length]
    if len(data) < 8:
        return None
    szl_id, index = struct.unpack_from(">HH", data, 4)
    if pdu[14] == 0x12:
        if len(data) < 12:
            return None
        size, count = struct.unpack_from(">HH", data, 8)
        if 12 + size * count > len(data):
            return None
    return (str(pdu[4] | pdu[5] << 8), USERDATA_METHODS.get(pdu[14], "Unknown"), f"0x{szl_id:04x}",
            SZL_IDS.get(szl_id & 0xFF, "Unknown"), f"0x{index:04x}", f"0x{data[0]:02x}",
            USERDATA_RETURN_CODES.get(data[0], "Unknown"))


_JOB_FILENAME = frozenset({0x1D, 0x1A, 0x1B, 0x1C})  # Job functions naming a block file
_ACK_UNSET = frozenset({0x1F, 0x1A, 0x1C})  # ACK-Data functions the plugin logs with no field set


def _atoi(text: bytes) -> int:
    """C's atoi: the leading decimal digits (0 when there are none)."""
    digits = text.lstrip(b" ")
    n = 0
    for b in digits:
        if not 0x30 <= b <= 0x39:
            break
        n = n * 10 + b - 0x30
    return n


def upload_download_row(pdu: bytes) -> Row | None:
    """s7comm_upload_download.log's fields for a Job or ACK-Data of a block upload or download (0x1A-0x1F), or None.

    As the plugin: a Job's session id and function status are read after two reserved octets, its file name
    ``_TTNNNNNF`` gives block type, number and file system; an ACK-Data's block length is ASCII in Start Upload and
    the data unit's length in Upload and Download Block (whose bytes must all be there); End Upload, Request
    Download and Download Ended acknowledgements carry nothing else."""
    if len(pdu) < 12 or pdu[0] != 0x32 or pdu[1] not in (0x01, 0x03):
        return None
    rosctr, reference = pdu[1], str(pdu[4] | pdu[5] << 8)
    status = session = blocklength = UNSET
    name: tuple[str, ...] = (UNSET,) * 4
    if rosctr == 0x01:
        code = pdu[10] if len(pdu) > 10 else 0
        if not 0x1A <= code <= 0x1F or len(pdu) < 18:
            return None
        status, session = f"0x{pdu[11]:02x}", str(struct.unpack_from(">I", pdu, 14)[0])
        if code in _JOB_FILENAME:
            if len(pdu) < 19 or len(pdu) < 19 + pdu[18]:
                return None
            filename = pdu[19 : 19 + pdu[18]]
            if code == 0x1A and (len(pdu) < 20 + pdu[18] or len(pdu) < 20 + pdu[18] + pdu[19 + pdu[18]]):
                return None  # its parameter block must be there too
            if filename:
                name = (zeek_escape(filename), BLOCK_TYPES.get(filename[1:3].decode("latin-1"), "Unknown"),
                        zeek_escape(filename[3:8]), FILESYSTEMS.get(filename[8:9].decode("latin-1"), "Unknown"))
    else:
        if struct.unpack_from(">H", pdu, 6)[0] == 0 or len(pdu) < 13:
            return None
        code = pdu[12]
        if not 0x1A <= code <= 0x1F:
            return None
        if code == 0x1D:
            if len(pdu) < 21 or len(pdu) < 21 + pdu[20]:
                return None
            status, session = f"0x{pdu[13]:02x}", str(struct.unpack_from(">I", pdu, 16)[0])
            blocklength = str(_atoi(pdu[21 : 21 + pdu[20]]))
        elif code in (0x1E, 0x1B):
            if len(pdu) < 18 or len(pdu) < 18 + struct.unpack_from(">H", pdu, 14)[0]:
                return None
            status = f"0x{pdu[13]:02x}" if code == 0x1E else UNSET
            blocklength = str(struct.unpack_from(">H", pdu, 14)[0])
    return (ROSCTR[rosctr], reference, FUNCTIONS.get(code, "unknown"), status, session, blocklength, *name)


def s7plus_row(pdu: bytes) -> Row | None:
    """s7comm_plus.log's fields after the connection columns for an S7comm-plus PDU (starting 0x72), or None."""
    if len(pdu) < 5 or pdu[0] != 0x72:
        return None
    version, digest = pdu[1], pdu[4]
    pos = 5 + digest
    if pos + 5 > len(pdu):
        return None
    opcode = pdu[pos]
    function: tuple[str, str] = (UNSET, UNSET)
    if opcode in (0x31, 0x32):
        code = struct.unpack_from(">I", pdu, pos + 1)[0] & 0xFFFF
        function = (f"0x{code:04x}", PLUS_FUNCTIONS.get(code, f"Unknown s7comm-plus function-0x{code:04x}"))
    return (str(version), f"0x{opcode:02x}", PLUS_OPCODES.get(opcode, f"Unknown s7comm-plus opcode-0x{opcode:02x}"),
            *function)
