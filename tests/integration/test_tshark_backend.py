"""Cross-check: the native decoder and Wireshark's dissector (``--decoder tshark``) give the same ModbusEvents.

Both backends feed the same pairing stage, so an event-level comparison checks framing (which frame completes
which ADU), MBAP fields and the PDU decode at once: frames, transaction and unit ids, function and exception
codes, sub-functions, addresses, quantities, values and pairing (``unanswered`` / ``orphan_response``).

Exclusions, each narrow and explained (``otsentry/collectors/tshark.py`` documents Wireshark's field model):

* ADUs Wireshark never dissects: a partial ADU the native reassembler flushes as ``truncated`` (gap, end of
  capture), ADUs in segments tshark flags as (spurious) retransmissions that carry bytes it had not seen, and ADUs
  past a hole the capture never fills or in a segment far behind its stream (the ``hole`` and ``restart`` frames
  of ``test_tshark_counts``: tshark, with out-of-order reassembly as otsentry, waits for the lost bytes forever).
  Events touching those frames are left out on the native side, and so are their unpaired partners on the
  tshark side (the request or response that lost its pair).
* FC 1/2 responses: Wireshark shows as many bits as the request it matched asked for, the native decoder all
  ``byte_count * 8``: the tshark values must be the first ``quantity`` (or all) of the native ones.
* Not in Wireshark's field model at all (neither occurs in the shared captures): an exception response with
  exception code 0 (decoded as a normal response), and the values of diagnostics sub-function 3.
* Flags beyond pairing are each backend's own judgement (``length_mismatch``, ``malformed_pdu``, ``midstream``
  differ by design): only ``bad_protocol_id`` and ``reserved_function`` (except FC 90, which Wireshark names)
  are compared.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import fields, replace
from pathlib import Path

import pytest

from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.source import decode_capture
from otsentry.records import ModbusEvent
from otsentry.contracts.flags import FLAG_ORPHAN_RESPONSE, FLAG_TRUNCATED, FLAG_UNANSWERED
from otsentry.synth import modbus as mb
from otsentry.synth.pcapwriter import PcapWriter
from otsentry.synth.tcp import Endpoint, TcpConnection
from tests.helpers import IN_CI, SHARED_PCAPS, capture_params, require_tool
from tests.integration.tshark_frames import after_holes, restarts

pytestmark = pytest.mark.integration

CAPTURES = sorted(SHARED_PCAPS.glob("*.pcap"))
COMPARED_FLAGS = frozenset({FLAG_UNANSWERED, FLAG_ORPHAN_RESPONSE, "bad_protocol_id", "reserved_function"})
WIRESHARK_NAMED_RESERVED = frozenset({90})  # not in the public table, but Wireshark 4.0 names it (Unity)
RETRANSMISSIONS = "tcp.analysis.retransmission || tcp.analysis.spurious_retransmission"


def decode(path: Path, decoder: str, config: CollectorConfig | None = None) -> list[ModbusEvent]:
    run = decode_capture(path, config or CollectorConfig(), decoder=decoder)
    return [event for batch in run for event in batch.modbus.events(run.conns)]


def retransmitted_frames(tshark: str, path: Path) -> set[int]:
    """Frames tshark flags as retransmissions: Wireshark 4.0 does not hand them to the Modbus dissector."""
    out = subprocess.run([tshark, "-r", str(path), "-n", "-Y", RETRANSMISSIONS, "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, check=True).stdout
    return {int(line) for line in out.split()}


def _frames(event: ModbusEvent) -> set[int]:
    return {f for f in (event.request_frame, event.response_frame) if f is not None}


def _key(event: ModbusEvent) -> tuple:
    return (event.request_frame or 0, event.response_frame or 0, event.client_port, event.unit_id,
            event.transaction_id)


def excluded(native: list[ModbusEvent], wire: list[ModbusEvent], retransmitted: set[int]) -> tuple[set, set]:
    """Keys of the events left out of the comparison: (native side, tshark side); see the module docstring."""
    wire_frames = {f for e in wire for f in _frames(e)}
    gone = [e for e in native if FLAG_TRUNCATED in e.flags
            or any(f in retransmitted and f not in wire_frames for f in _frames(e))]
    partners = set()  # the half that survives on the tshark side, now unpaired
    for e in gone:
        if e.request_frame is not None and e.response_frame is not None:
            partners.add((e.request_frame, 0, *_key(e)[2:]))
            partners.add((0, e.response_frame, *_key(e)[2:]))
    return {_key(e) for e in gone}, partners


def _coil_prefix_ok(ours: ModbusEvent, theirs: ModbusEvent) -> bool:
    """FC 1/2: Wireshark's bits are the first ``quantity`` (or all) of the native ones."""
    n, t = ours.values, theirs.values
    allowed = {len(n)} | ({min(ours.quantity, len(n))} if ours.quantity is not None else set())
    return len(t) in allowed and n[: len(t)] == t


