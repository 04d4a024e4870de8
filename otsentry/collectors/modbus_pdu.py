"""Modbus application-layer (PDU) decoder, declared as data: one ``FUNCTIONS`` row per public function code.

In the spirit of scapy's ``contrib/modbus.py`` (a table from function code to layout), but it never raises and it
never truncates: a read response carries every register its byte count announces (scapy stops at 123), odd inputs
are decoded as far as they go and flagged, and a detector downstream decides what is suspicious. Quantities
outside the spec's limits (0, > 125 registers, > 2000 coils) are decoded as-is and not flagged.

``decode_pdu(pdu, is_request)`` takes the PDU (function code byte first, MBAP header removed) and returns a
``DecodedPdu``. Fields are set only when the PDU itself carries them (a read response has no address or quantity:
pairing takes those from the request). What each code decodes into (req = request, resp = response)::

    code  req: start_address / quantity / values          resp: start_address / quantity / values
    1, 2  addr / qty / -                                  - / - / byte_count*8 bits (0/1), LSB of byte 1 first
    3, 4  addr / qty / -                                  - / - / byte_count//2 registers (no cap at 123 or 125)
    5     addr / - / (1,) for 0xFF00, (0,) for 0x0000, (raw,) + malformed_pdu otherwise   same as request
    6     addr / - / (value,)                             same as request
    7     - / - / -                                       - / - / (status byte,)
    8     sub_function = sub-function, values = data words (both directions)
    11    - / - / -                                       - / - / (status, event count)
    12    - / - / -                                       - / - / (status, event count, message count, *event bytes)
    15    addr / qty / exactly qty bits (fewer if short)  addr / qty / -
    16    addr / qty / registers written                  addr / qty / -
    17    - / - / -                                       - / - / data bytes (server id, run indicator, extra)
    20    - / sum of record lengths / (file, record, length) per sub-request
                                                          - / - / record words of all sub-responses, in order
    21    - / sum of record lengths / (file, record, length, *words) per sub-request (response is an echo)
    22    addr / - / (and_mask, or_mask)                  same as request
    23    READ addr / READ qty / values WRITTEN           - / - / registers read   (write address not kept)
    24    FIFO pointer address / - / -                    - / FIFO count / FIFO values
    43    sub_function = MEI type. MEI 14 (read device identification): req values = (read device id code,
          object id); resp quantity = number of objects announced, values = object ids in order (object text
          is left out: it is not a number). MEI 13 (CANopen) and reserved MEI types: sub_function only.

An exception response (function byte & 0x80) decodes to ``function_code`` = byte & 0x7F and ``exception_code``.
Flags (names from ``otsentry.records``): ``malformed_pdu`` when the PDU is shorter than its fixed part (what is there
is still decoded), a byte count that is odd where words are expected, a bad reference type in file records, a
coil value other than 0xFF00/0x0000, an exception shape in a request, or an empty PDU (function_code 0);
``length_mismatch`` when a byte count disagrees with the data that follows or with the quantity, or bytes trail
a fixed-size PDU; ``reserved_function`` for any code not in ``FUNCTIONS`` (user-defined 65-72 and 100-110,
vendor codes such as 90/UMAS, everything else), decoded with only ``function_code`` set (an exception response for
such a code keeps its ``exception_code`` and gets the flag too).

Names (``modbus_names``, details in its docstring): ``function_name(code)`` is Zeek's name or ``unknown-<code>``.
Zeek's ``modbus.log`` ``func`` column is ``zeek_func_name(raw byte)``: the table name for a known byte, the
cleared code's name + ``_EXCEPTION`` when bit 0x80 is set and the cleared code is known (0x83 ->
READ_HOLDING_REGISTERS_EXCEPTION), else ``unknown-<raw byte in decimal>`` (0x9C -> unknown-156, not unknown-28);
``exception`` is ``exception_name(exception_code)`` on exception responses only.
"""

from __future__ import annotations

import functools
import struct
import sys
from array import array
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from otsentry.collectors.modbus_names import (  # names re-exported: callers import them from here
    MEI_CANOPEN_GENERAL_REFERENCE,
    MEI_READ_DEVICE_IDENTIFICATION,
    exception_name,
    function_name,
    zeek_func_name,
)
from otsentry.collectors.types import DecodedPdu
from otsentry.contracts.flags import FLAG_LENGTH_MISMATCH, FLAG_MALFORMED_PDU, FLAG_RESERVED_FUNCTION

