"""Wireshark's Modbus/TCP dissector as a second decoder backend, for cross-checks (``inspect --decoder tshark``).

Values come from the fields Wireshark's dissector puts in its tree (``modbus.regval_uint16``, ``modbus.bitval``,
``modbus.reference_num``, ``modbus.word_cnt``, ``modbus.diagnostic_code``, ``modbus.mei``, ...) and the framing
(which bytes make an ADU, which frame completes it) is Wireshark's TCP reassembly: an independent decode, never
``modbus_pdu`` on raw bytes. Where Wireshark only shows a byte field (``modbus.data``: written coils, single
registers, FC 7/17/23/24, file records), the bytes it delimits are split as the spec says, cut to its own counts.

Why tshark directly and not pyshark (measured on ``iti-ModbusTCP_ModbusTCP.pcap``: 15,387 frames, 15,976 ADUs,
2,147 frames with several ADUs): pyshark's PDML mode took 36 s (~440 ADUs/s); its JSON mode took 3 s but keeps
one ``mbtcp`` layer per frame (11,881 ADUs); ``-T fields`` cannot say which ADU of a frame a field belongs to;
``decode_as`` leaves other ports "unable to classify" (no request/response decode: ``-o mbtcp.tcp.port`` is the
dissector's own preference, used for that test). So tshark writes JSON with repeated keys kept (one
``mbtcp`` + ``modbus`` layer per ADU, ``_ws.malformed`` right after the ADU it concerns) and regular expressions
read it (``json.loads`` of tcp's analysis tree alone took longer than tshark's dissection): ~4,000 ADUs/s end
to end on that file on a loaded 2-core host, tshark's JSON output being most of the cost.

What Wireshark 4.0's field model cannot express (``tests/integration/test_tshark_backend.py`` says how the
comparison treats each):

* FC 1/2 responses show as many bits as the request Wireshark matched asked for (``byte_count * 8`` when it
  matched none); the native decoder keeps all ``byte_count * 8``.
* An exception response with exception code 0 is decoded as a normal response (Wireshark tests ``code != 0``).
* Diagnostics sub-function 3 shows one byte of its two-byte data (no value here); fixed-size diagnostics
  fields ignore trailing bytes.
* FC 90 has a name in Wireshark ("Unity (Schneider)"), so it is not ``reserved_function`` here.
* A segment tshark flags as a (spurious) retransmission is not dissected even when some of its bytes are new,
  and an ADU cut short by a gap or the end of the capture is never shown (no ``truncated`` flag here).
* Flags are Wireshark's judgement: ``malformed_pdu`` where it reports a malformed packet, ``length_mismatch``
  where its byte count disagrees with the bytes present (it then shows raw data, not values), ``midstream``
  from ``tcp.completeness`` (per conversation: a SYN from either side counts for both directions).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from decimal import Decimal
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import IO, Iterator

from otsentry.collectors.collector import CollectorConfig, CollectorStats
from otsentry.collectors.events import ConnTable
from otsentry.collectors.halves import HalfBatch, HalfBuilder
from otsentry.collectors.types import CaptureError, Conn
from otsentry.contracts.flags import FLAG_BITS

__all__ = ["BATCH_ADUS", "WIRESHARK_FUNCTIONS", "iter_halves", "tshark_command"]

BATCH_ADUS = 4096  # ADUs per yielded HalfBatch: large enough for numpy, small enough to stream
# modbus.func_code's value_string in Wireshark 4.0 (``tshark -G values``): the public codes plus 90.
WIRESHARK_FUNCTIONS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43, 90})
LAYERS = "frame ip ipv6 tcp mbtcp modbus _ws.malformed"
# Preferences the decode depends on, pinned against a user's Wireshark profile.
_PINNED_PREFS = ("modbus.mbus_register_format:UINT16", "mbtcp.desegment:TRUE", "tcp.desegment_tcp_streams:TRUE",
                 "tcp.analyze_sequence_numbers:TRUE", "tcp.reassemble_out_of_order:TRUE")
_V4_MAPPED = 0xFFFF << 32
_LOW64 = (1 << 64) - 1
_MALFORMED, _MISMATCH = FLAG_BITS["malformed_pdu"], FLAG_BITS["length_mismatch"]
_SYN_SENT, _SYN_ACK = 1, 2  # tcp.completeness bits
# Diagnostics data: these two are bytes, the delimiter is one byte of two; every other modbus.diagnostic.* is a word.
_DIAG_BYTES = (b"modbus.diagnostic.return_query_data.request", b"modbus.diagnostic.return_query_data.echo")
_DIAG_PARTIAL = b"modbus.diagnostic.ascii_input_delimiter"

_LAYER = re.compile(rb'\n {8}"([^"]+)": ')  # a layer of the packet (tshark indents two spaces per level)
_LEAF = re.compile(rb'"(Group \d+)": \{|"([^"]+)": "((?:[^"\\]|\\.)*)"')  # FC 20/21 group, or key: "value"
_HEADER = re.compile(
    rb'"(frame\.number|frame\.time_epoch|ip(?:v6)?\.(?:src|dst)|tcp\.(?:srcport|dstport|completeness))": "([^"]*)"'
)


class _Fields:
    """The leaf fields of one layer in tree order (subtrees flattened); ``groups``: FC 20/21 sub-records.

    Keys and values stay bytes until asked for: a register read response has hundreds of leaves.
    """

    __slots__ = ("values", "groups")

    def __init__(self, text: bytes = b"", start: int = 0, end: int = 0) -> None:
        self.values: dict[bytes, list[bytes]] = {}
        self.groups: list[_Fields] = []
        into = self
        for group, key, value in _LEAF.findall(text, start, end):
            if group:  # Wireshark puts nothing after the groups, so the rest belongs to them
                into = _Fields()
                self.groups.append(into)
            else:
                into.values.setdefault(key, []).append(value)

    def __contains__(self, name: str) -> bool:
        return name.encode() in self.values

    def int(self, name: str) -> int | None:
        vals = self.values.get(name.encode())
        return _num(vals[0]) if vals else None

    def ints(self, name: str) -> list[int]:
        return [_num(v) for v in self.values.get(name.encode(), ())]

    def data(self, name: str = "modbus.data") -> bytes | None:
        vals = self.values.get(name.encode())
        return bytes.fromhex(vals[0].decode().replace(":", "")) if vals else None


def _num(text: bytes | str) -> int:
    """A field's value as tshark prints it: decimal, or hex for BASE_HEX fields."""
    return int(text, 16) if text[:2] in (b"0x", "0x") else int(text)