def compare(native: list[ModbusEvent], wire: list[ModbusEvent], retransmitted: set[int]) -> tuple[list[str], Counter]:
    """Mismatch descriptions (empty when the backends agree), and informational counts of flag differences."""
    skip_native, skip_wire = excluded(native, wire, retransmitted)
    ours = {_key(e): e for e in native if _key(e) not in skip_native}
    theirs = {_key(e): e for e in wire if _key(e) not in skip_wire}
    kept = (("native", [e for e in native if _key(e) not in skip_native]),
            ("tshark", [e for e in wire if _key(e) not in skip_wire]))
    problems = [f"{side}: several events share the key {k}" for side, events in kept
                for k, n in Counter(map(_key, events)).items() if n > 1]
    problems += [f"only native: {ours[k]}" for k in sorted(set(ours) - set(theirs))]
    problems += [f"only tshark: {theirs[k]}" for k in sorted(set(theirs) - set(ours))]
    info: Counter = Counter()
    if skip_native or skip_wire:
        info[f"excluded: {len(skip_native)} native event(s) Wireshark cannot show"] += 1
        info[f"excluded: {sum(_key(e) in skip_wire for e in wire)} tshark partner event(s)"] += 1
    for k in sorted(set(ours) & set(theirs)):
        a, b = ours[k], theirs[k]
        for name in sorted(set(a.flags) ^ set(b.flags)):
            info[f"{name} only {'native' if name in a.flags else 'tshark'} (FC {a.function_code})"] += 1
        if a.function_code in (1, 2) and a.response_frame is not None and _coil_prefix_ok(a, b):
            b = replace(b, values=a.values)
        if a.exception_code == 0 or (a.function_code == 8 and a.sub_function == 3):  # not in Wireshark's model
            b = replace(b, exception_code=a.exception_code, values=a.values)
        compared = COMPARED_FLAGS - ({"reserved_function"} if a.function_code in WIRESHARK_NAMED_RESERVED else set())
        a = replace(a, flags=tuple(f for f in a.flags if f in compared))
        b = replace(b, flags=tuple(f for f in b.flags if f in compared))
        for f in fields(ModbusEvent):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if x != y:
                problems.append(f"frames {k[:2]} tid {k[4]}: {f.name} native={x!r} tshark={y!r}")
    return problems, info


def _report(path: Path, problems: list[str], info: Counter, native: int, wire: int) -> str:
    head = f"{path.name}: {len(problems)} disagreement(s) between {native} native and {wire} tshark events"
    notes = "; ".join(k if k.startswith("excluded") else f"{k}: {v}" for k, v in sorted(info.items()))
    return "\n  ".join([head, *problems[:40]] + ([f"(not compared: {notes})"] if notes else []))


@pytest.mark.skipif(not CAPTURES and not IN_CI, reason=f"no captures in {SHARED_PCAPS}")
def test_captures_are_there() -> None:
    assert CAPTURES, f"no captures in {SHARED_PCAPS}: CI needs ../shared beside the clone"


@pytest.mark.parametrize("path", capture_params(CAPTURES))
def test_backends_agree_on_shared_capture(path: Path) -> None:
    tshark = require_tool("tshark")
    native, wire = decode(path, "native"), decode(path, "tshark")
    unseen = retransmitted_frames(tshark, path) | after_holes(tshark, path) | restarts(tshark, path)
    problems, info = compare(native, wire, unseen)
    print(_report(path, problems, info, len(native), len(wire)))
    assert not problems, _report(path, problems, info, len(native), len(wire))


# -- every function code, both directions: the shared captures exercise few PDU bodies -----------------------------

def _w(*words: int) -> bytes:
    return b"".join(w.to_bytes(2, "big") for w in words)