__all__ = [
    "FUNCTIONS",
    "MEI_TYPES",
    "Decoder",
    "Field",
    "FunctionSpec",
    "Layout",
    "MeiSpec",
    "decode_pdu",
    "exception_name",
    "function_name",
    "zeek_func_name",
]

Decoder = Callable[[int, bytes], DecodedPdu]
"""(function code, PDU body after the function code byte) -> DecodedPdu. Must not raise."""

# Flags are accumulated as a bit mask and turned into a shared frozenset at the end: no set building per call.
_M, _L, _R = 1, 2, 4
_FLAG_BITS = ((_M, FLAG_MALFORMED_PDU), (_L, FLAG_LENGTH_MISMATCH), (_R, FLAG_RESERVED_FUNCTION))
_FLAG_SETS = tuple(frozenset(name for bit, name in _FLAG_BITS if mask & bit) for mask in range(8))

_WORD_STRUCTS = tuple(struct.Struct(f">{n}H") for n in range(128))  # a u8 byte count holds at most 127 words
_SWAP = sys.byteorder == "little"


def _words(data: bytes, count: int) -> tuple[int, ...]:
    """``count`` big-endian uint16 from the start of ``data`` (which holds at least 2*count bytes)."""
    if count < 128:
        return _WORD_STRUCTS[count].unpack_from(data)
    out = array("H")
    out.frombytes(bytes(data[: 2 * count]))
    if _SWAP:
        out.byteswap()
    return tuple(out)


def _bits(data: bytes, count: int) -> tuple[int, ...]:
    """``count`` packed coils, least significant bit of the first byte first (spec section 6.1)."""
    packed = int.from_bytes(data, "little")
    return tuple((packed >> i) & 1 for i in range(count))


# Tails: the variable part after a Layout's fixed fields. (rest of body, expected item count) -> (values, flag mask).
Tail = Callable[[bytes, Optional[int]], tuple[tuple[int, ...], int]]


def _counted(data: bytes) -> tuple[bytes, int]:
    """Split off a u8 byte count; the mask says whether the data that follows disagrees with it."""
    count = data[0]
    return data[1 : 1 + count], (_L if len(data) - 1 != count else 0)


def tail_bits(data: bytes, expected: int | None) -> tuple[tuple[int, ...], int]:
    """Byte count + packed bits: ``expected`` bits when the quantity is in the PDU, else byte_count*8."""
    if not data:
        return (), _M
    packed, mask = _counted(data)
    if expected is None:
        return _bits(packed, 8 * len(packed)), mask
    if data[0] != (expected + 7) // 8:
        mask |= _L
    return _bits(packed, min(expected, 8 * len(packed))), mask