def _words(data: bytes | None, limit: int | None = None) -> list[int]:
    """Big-endian uint16 words of ``data`` (cut to ``limit`` bytes, Wireshark's own count, when given)."""
    if data is None:
        return []
    if limit is not None:
        data = data[:limit]
    return [data[i] << 8 | data[i + 1] for i in range(0, len(data) - 1, 2)]


def _bits(data: bytes, count: int) -> list[int]:
    packed = int.from_bytes(data, "little")
    return [(packed >> i) & 1 for i in range(min(count, 8 * len(data)))]


Decoded = tuple[int | None, int | None, int | None, list[int], int]  # sub_function, address, quantity, values, flags


def _counted(f: _Fields, count: int | None) -> tuple[bytes, int]:
    """``modbus.data`` cut to Wireshark's byte count; length_mismatch when the two disagree."""
    data = f.data() or b""
    if count is None:
        return data, 0
    return data[:count], (_MISMATCH if len(data) != count else 0)


def _decode_body(fc: int, request: bool, f: _Fields) -> Decoded:
    """DecodedPdu semantics (see ``modbus_pdu``'s table) from the fields Wireshark showed for one PDU."""
    ref = f.int("modbus.reference_num")
    if fc in (1, 2):
        if request:
            return None, ref, f.int("modbus.bit_cnt"), [], 0
        return None, None, None, f.ints("modbus.bitval"), 0
    if fc in (3, 4) and request:
        return None, ref, f.int("modbus.word_cnt"), [], 0
    if fc == 16 and not request:
        return None, ref, f.int("modbus.word_cnt"), [], 0
    if fc in (3, 4, 16):  # registers read (response) or written (FC 16 request)
        regs, mask = f.ints("modbus.regval_uint16"), 0
        if not regs and "modbus.data" in f:  # Wireshark's byte count disagreed with the bytes present
            raw, _ = _counted(f, f.int("modbus.byte_cnt"))
            regs, mask = _words(raw), _MISMATCH
        if request:
            return None, ref, f.int("modbus.word_cnt"), regs, mask
        return None, None, None, regs, mask
    if fc == 5:
        raw = f.data() or b""
        if len(raw) == 1 and "modbus.padding" in f:
            raw += bytes([f.int("modbus.padding") or 0])
        if len(raw) < 2:
            return None, ref, None, [], 0
        value = raw[0] << 8 | raw[1]
        return None, ref, None, [1 if value == 0xFF00 else value], 0
    if fc == 6:
        return None, ref, None, _words(f.data(), 2), 0
    if fc == 7:
        return None, None, None, ([] if request else list((f.data() or b"")[:1])), 0
    if fc == 8:
        values = _words(f.data())
        for key, vals in f.values.items():
            if key in _DIAG_BYTES:
                values += _words(f.data(key.decode()))
            elif key.startswith(b"modbus.diagnostic.") and key != _DIAG_PARTIAL:
                values += [_num(v) for v in vals]
        return f.int("modbus.diagnostic_code"), None, None, values, 0
    if fc == 11:
        return None, None, None, ([] if request else f.ints("modbus.ev_status") + f.ints("modbus.ev_count")), 0
    if fc == 12:
        if request:
            return None, None, None, [], 0
        head = f.ints("modbus.ev_status") + f.ints("modbus.ev_count") + f.ints("modbus.ev_msg_count")
        return None, None, None, head + f.ints("modbus.event"), 0
    if fc == 15:
        if not request:
            return None, ref, f.int("modbus.bit_cnt"), [], 0
        qty = f.int("modbus.bit_cnt")
        raw, mask = _counted(f, f.int("modbus.byte_cnt"))
        return None, ref, qty, _bits(raw, qty or 0), mask
    if fc == 17:
        if request:
            return None, None, None, [], 0
        raw = f.data() or b""
        body = raw[1 : 1 + raw[0]] if raw else b""
        return None, None, None, list(body), (_MISMATCH if raw and len(raw) - 1 != raw[0] else 0)
    if fc in (20, 21):
        return _file_records(fc, request, f)
    if fc == 22:
        return None, ref, None, f.ints("modbus.and_mask") + f.ints("modbus.or_mask"), 0
    if fc == 23:
        raw, mask = _counted(f, f.int("modbus.byte_cnt"))
        if request:
            return None, f.int("modbus.read_reference_num"), f.int("modbus.read_word_cnt"), _words(raw), mask
        return None, None, None, _words(raw), mask
    if fc == 24:
        if request:
            return None, ref, None, [], 0
        return None, None, f.int("modbus.word_cnt"), _words(f.data()), 0
    if fc == 43:
        mei = f.int("modbus.mei")
        if mei != 14:
            return mei, None, None, [], 0
        if request:
            return mei, None, None, f.ints("modbus.read_device_id") + f.ints("modbus.object_id"), 0
        return mei, None, f.int("modbus.num_objects"), f.ints("modbus.object_id"), 0
    return None, None, None, [], 0  # FC 90 and codes Wireshark does not know: it shows raw data only