BITS = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1]
EVERY_FUNCTION = [  # (request PDU, response PDU)
    (mb.read_request(1, 10, 10), mb.read_bits_response(1, BITS)),
    (mb.read_request(2, 0, 3), mb.read_bits_response(2, [0, 1, 1])),
    (mb.read_request(3, 100, 3), mb.read_registers_response(3, [1, 65535, 1234])),
    (mb.read_request(4, 0, 125), mb.read_registers_response(4, list(range(125)))),
    (mb.write_single_coil(7, True), mb.write_single_coil(7, True)),
    (mb.write_single_coil(8, False), mb.write_single_coil(8, False)),
    (mb.write_single_register(9, 4660), mb.write_single_register(9, 4660)),
    (b"\x07", b"\x07\x55"),
    (mb.diagnostics(0, b"\x12\x34\x56\x78"), mb.diagnostics(0, b"\x12\x34\x56\x78")),
    (mb.diagnostics(1, b"\xff\x00"), mb.diagnostics(1, b"\xff\x00")),
    (mb.diagnostics(2), mb.diagnostics(2, b"\x00\x81")),
    (mb.diagnostics(11), mb.diagnostics(11, b"\x01\x08")),
    (b"\x0b", b"\x0b" + _w(0xFFFF, 0x0108)),
    (b"\x0c", b"\x0c\x09" + _w(0, 0x0108, 0x0121) + b"\x20\x00\x42"),
    (mb.write_multiple_coils_request(20, BITS), mb.write_multiple_response(15, 20, 10)),
    (mb.write_multiple_registers_request(1, [10, 258, 0]), mb.write_multiple_response(16, 1, 3)),
    (b"\x11", b"\x11\x04\x2a\xff\x01\x02"),
    (b"\x14\x0e\x06" + _w(4, 1, 2) + b"\x06" + _w(3, 9, 2),
     b"\x14\x0c\x05\x06" + _w(0x0DFE, 0x0020) + b"\x05\x06" + _w(0x33CD, 0x0040)),
    (b"\x15\x16\x06" + _w(4, 7, 3, 0x06AF, 0x04BE, 0x100D) + b"\x06" + _w(5, 1, 1, 7),
     b"\x15\x16\x06" + _w(4, 7, 3, 0x06AF, 0x04BE, 0x100D) + b"\x06" + _w(5, 1, 1, 7)),
    (b"\x16" + _w(4, 0xF2, 0x25), b"\x16" + _w(4, 0xF2, 0x25)),
    (b"\x17" + _w(3, 6, 14, 3) + b"\x06" + _w(0xFF, 0xFF, 0xFF), b"\x17\x0c" + _w(1, 2, 3, 4, 5, 6)),
    (b"\x18" + _w(0x04DE), b"\x18" + _w(8, 3, 0x1B8, 0x1284, 0x42)),
    (mb.read_device_id_request(1, 0), mb.read_device_id_response({0: "ACME", 1: "PLC-1", 2: "V1.2"})),
    (b"\x2b\x0d\x01\x02\x03", b"\x2b\x0d\x01\x02\x03"),
    (mb.read_request(3, 0, 200), mb.exception_response(3, 2)),
    (b"\x41\x01\x02", b"\x41\x03\x04"),
    (b"\x5a\x00\x01", b"\x5a\x00\xfe\x02"),
]


def write_every_function(path: Path, port: int, ipv6: bool) -> None:
    """One connection carrying EVERY_FUNCTION, some ADUs split over two segments, three in one segment."""
    client = Endpoint("2001:db8::10" if ipv6 else "10.0.0.10", 40000, "02:00:00:00:00:10")
    server = Endpoint("2001:db8::20" if ipv6 else "10.0.0.20", port, "02:00:00:00:00:20")
    conn = TcpConnection(client, server)
    ts = 1_700_000_000_000_000_000
    frames = conn.handshake(ts)
    for tid, (request, response) in enumerate(EVERY_FUNCTION, start=1):
        ts += 10_000_000
        # Split after the function code: Wireshark gives up on a first segment shorter than 8 bytes.
        frames += conn.send(ts, True, [mb.adu(tid, 1, request)], split_at=9 if tid % 7 == 3 else None)
        frames += conn.send(ts + 2_000_000, False, [mb.adu(tid, 1, response)])
    base = len(EVERY_FUNCTION) + 1
    frames += conn.send(ts + 20_000_000, True, [mb.adu(base + k, 1, mb.read_request(3, k, 2)) for k in range(3)],
                        coalesce=True)
    frames += conn.send(ts + 22_000_000, False,
                        [mb.adu(base + k, 1, mb.read_registers_response(3, [k, k + 1])) for k in range(3)],
                        coalesce=True)
    frames += conn.close(ts + 30_000_000)
    with PcapWriter(path) as writer:
        for frame_ts, frame in frames:
            writer.write(frame_ts, frame)


@pytest.mark.parametrize("port, ipv6", [(502, False), (5020, True)], ids=["ipv4-502", "ipv6-5020"])
def test_backends_agree_on_every_function_code(tmp_path: Path, port: int, ipv6: bool) -> None:
    require_tool("tshark")
    path = tmp_path / "every_function.pcap"
    write_every_function(path, port, ipv6)
    config = CollectorConfig(server_ports=frozenset({502, port}))
    native, wire = decode(path, "native", config), decode(path, "tshark", config)
    assert len(native) == len(EVERY_FUNCTION) + 3
    assert all(e.request_frame and e.response_frame for e in wire), "every request answered, as written"
    problems, info = compare(native, wire, set())
    assert not problems, _report(path, problems, info, len(native), len(wire))
