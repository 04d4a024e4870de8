"""Which OT protocol a conversation speaks, from its first payload bytes (whatever the port): Zeek's dynamic
protocol detection, declared as data.

Each signature is a pure test of one packet's payload: a start byte or magic, a length field that matches the
payload, a code from the protocol's table, a checksum where the protocol has one (DNP3's header CRC). A
conversation is named by the first signature its first payloads match. A few IT protocols (TLS, HTTP, SSH,
Remote Desktop) are recognised too: on a PLC's port they are what an analyst wants named. ``cotp`` (the ISO transport under
S7comm, S7comm-plus and MMS) is a weak match: a connection request says no more, so a later data TPDU may
still name what it carries.
"""

from __future__ import annotations

from typing import Callable

from otsentry.collectors.ics.dnp3_link import crc16

__all__ = ["SIGNATURES", "WEAK", "guess_protocol"]

WEAK = frozenset({"cotp"})

_MODBUS_CODES = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43})
_ENIP_COMMANDS = frozenset({0x0004, 0x0063, 0x0064, 0x0065, 0x0066, 0x006F, 0x0070})
_IEC104_U = frozenset({0x07, 0x0B, 0x13, 0x23, 0x43, 0x83})  # STARTDT, STOPDT, TESTFR act/con
_COTP_TYPES = frozenset({0xE0, 0xD0, 0x80, 0xC0, 0x70, 0x60, 0x50, 0x20, 0x10})  # CR CC DR DC ER RJ AK EA ED
_OPCUA = frozenset({b"HEL", b"ACK", b"OPN", b"MSG", b"CLO", b"ERR", b"RHE"})
_ISO_SESSION = frozenset({0x0D, 0x0E, 0x01, 0x05, 0x0C, 0x09, 0x0A, 0x19})  # CN AC DT/GT RF FN DN AB NF


def _modbus(b: bytes) -> bool:
    if len(b) < 8 or b[2] or b[3]:
        return False
    length = b[4] << 8 | b[5]
    return 2 <= length <= 254 and length + 6 <= len(b) and (b[7] & 0x7F) in _MODBUS_CODES


def _dnp3(b: bytes) -> bool:
    return len(b) >= 10 and b[0] == 0x05 and b[1] == 0x64 and b[2] >= 5 \
        and crc16(bytes(b[:8])) == (b[8] | b[9] << 8)


def _iec104(b: bytes) -> bool:
    if len(b) < 6 or b[0] != 0x68 or not 4 <= b[1] <= 253 or len(b) < b[1] + 2:
        return False
    if b[2] & 1 == 0:  # I-format: an ASDU follows
        return b[1] >= 10
    if b[2] & 3 == 1:  # S-format
        return b[1] == 4 and b[2] == 1 and b[3] == 0
    return b[1] == 4 and b[2] in _IEC104_U and b[3] == 0 and b[4] == 0 and b[5] == 0


def _tpkt(b: bytes) -> str | None:
    """TPKT + COTP: what the data TPDU carries (S7comm 0x32, S7comm-plus 0x72, an ISO session SPDU: MMS)."""
    if len(b) < 4 or b[0] != 3 or b[1] != 0 or (b[2] << 8 | b[3]) < 7:
        return None
    if len(b) < 7:  # a TPKT header sent alone (some stacks write the header and the TPDU apart)
        return "cotp" if len(b) == 4 else None
    li, kind = b[4], b[5] & 0xF0
    if kind == 0xF0 and li == 2 and len(b) > 7:
        return {0x32: "s7comm", 0x72: "s7commplus"}.get(b[7]) or \
            ("mms" if b[7] in _ISO_SESSION or 0xA0 <= b[7] <= 0xAD else "cotp")  # session SPDU, or a bare MMS PDU
    if kind == 0xE0 and b"Cookie: mstshash=" in b[11:40]:
        return "rdp"  # Remote Desktop opens with an X.224 connection request too
    return "cotp" if kind in _COTP_TYPES and li + 5 <= (b[2] << 8 | b[3]) else None


def _enip(b: bytes) -> bool:
    return len(b) >= 24 and (b[0] | b[1] << 8) in _ENIP_COMMANDS and (b[2] | b[3] << 8) + 24 == len(b) \
        and b[20:24] == b"\0\0\0\0"


def _opcua(b: bytes) -> bool:
    return len(b) >= 8 and bytes(b[:3]) in _OPCUA and b[3] in b"FCA" \
        and 8 <= int.from_bytes(b[4:8], "little") <= 1 << 24


def _bacnet(b: bytes) -> bool:
    return len(b) >= 4 and b[0] == 0x81 and b[1] <= 0x0C and (b[2] << 8 | b[3]) == len(b)


def _fins(b: bytes) -> bool:
    return len(b) >= 16 and bytes(b[:4]) == b"FINS"


def _melsec(b: bytes) -> bool:
    """MC protocol 3E frame, binary (subheader 0x5000 request, 0xD000 response) with its data length."""
    return len(b) >= 11 and bytes(b[:2]) in (b"\x50\x00", b"\xd0\x00") and (b[7] | b[8] << 8) + 9 == len(b)


def _fox(b: bytes) -> bool:
    return bytes(b[:6]) in (b"fox a ", b"fox s ")


def _hart_ip(b: bytes) -> bool:
    return len(b) >= 8 and b[0] in (1, 2) and b[1] <= 3 and b[2] in (0, 1, 2, 3, 128) \
        and (b[6] << 8 | b[7]) == len(b)


def _mqtt(b: bytes) -> bool:
    return len(b) >= 10 and b[0] == 0x10 and (bytes(b[2:8]) == b"\0\x04MQTT" or bytes(b[2:10]) == b"\0\x06MQIsdp")


def _tls(b: bytes) -> bool:
    return len(b) >= 6 and b[0] == 0x16 and b[1] == 3 and b[2] <= 4 and b[5] in (1, 2)  # handshake: hello


def _http(b: bytes) -> bool:
    return bytes(b[:8]).split(b" ", 1)[0] in (b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS") \
        or bytes(b[:8]) == b"HTTP/1.1" or bytes(b[:8]) == b"HTTP/1.0"


def _ssh(b: bytes) -> bool:
    return bytes(b[:4]) == b"SSH-"


def _named(test: Callable[[bytes], bool], name: str) -> Callable[[bytes], str | None]:
    return lambda b: name if test(b) else None


# transport -> the tests in the order tried (the strictest first); each returns a protocol name or None.
SIGNATURES: dict[str, tuple[Callable[[bytes], str | None], ...]] = {
    "tcp": (_named(_dnp3, "dnp3"), _named(_enip, "enip"), _tpkt, _named(_iec104, "iec104"),
            _named(_opcua, "opcua"), _named(_fins, "omron-fins"), _named(_melsec, "melsec"),
            _named(_hart_ip, "hart-ip"), _named(_fox, "niagara-fox"), _named(_mqtt, "mqtt"),
            _named(_modbus, "modbus"), _named(_tls, "tls"), _named(_http, "http"), _named(_ssh, "ssh")),
    "udp": (_named(_dnp3, "dnp3"), _named(_bacnet, "bacnet"), _named(_enip, "enip"),
            _named(_hart_ip, "hart-ip"), _named(_modbus, "modbus")),
}


def guess_protocol(transport: str, payload: bytes) -> str | None:
    """The OT protocol this payload is the start of (see ``SIGNATURES``), or None."""
    for test in SIGNATURES.get(transport, ()):
        name = test(payload)
        if name is not None:
            return name
    return None