def _file_records(fc: int, request: bool, f: _Fields) -> Decoded:
    """FC 20/21: one Wireshark "Group" subtree per sub-request (file and record share ``reference_num_32``)."""
    values: list[int] = []
    total = 0
    mask = 0
    for g in f.groups:
        if fc == 20 and not request:  # sub-response: length, reference type, record words
            length = g.int("modbus.byte_cnt")
            raw = g.data() or b""
            values += _words(raw, None if length is None else length - 1)
            continue
        lref, count = g.int("modbus.reference_num_32"), g.int("modbus.word_cnt")
        if lref is None or count is None:
            break
        values += (lref >> 16, lref & 0xFFFF, count)
        total += count
        if fc == 21:
            raw = g.data() or b""
            mask |= _MISMATCH if len(raw) < 2 * count else 0
            values += _words(raw, 2 * count)
    if fc == 20 and not request:
        return None, None, None, values, mask
    return None, None, total, values, mask


def _decode(fc: int, request: bool, f: _Fields, classified: bool) -> tuple[int | None, Decoded]:
    """(exception code, decoded body) for one ``modbus`` layer."""
    exc = f.int("modbus.exception_code")
    if exc is not None or not classified:  # Wireshark decodes no body for exceptions or unclassified ADUs
        return exc, (None, None, None, [], 0)
    if fc not in WIRESHARK_FUNCTIONS:
        return None, (None, None, None, [], 0)
    return None, _decode_body(fc, request, f)