def tail_words(data: bytes, expected: int | None) -> tuple[tuple[int, ...], int]:
    """Byte count + uint16 registers; ``expected`` registers when the quantity is in the PDU."""
    if not data:
        return (), _M
    regs, mask = _counted(data)
    if data[0] & 1:
        mask |= _M
    if expected is not None and data[0] != 2 * expected:
        mask |= _L
    return _words(regs, len(regs) // 2), mask


def tail_bytes(data: bytes, expected: int | None) -> tuple[tuple[int, ...], int]:
    """Byte count + opaque bytes, kept as numbers (report server id)."""
    if not data:
        return (), _M
    raw, mask = _counted(data)
    return tuple(raw), mask


def tail_rest_words(data: bytes, expected: int | None) -> tuple[tuple[int, ...], int]:
    """uint16 words up to the end of the PDU (no count byte): diagnostics data, FIFO values."""
    count = len(data) // 2
    mask = _M if len(data) & 1 else 0
    if expected is not None and count != expected:
        mask |= _L
    return _words(data, count), mask


def tail_rest_bytes(data: bytes, expected: int | None) -> tuple[tuple[int, ...], int]:
    """Bytes up to the end of the PDU (comm event log events); a preceding byte_count field checks the length."""
    return tuple(data), 0


@dataclass(frozen=True, slots=True)
class Field:
    """One fixed field: a struct code (B = u8, H = u16 big-endian) and what it means in a DecodedPdu.

    Roles: address, quantity (stored, and the item count a tail is checked against), count (item count of the
    tail, checked, not stored), byte_count (bytes after this field to the end of the PDU, checked), sub_function,
    value (appended to values), coil (0xFF00 -> 1, 0x0000 -> 0, else raw + malformed), skip.
    """

    fmt: str
    role: str


ADDR = Field("H", "address")
QTY = Field("H", "quantity")
COUNT = Field("H", "count")
VALUE = Field("H", "value")
VALUE8 = Field("B", "value")
COIL = Field("H", "coil")
SUB = Field("H", "sub_function")
SUB8 = Field("B", "sub_function")
SKIP = Field("H", "skip")
SKIP8 = Field("B", "skip")
QTY8 = Field("B", "quantity")
BYTE_COUNT8 = Field("B", "byte_count")
BYTE_COUNT16 = Field("H", "byte_count")


class Layout:
    """A PDU body of fixed fields, optionally followed by a variable tail; callable as a ``Decoder``.

    Role positions are resolved once here, so a call is one ``unpack_from`` plus tuple indexing.
    """

    __slots__ = ("fields", "tail", "_prefixes", "_offsets", "_addr", "_qty", "_sub", "_bc", "_expect", "_values",
                 "_coils")

    def __init__(self, *fields: Field, tail: Tail | None = None) -> None:
        self.fields = fields
        self.tail = tail
        # _prefixes[i] unpacks the first i fields: [-1] is the whole layout, the others serve short PDUs.
        self._prefixes = tuple(struct.Struct(">" + "".join(f.fmt for f in fields[:i])) for i in range(len(fields) + 1))
        self._offsets = tuple(s.size for s in self._prefixes[1:])  # end offset of each field
        roles = [f.role for f in fields]

        def index(role: str) -> int | None:
            return roles.index(role) if role in roles else None

        self._addr, self._qty, self._sub = index("address"), index("quantity"), index("sub_function")
        self._bc = index("byte_count")
        count = index("count")
        self._expect = count if count is not None else self._qty
        self._values = tuple(i for i, r in enumerate(roles) if r in ("value", "coil"))
        self._coils = frozenset(i for i, r in enumerate(roles) if r == "coil")

    def __call__(self, fc: int, body: bytes) -> DecodedPdu:
        layout = self._prefixes[-1]
        mask = 0
        short = len(body) < layout.size
        if not short:
            f: tuple[int | None, ...] = layout.unpack_from(body)
            rest = body[layout.size :]
            if self._bc is not None and f[self._bc] != len(body) - self._offsets[self._bc]:
                mask |= _L
        else:  # shorter than the fixed part: decode the whole fields that are there
            whole = sum(1 for end in self._offsets if end <= len(body))
            f = self._prefixes[whole].unpack_from(body) + (None,) * (len(self.fields) - whole)
            rest, mask = b"", _M
        values: list[int] = []
        for i in self._values:
            v = f[i]
            if v is None:
                continue
            if i in self._coils:
                if v == 0xFF00:
                    v = 1
                elif v != 0:
                    mask |= _M
            values.append(v)
        if self.tail is not None and not short:
            extra, tail_mask = self.tail(rest, None if self._expect is None else f[self._expect])
            values.extend(extra)
            mask |= tail_mask
        elif rest:
            mask |= _L
        return DecodedPdu(
            function_code=fc,
            sub_function=None if self._sub is None else f[self._sub],
            start_address=None if self._addr is None else f[self._addr],
            quantity=None if self._qty is None else f[self._qty],
            values=tuple(values),
            flags=_FLAG_SETS[mask],
        )


_FILE_REF = struct.Struct(">BHHH")  # reference type (always 6), file number, record number, record length
_FILE_REF_TYPE = 6


def _read_file_request(fc: int, body: bytes) -> DecodedPdu:
    """FC 20 request: 7-byte sub-requests -> (file, record, length) triples; quantity = words asked for."""
    if not body:
        return DecodedPdu(fc, flags=_FLAG_SETS[_M])
    data, mask = _counted(body)
    if len(data) % _FILE_REF.size:
        mask |= _M
    values: list[int] = []
    for off in range(0, len(data) - _FILE_REF.size + 1, _FILE_REF.size):
        ref, file_no, record, length = _FILE_REF.unpack_from(data, off)
        mask |= _M if ref != _FILE_REF_TYPE else 0
        values += (file_no, record, length)
    return DecodedPdu(fc, quantity=sum(values[2::3]), values=tuple(values), flags=_FLAG_SETS[mask])


def _read_file_response(fc: int, body: bytes) -> DecodedPdu:
    """FC 20 response: sub-responses (length, reference type, words) -> all record words, in order."""
    if not body:
        return DecodedPdu(fc, flags=_FLAG_SETS[_M])
    data, mask = _counted(body)
    values: list[int] = []
    pos = 0
    while pos < len(data):
        length = data[pos]  # bytes that follow: reference type + record data
        if pos + 1 + length > len(data):
            mask |= _L
        if not length & 1 or (pos + 1 < len(data) and data[pos + 1] != _FILE_REF_TYPE):
            mask |= _M
        chunk = data[pos + 2 : pos + 1 + length]
        values.extend(_words(chunk, len(chunk) // 2))
        pos += 1 + length
    return DecodedPdu(fc, values=tuple(values), flags=_FLAG_SETS[mask])


def _write_file(fc: int, body: bytes) -> DecodedPdu:
    """FC 21 request and its echo: (file, record, length, *words) per sub-request; quantity = words written."""
    if not body:
        return DecodedPdu(fc, flags=_FLAG_SETS[_M])
    data, mask = _counted(body)
    values: list[int] = []
    total = pos = 0
    while pos < len(data):
        if pos + _FILE_REF.size > len(data):
            mask |= _M
            break
        ref, file_no, record, length = _FILE_REF.unpack_from(data, pos)
        pos += _FILE_REF.size
        mask |= _M if ref != _FILE_REF_TYPE else 0
        chunk = data[pos : pos + 2 * length]
        mask |= _L if len(chunk) < 2 * length else 0
        values += (file_no, record, length, *_words(chunk, len(chunk) // 2))
        total += length
        pos += 2 * length
    return DecodedPdu(fc, quantity=total, values=tuple(values), flags=_FLAG_SETS[mask])


# MEI type, read device id code, conformity level, more follows, next object id, number of objects.
_DEVICE_ID_HEAD = Layout(SUB8, SKIP8, SKIP8, SKIP8, SKIP8, QTY8)


def _device_id_response(fc: int, body: bytes) -> DecodedPdu:
    """MEI 14 response: header (MEI, read code, conformity, more follows, next id, object count), then objects
    (id, length, text). Keeps the object ids; the text is not a number and is left out."""
    head = _DEVICE_ID_HEAD(fc, body[:6])
    if head.quantity is None:
        return head
    announced = head.quantity
    ids: list[int] = []
    mask, pos, end = 0, 6, len(body)
    while pos < end and len(ids) < announced:
        if pos + 2 > end:
            mask |= _L
            break
        ids.append(body[pos])
        pos += 2 + body[pos + 1]
    if pos != end or len(ids) != announced:
        mask |= _L
    return DecodedPdu(fc, sub_function=head.sub_function, quantity=announced, values=tuple(ids), flags=_FLAG_SETS[mask])


def _mei_only(fc: int, body: bytes) -> DecodedPdu:
    """MEI types whose payload we do not interpret (CANopen, reserved): the MEI type alone."""
    return DecodedPdu(fc, sub_function=body[0]) if body else DecodedPdu(fc, flags=_FLAG_SETS[_M])


@dataclass(frozen=True, slots=True)
class MeiSpec:
    """One MEI type of function 43: its name and decoders for the body (MEI type byte first)."""

    name: str
    request: Decoder
    response: Decoder


MEI_TYPES: Mapping[int, MeiSpec] = {
    MEI_CANOPEN_GENERAL_REFERENCE: MeiSpec("CANOPEN_GENERAL_REFERENCE", _mei_only, _mei_only),
    MEI_READ_DEVICE_IDENTIFICATION: MeiSpec(
        "READ_DEVICE_IDENTIFICATION", Layout(SUB8, VALUE8, VALUE8), _device_id_response
    ),
}


def _mei_request(fc: int, body: bytes) -> DecodedPdu:
    spec = MEI_TYPES.get(body[0]) if body else None
    return (spec.request if spec else _mei_only)(fc, body)


def _mei_response(fc: int, body: bytes) -> DecodedPdu:
    spec = MEI_TYPES.get(body[0]) if body else None
    return (spec.response if spec else _mei_only)(fc, body)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One public function code: its (Zeek) name and how to decode each direction."""

    name: str
    request: Decoder
    response: Decoder


_NO_DATA = Layout()
_ADDR_QTY = Layout(ADDR, QTY)

FUNCTIONS: Mapping[int, FunctionSpec] = {
    0x01: FunctionSpec("READ_COILS", _ADDR_QTY, Layout(tail=tail_bits)),
    0x02: FunctionSpec("READ_DISCRETE_INPUTS", _ADDR_QTY, Layout(tail=tail_bits)),
    0x03: FunctionSpec("READ_HOLDING_REGISTERS", _ADDR_QTY, Layout(tail=tail_words)),
    0x04: FunctionSpec("READ_INPUT_REGISTERS", _ADDR_QTY, Layout(tail=tail_words)),
    0x05: FunctionSpec("WRITE_SINGLE_COIL", Layout(ADDR, COIL), Layout(ADDR, COIL)),
    0x06: FunctionSpec("WRITE_SINGLE_REGISTER", Layout(ADDR, VALUE), Layout(ADDR, VALUE)),
    0x07: FunctionSpec("READ_EXCEPTION_STATUS", _NO_DATA, Layout(VALUE8)),
    0x08: FunctionSpec("DIAGNOSTICS", Layout(SUB, tail=tail_rest_words), Layout(SUB, tail=tail_rest_words)),
    0x0B: FunctionSpec("GET_COMM_EVENT_COUNTER", _NO_DATA, Layout(VALUE, VALUE)),
    0x0C: FunctionSpec("GET_COMM_EVENT_LOG", _NO_DATA, Layout(BYTE_COUNT8, VALUE, VALUE, VALUE, tail=tail_rest_bytes)),
    0x0F: FunctionSpec("WRITE_MULTIPLE_COILS", Layout(ADDR, QTY, tail=tail_bits), _ADDR_QTY),
    0x10: FunctionSpec("WRITE_MULTIPLE_REGISTERS", Layout(ADDR, QTY, tail=tail_words), _ADDR_QTY),
    0x11: FunctionSpec("REPORT_SLAVE_ID", _NO_DATA, Layout(tail=tail_bytes)),
    0x14: FunctionSpec("READ_FILE_RECORD", _read_file_request, _read_file_response),
    0x15: FunctionSpec("WRITE_FILE_RECORD", _write_file, _write_file),
    0x16: FunctionSpec("MASK_WRITE_REGISTER", Layout(ADDR, VALUE, VALUE), Layout(ADDR, VALUE, VALUE)),
    0x17: FunctionSpec(
        "READ_WRITE_MULTIPLE_REGISTERS", Layout(ADDR, QTY, SKIP, COUNT, tail=tail_words), Layout(tail=tail_words)
    ),
    0x18: FunctionSpec("READ_FIFO_QUEUE", Layout(ADDR), Layout(BYTE_COUNT16, QTY, tail=tail_rest_words)),
    0x2B: FunctionSpec("ENCAP_INTERFACE_TRANSPORT", _mei_request, _mei_response),
}

_EMPTY = DecodedPdu(function_code=0, flags=_FLAG_SETS[_M])
_RESERVED_PDUS = tuple(DecodedPdu(function_code=code, flags=_FLAG_SETS[_R]) for code in range(128))


def decode_pdu(pdu: bytes, is_request: bool) -> DecodedPdu:
    """Decode one Modbus PDU (function code byte first). Never raises: problems become flags."""
    if not pdu:
        return _EMPTY
    raw = pdu[0]
    if raw & 0x80:
        fc = raw & 0x7F
        mask = (0 if fc in FUNCTIONS else _R) | (_M if is_request else 0)  # clients never send exceptions
        if len(pdu) < 2:
            return DecodedPdu(function_code=fc, flags=_FLAG_SETS[mask | _M])
        return DecodedPdu(function_code=fc, exception_code=pdu[1], flags=_FLAG_SETS[mask | (_L if len(pdu) > 2 else 0)])
    spec = FUNCTIONS.get(raw)
    if spec is None:
        return _RESERVED_PDUS[raw]
    return (spec.request if is_request else spec.response)(raw, pdu[1:])


@functools.lru_cache(maxsize=16384)
def decode_pdu_cached(pdu: bytes, is_request: bool) -> DecodedPdu:
    """``decode_pdu`` memoised: pollers repeat the same requests (and often the same responses) all day long.

    Safe because DecodedPdu is immutable; ``pdu`` must be ``bytes`` (hashable).
    """
    return decode_pdu(pdu, is_request)
