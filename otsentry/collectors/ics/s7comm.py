"""S7comm (ISO-on-TCP: TPKT, COTP) and S7comm-plus, as ``Message``s.

One TPKT unit carries one COTP TPDU; data TPDUs (DT) without the end-of-TSDU bit are joined with the ones that
follow (COTP segmentation, as Wireshark reassembles it) before the S7 PDU is read. An S7 PDU starts with 0x32
(S7comm: job, ack, ack-data, userdata, each with its function) or 0x72 (S7comm-plus: version, opcode, function;
named, not decoded further). Connection TPDUs (CR, CC, DR...) are counted by the decoder, not messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from otsentry.collectors.ics.message import Message
from otsentry.collectors.ics.s7_names import (AREAS, COTP_TYPES, FUNCTIONS, PLUS_FUNCTIONS, PLUS_OPCODES, RETURN_CODES,
                                               USERDATA_GROUPS, USERDATA_SUBFUNCTIONS)

__all__ = ["COMPONENTS", "COTP_MAX", "CotpAssembler", "cotp_message", "parse_s7comm", "parse_s7plus", "split_cotp",
           "szl_identity", "szl_request_label", "variable_label"]

COTP_MAX = 65536  # bytes of one segmented TSDU kept (memory bound per direction)
S7COMM, S7PLUS = 0x32, 0x72


def split_cotp(pdu: bytes) -> tuple[int, bool, bytes] | None:
    """(TPDU type, end of TSDU, user data) of one TPKT unit; None when too short for its COTP header."""
    if len(pdu) < 6:
        return None
    li = pdu[4]
    if li < 1 or 5 + li > len(pdu):
        return None
    kind = pdu[5] & 0xF0
    if kind == 0xF0:
        return kind, bool(pdu[6] & 0x80) if li >= 2 else True, pdu[5 + li :]
    return kind, True, b""


def cotp_message(pdu: bytes, from_client: bool, frame: int, ts_ns: int) -> Message | None:
    """The COTP TPDU of one TPKT unit as a ``cotp`` message, for logs that list every TPDU (ICSNPP's cotp.log);
    not paired, not counted as a message. None when the unit is too short for a TPDU type."""
    if len(pdu) < 6:
        return None
    kind = pdu[5] & 0xF0
    return Message("cotp", frame, ts_ns, from_client, kind, COTP_TYPES.get(kind, f"type-0x{kind:02x}"), "other")


@dataclass
class CotpAssembler:
    """Joins segmented DT TPDUs of one direction into whole TSDUs (bounded by ``COTP_MAX``)."""

    pending: bytearray = field(default_factory=bytearray)
    overflows: int = 0

    def feed(self, eot: bool, data: bytes) -> bytes | None:
        if not eot:
            if len(self.pending) + len(data) > COTP_MAX:
                self.pending.clear()
                self.overflows += 1
            else:
                self.pending += data
            return None
        if self.pending:
            data, self.pending = bytes(self.pending) + data, bytearray()
        return data


def variable_label(area: int, db: int, address: int, count: int) -> str:
    """An S7ANY variable address as otsentry names it: area, DB number, byte.bit and element count (``DB1:0.0x4``);
    the Wireshark backend words its items with it too."""
    name = AREAS.get(area, f"area-0x{area:02x}")
    where = f"{name}{db}" if area == 0x84 else name
    return f"{where}:{address >> 3}.{address & 7}x{count}"


def szl_request_label(szl_id: int, index: int) -> str:
    return f"SZL 0x{szl_id:04x} index 0x{index:04x}"


def _item_label(item: bytes) -> str | None:
    """The label of one S7ANY item of a read/write job; None for other address syntaxes."""
    if len(item) < 12 or item[0] != 0x12 or item[2] != 0x10:
        return None
    return variable_label(item[8], item[6] << 8 | item[7], item[9] << 16 | item[10] << 8 | item[11],
                          item[4] << 8 | item[5])


def parse_s7comm(pdu: bytes, frame: int, ts_ns: int) -> Message:
    if len(pdu) < 10:
        return Message("s7comm", frame, ts_ns, True, -1, "reserved", "other", flags=("malformed",))
    rosctr, ref = pdu[1], pdu[4] << 8 | pdu[5]
    plen, dlen = pdu[6] << 8 | pdu[7], pdu[8] << 8 | pdu[9]
    head = 12 if rosctr in (2, 3) else 10
    flags: list[str] = []
    if len(pdu) < head + plen + dlen:
        flags.append("truncated")
    params, data = pdu[head : head + plen], pdu[head + plen : head + plen + dlen]
    status = None
    if rosctr in (2, 3) and len(pdu) >= 12 and (pdu[10] or pdu[11]):
        status = f"error-0x{pdu[10]:02x}{pdu[11]:02x}"
    if rosctr == 7:
        return _userdata(params, data, ref, frame, ts_ns, flags)
    if rosctr not in (1, 2, 3):
        flags.append("reserved_function")
        return Message("s7comm", frame, ts_ns, True, -1, f"ROSCTR-{rosctr}", "other", None, (), (), status,
                       None, tuple(flags))
    func = params[0] if params else -1
    name, klass = FUNCTIONS.get(func, (f"reserved-0x{func & 0xFF:02x}", "other"))
    if func < 0:  # an acknowledgement without parameters (an error answer): the request names the function
        name = "ACK"
    elif func not in FUNCTIONS:
        flags.append("reserved_function")
    objects: list[str] = []
    if func in (0x04, 0x05) and rosctr == 1 and len(params) >= 2:
        for i in range(min(params[1], 32)):
            label = _item_label(params[2 + 12 * i : 14 + 12 * i])
            if label:
                objects.append(label)
    elif func in (0x28, 0x29) and rosctr == 1:
        service = _pi_service(params)
        if service:
            objects.append(service)
            name = f"{name}({service})"
    elif func == 0x04 and rosctr == 3 and data and status is None:
        code = data[0]
        if code != 0xFF:
            status = RETURN_CODES.get(code, f"return-0x{code:02x}")
    return Message("s7comm", frame, ts_ns, rosctr == 1, func, name, klass, None, tuple(objects), (), status,
                   ("s7", ref), tuple(flags))


def _pi_service(params: bytes) -> str | None:
    """The PI service name of a PI_SERVICE job (``_INSE``, ``_DELE``, ``P_PROGRAM``...) or PLC_STOP's."""
    if params[:1] == b"\x28" and len(params) >= 10:
        block = params[8] << 8 | params[9]
        at = 10 + block
    elif params[:1] == b"\x29" and len(params) >= 7:
        at = 6
    else:
        return None
    if at >= len(params):
        return None
    size = params[at]
    name = params[at + 1 : at + 1 + size]
    return name.decode("latin-1") if name and all(32 <= b < 127 for b in name) else None


def _userdata(params: bytes, data: bytes, ref: int, frame: int, ts_ns: int, flags: list[str]) -> Message:
    if len(params) < 8:
        return Message("s7comm", frame, ts_ns, True, -1, "USER_DATA", "other", flags=tuple(flags + ["malformed"]))
    kind, group, sub = params[5] >> 4, params[5] & 0x0F, params[6]
    gname, klass = USERDATA_GROUPS.get(group, (f"reserved-{group}", "other"))
    name = USERDATA_SUBFUNCTIONS.get((group, sub), f"{gname}/{sub}")
    objects: tuple[str, ...] = ()
    status = None
    if (group, sub) == (0x4, 0x01) and kind == 4 and len(data) >= 8:
        objects = (szl_request_label(data[4] << 8 | data[5], data[6] << 8 | data[7]),)
    if kind == 8 and len(params) >= 12 and (params[10] or params[11]):
        status = f"error-0x{params[10]:02x}{params[11]:02x}"
    elif kind == 8 and data and data[0] not in (0xFF, 0x00):
        status = RETURN_CODES.get(data[0], f"return-0x{data[0]:02x}")
    if (group, sub) == (0x7, 0x02):
        klass = "time"
    identity = szl_identity(data) if (group, sub) == (0x4, 0x01) and kind == 8 else ()
    return Message("s7comm", frame, ts_ns, kind != 8, group << 8 | sub, name, klass, None, objects, (), status,
                   ("s7", ref), tuple(flags), identity=identity)


# SZL 0x001c component identification: record index -> identity key
COMPONENTS = {1: "system_name", 2: "module_name", 3: "plant_id", 4: "copyright", 5: "serial", 7: "module_type"}


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def szl_identity(data: bytes) -> tuple[tuple[str, str], ...]:
    """What an SZL answer says of the CPU: 0x0011/0x0111 order number (MLFB), 0x001c/0x011c names and serial."""
    if len(data) < 12 or data[0] != 0xFF:
        return ()
    szl, size, count = data[4] << 8 | data[5], data[8] << 8 | data[9], data[10] << 8 | data[11]
    out: list[tuple[str, str]] = []
    for i in range(min(count, 32)):
        record = data[12 + i * size : 12 + (i + 1) * size]
        if len(record) < size or size < 4:
            break
        index = record[0] << 8 | record[1]
        if szl & 0xFF == 0x11 and index == 1:
            out.append(("order_number", _text(record[2:22])))
        elif szl & 0xFF == 0x1C and index in COMPONENTS:
            out.append((COMPONENTS[index], _text(record[2:34])))
    return tuple((k, v) for k, v in out if v)


def parse_s7plus(pdu: bytes, frame: int, ts_ns: int) -> Message:
    """S7comm-plus: version, then (after the 33-byte integrity part of protected sessions) opcode and function."""
    version = pdu[1] if len(pdu) > 1 else -1
    at = 4
    if len(pdu) > 4 + 33 and pdu[4] == 0x20 and pdu[4 + 33] in PLUS_OPCODES:
        at = 4 + 33
    if len(pdu) < at + 5 or pdu[at] not in PLUS_OPCODES:
        return Message("s7commplus", frame, ts_ns, True, -1, f"V{version}", "other", detail=f"version={version}")
    opcode, func = pdu[at], pdu[at + 3] << 8 | pdu[at + 4]
    seq = pdu[at + 7] << 8 | pdu[at + 8] if len(pdu) >= at + 9 else None
    name, klass = PLUS_FUNCTIONS.get(func, (f"reserved-0x{func:04x}", "other"))
    request = opcode == 0x31
    key = ("s7p", seq) if opcode in (0x31, 0x32) and seq is not None else None
    return Message("s7commplus", frame, ts_ns, request, func, name, klass, None, (), (), None, key, (),
                   f"version={version} opcode={PLUS_OPCODES[opcode]}")