def _addr_key(text: str) -> tuple[int, int]:
    """IPv4 a.b.c.d -> ::ffff:a.b.c.d, split into 64-bit halves (the native collector's connection key)."""
    addr = ip_address(text)
    value = _V4_MAPPED | int(addr) if addr.version == 4 else int(addr)
    return value >> 64, value & _LOW64


def _addr_text(hi: int, lo: int) -> str:
    """The key back to text, as the native collector renders it: IPv4-mapped as a dotted quad."""
    if hi == 0 and lo >> 32 == 0xFFFF:
        return str(IPv4Address(lo & 0xFFFFFFFF))
    return IPv6Address(hi << 64 | lo).compressed


def _time_ns(text: str) -> int:
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def tshark_command(tshark: str, path: Path, ports: frozenset[int]) -> list[str]:
    """The tshark invocation: Modbus frames only, as JSON, the dissector's port preference set to ``ports``."""
    return [
        tshark, "-r", str(path), "-n", "-Y", "mbtcp", "-T", "json", "-J", LAYERS,
        "-o", "mbtcp.tcp.port:" + ",".join(str(p) for p in sorted(ports)),
        *(arg for pref in _PINNED_PREFS for arg in ("-o", pref)),
        "--disable-protocol", "opensafety",  # its heuristic may claim modbus.data bytes
    ]


def _packets(stream: IO[bytes]) -> Iterator[bytes]:
    """tshark's JSON array, one packet object at a time (only a packet's closing brace sits at indent 2)."""
    buf = b""
    while chunk := stream.read(1 << 20):
        buf += chunk
        parts = buf.split(b"\n  }")
        buf = parts.pop()
        yield from parts


def iter_halves(path: Path, config: CollectorConfig, conns: ConnTable, stats: CollectorStats) -> Iterator[HalfBatch]:
    """Every Modbus/TCP ADU Wireshark dissects in ``path``, as halves in capture order (batches of ``BATCH_ADUS``)."""
    tshark = shutil.which("tshark")
    if tshark is None:
        raise CaptureError(f"{path}: tshark not found: install it (apt-get install tshark) to use --decoder tshark")
    _summarise(tshark, Path(path), stats)
    ports = frozenset(config.server_ports)
    keys: dict[str, tuple[int, int]] = {}
    builder = HalfBuilder()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(tshark_command(tshark, Path(path), ports), stdout=subprocess.PIPE, stderr=err)
        try:
            assert proc.stdout is not None
            for packet in _packets(proc.stdout):
                _add_packet(builder, packet, ports, conns, keys)
                if len(builder) >= BATCH_ADUS:
                    yield builder.build()
                    builder = HalfBuilder()
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode:
            err.seek(0)
            _tshark_failed(path, err.read().decode("utf-8", "replace"), stats)
    if len(builder):
        yield builder.build()


