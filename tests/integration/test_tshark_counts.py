"""The native decoder frames as many Modbus/TCP ADUs as Wireshark does, frame by frame, on every shared capture.

tshark's count is ``tshark -o tcp.reassemble_out_of_order:TRUE -r F -Y mbtcp -T fields -e frame.number -e
mbtcp.trans_id`` (one comma-separated transaction id per ADU of the frame): Wireshark with out-of-order segments
put back in sequence, as otsentry and the receiving PLC do. The native count is every half of every event (its
request and response frames), which must add up to ``run.stats.modbus_adus`` (complete ADUs) plus ``run.stats.truncated_adus``.

A frame whose counts differ must be explained by one of two Wireshark 4.0 behaviours, found on these captures
with ``tshark -r F -Y "tcp.stream == N" -T fields -e frame.number -e tcp.seq -e tcp.len -e tcp.analysis.flags``
(Wireshark's default, without out-of-order reassembly, also skipped segments it flagged as retransmissions although
they carried new bytes, e.g. ``iti-ModbusTCP_mb2.pcap`` frame 1131; with it, those agree):

* ``hole``: Wireshark waits for a missing segment forever: after a hole the capture never fills (it lost the
  segment: tshark says "ACKed unseen segment" or "previous segment not captured"), it dissects nothing more of
  that direction. otsentry gives up on the hole when the peer acknowledges data past it, after the out-of-order
  timeout or at the end of the capture, and frames the rest (as Zeek does, with a content gap). Seen on the two
  fuzzed traces (``iti-bro_modbus_fuzz-72.pcap`` frames 6-36, ``iti-bro_modbus_fuzz-1011.pcap`` frame 6).
  Checked: tshark shows the frame as a TCP segment it never reassembled, in a stream with a lost segment before.

* ``restart``: a segment more than 1 MiB away from where its direction of the stream was, behind it: Wireshark
  calls it out of order (or a retransmission) and never dissects it; it retransmits nothing the capture saw, so
  otsentry, as Zeek does, takes it as the stream starting over and frames it (``iti-bro_modbus_fuzz-72.pcap``
  frame 2, 3.8 GB past the first segment of its direction).

* ``truncated``: a partial ADU the native reassembler flushes, flagged ``truncated``, at a sequence gap or at
  the end of the capture (``iti-bro_modbus_fuzz-72.pcap`` frame 16, ``iti-ModbusTCP_modbus_test_data_part1``
  frame 118, ``suricata-modbus.pcap`` frame 99). Wireshark never shows an ADU it could not complete.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from otsentry.collectors.collector import CollectorConfig, CollectorStats
from otsentry.collectors.source import decode_capture
from otsentry.records import ModbusEvent
from otsentry.contracts.flags import FLAG_TRUNCATED
from tests.helpers import SHARED_PCAPS, capture_params, require_tool
from tests.integration.tshark_frames import after_holes, restarts, tshark_lines as _tshark_lines

pytestmark = pytest.mark.integration

CAPTURES = sorted(SHARED_PCAPS.glob("*.pcap"))


def tshark_adus(tshark: str, path: Path) -> Counter:
    """ADUs per frame as Wireshark dissects them."""
    return Counter({int(frame): len(tids.split(",")) for frame, tids in
                    _tshark_lines(tshark, path, "mbtcp", "frame.number", "mbtcp.trans_id")})


def native_adus(path: Path) -> tuple[Counter, Counter, Counter, CollectorStats]:
    """ADUs per frame: all, truncated (never paired), in paired transactions; and the run's stats."""
    run = decode_capture(path, CollectorConfig())
    events: list[ModbusEvent] = [e for batch in run for e in batch.modbus.events(run.conns)]
    per_frame, truncated, paired = Counter(), Counter(), Counter()
    for e in events:
        frames = [f for f in (e.request_frame, e.response_frame) if f is not None]
        per_frame.update(frames)
        if len(frames) == 2:
            paired.update(frames)
        elif FLAG_TRUNCATED in e.flags:
            truncated.update(frames)
    return per_frame, truncated, paired, run.stats


def explain(native: Counter, truncated: Counter, paired: Counter, wire: Counter,
            holes: frozenset[int], restarted: frozenset[int] = frozenset()) -> tuple[dict[int, str], dict[int, str]]:
    """Frames whose counts differ: (explained frame -> reason, unexplained frame -> what differs)."""
    explained, unexplained = {}, {}
    for frame in sorted(set(native) | set(wire)):
        ours, theirs = native[frame], wire[frame]
        if ours == theirs:
            continue
        if ours - truncated[frame] == theirs:
            explained[frame] = f"truncated: {truncated[frame]} partial ADU(s) flushed by the native reassembler"
        elif theirs == 0 and frame in restarted:
            explained[frame] = f"restart: far behind its stream; native frames {ours} ADU(s) as a new start"
        elif theirs == 0 and frame in holes:
            explained[frame] = f"hole: Wireshark waits for a lost segment; native frames {ours} ADU(s) past it"
        else:
            unexplained[frame] = f"native {ours} ADU(s), tshark {theirs}"
    return explained, unexplained


@pytest.mark.parametrize("path", capture_params(CAPTURES))
def test_adu_count_matches_tshark(path: Path) -> None:
    tshark = require_tool("tshark")  # in the test, so that CI reports FAILED
    native, truncated, paired, stats = native_adus(path)
    assert sum(native.values()) == stats.modbus_adus + stats.truncated_adus, "each ADU is the half of one event"
    assert sum(truncated.values()) == stats.truncated_adus, "truncated ADUs are never paired"
    wire = tshark_adus(tshark, path)
    explained, unexplained = explain(native, truncated, paired, wire, frozenset(after_holes(tshark, path)),
                                     frozenset(restarts(tshark, path)))
    print(f"{path.name}: native {stats.modbus_adus} ADUs (+{stats.truncated_adus} truncated), "
          f"tshark {sum(wire.values())}; "
          + "; ".join(f"frame {f}: {why}" for f, why in explained.items()))
    if unexplained:
        info = {int(f): text for f, text in _tshark_lines(
            tshark, path, " || ".join(f"frame.number == {f}" for f in unexplained), "frame.number", "_ws.col.Info")}
        lines = [f"frame {f}: {what}; tshark: {info.get(f, '')}" for f, what in unexplained.items()]
        pytest.fail(f"{path.name}: ADU counts differ in {len(lines)} frame(s):\n  " + "\n  ".join(lines[:40]))