def _add_packet(builder: HalfBuilder, packet: bytes, ports: frozenset[int], conns: ConnTable,
                keys: dict[str, tuple[int, int]]) -> None:
    """Add the ADUs of one packet (its JSON text): header fields, then one ``mbtcp`` layer per ADU."""
    layers = [(m.group(1), m.end()) for m in _LAYER.finditer(packet)]
    first = next((at for name, at in layers if name == b"mbtcp"), None)
    if first is None:
        return
    head: dict[bytes, str] = {}
    for m in _HEADER.finditer(packet, 0, first):  # the last (innermost) IP header wins
        name = m.group(1).replace(b"ipv6.", b"ip.")
        head[name] = m.group(2).decode()
    pending: list[list] = []  # [mbtcp fields, modbus fields, malformed] per ADU, in stream order
    for i, (name, at) in enumerate(layers):
        end = layers[i + 1][1] if i + 1 < len(layers) else len(packet)
        if name == b"mbtcp":
            pending.append([_Fields(packet, at, end), _Fields(), False])
        elif name == b"modbus" and pending:
            pending[-1][1] = _Fields(packet, at, end)
        elif name == b"_ws.malformed" and pending:
            pending[-1][2] = True
    frame, ts_ns = int(head.get(b"frame.number", "0")), _time_ns(head.get(b"frame.time_epoch", "0"))
    src, dst = head.get(b"ip.src", ""), head.get(b"ip.dst", "")
    sport, dport = int(head.get(b"tcp.srcport", "0")), int(head.get(b"tcp.dstport", "0"))
    completeness = _num(head.get(b"tcp.completeness", "0"))
    from_client = dport in ports
    classified = from_client != (sport in ports)  # Wireshark's query/response test
    client, server = (src, dst) if from_client else (dst, src)
    c_port, s_port = (sport, dport) if from_client else (dport, sport)
    for text in (client, server):
        if text not in keys:
            keys[text] = _addr_key(text)
    key = (*keys[client], c_port, *keys[server], s_port)
    conn = conns.intern(key, lambda: Conn(_addr_text(*key[0:2]), c_port, _addr_text(*key[3:5]), s_port))
    midstream = FLAG_BITS["midstream"] if not completeness & (_SYN_SENT if from_client else _SYN_ACK) else 0
    for mbtcp, fields, malformed in pending:
        fc = fields.int("modbus.func_code") or 0
        exc, (subfn, addr, qty, values, mask) = _decode(fc, from_client, fields, classified)
        mask |= midstream | (_MALFORMED if malformed else 0)
        if mbtcp.int("mbtcp.prot_id"):
            mask |= FLAG_BITS["bad_protocol_id"]
        if fc not in WIRESHARK_FUNCTIONS:
            mask |= FLAG_BITS["reserved_function"]
        builder.add(frame, ts_ns, conn, from_client, mbtcp.int("mbtcp.trans_id") or 0,
                    mbtcp.int("mbtcp.unit_id") or 0, fc, exc, subfn, addr, qty, tuple(values), mask)


def _summarise(tshark: str, path: Path, stats: CollectorStats) -> None:
    """Frames in the file and its time span, for stats (the JSON pass only sees Modbus frames)."""
    capinfos = shutil.which("capinfos")
    if capinfos is not None:
        out = subprocess.run([capinfos, "-T", "-c", "-a", "-e", "-S", "-M", str(path)], capture_output=True,
                             text=True)
        rows = [line.split("\t") for line in out.stdout.splitlines() if line.strip()]
        if out.returncode == 0 and len(rows) == 2:
            info = dict(zip(rows[0], rows[1]))
            count, first, last = (info.get(k, "") for k in ("Number of packets", "Start time", "End time"))
            if count.isdigit():
                _add_span(stats, int(count), first, last)
                return
    out = subprocess.run([tshark, "-r", str(path), "-n", "-T", "fields", "-e", "frame.time_epoch"],
                         capture_output=True, text=True)
    times = sorted(out.stdout.split(), key=Decimal)
    _add_span(stats, len(times), times[0] if times else "", times[-1] if times else "")


def _add_span(stats: CollectorStats, count: int, first: str, last: str) -> None:
    stats.packets += count
    try:
        t0, t1 = _time_ns(first) / 1e9, _time_ns(last) / 1e9
    except ValueError:  # "n/a": no packets
        return
    stats.first_ts = t0 if stats.first_ts is None else min(stats.first_ts, t0)
    stats.last_ts = t1 if stats.last_ts is None else max(stats.last_ts, t1)


def _tshark_failed(path: Path, stderr: str, stats: CollectorStats) -> None:
    """A capture cut short still gave its packets (a warning, as the native reader does); anything else fails."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and "Running as user" not in ln]
    message = lines[-1].removeprefix("tshark: ") if lines else "failed"
    if "cut short" in message or "damaged or corrupt" in message:
        stats.warnings.append(f"{path}: {message}")
        return
    raise CaptureError(f"{path}: tshark: {message}")
