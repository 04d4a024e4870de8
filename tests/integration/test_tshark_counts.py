"""The native decoder frames as many Modbus/TCP ADUs as Wireshark does, frame by frame, on every shared capture.

tshark's count is ``tshark -r F -Y mbtcp -T fields -e frame.number -e mbtcp.trans_id`` (one comma-separated
transaction id per ADU of the frame). The native count is every half of every event (its request and response
frames), which must add up to ``run.stats.modbus_adus`` (complete ADUs) plus ``run.stats.truncated_adus``.

A frame whose counts differ must be explained by one of two Wireshark 4.0 behaviours, found on these captures
with ``tshark -r F -Y "tcp.stream == N" -T fields -e frame.number -e tcp.seq -e tcp.len -e tcp.analysis.flags``:

* ``retransmission``: tshark flags the segment as a (spurious) retransmission and does not dissect it at all,
  although some of its bytes were never seen before in the capture. The native reassembler drops only the
  bytes it has already seen. Checked: tshark shows no ADU there, and every native ADU of the frame belongs to
  a paired transaction (real traffic, not a duplicate). Seen in

  - ``iti-ModbusTCP_mb2.pcap`` frame 1131: seq 139 len 60 repeats frame 1014 (seq 139 len 12) and adds 48 new
    bytes, 4 requests (tids 22506-22509) answered in frame 3008;
  - ``iti-ModbusTCP_mb2.pcap`` frame 13176: repeats frame 13142 (239 bytes) and adds 30, the responses to
    tids 9824 and 9825 requested in frame 13132;
  - ``iti-bro_modbus_modbusBig.pcap`` frame 3150: "spurious retransmission" because the client acknowledged
    these 10 bytes (frame 3149) before the capture saw them; it is the only copy of the response to tid 50382.

* ``truncated``: a partial ADU the native reassembler flushes, flagged ``truncated``, at a sequence gap or at
  the end of the capture (``iti-bro_modbus_fuzz-72.pcap`` frame 16, ``iti-ModbusTCP_modbus_test_data_part1``
  frame 118, ``suricata-modbus.pcap`` frame 99). Wireshark never shows an ADU it could not complete.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from otsentry.collectors.collector import CollectorConfig, CollectorStats
from otsentry.collectors.source import decode_capture
from otsentry.records import FLAG_TRUNCATED, ModbusEvent
from tests.conftest import require_tool

pytestmark = pytest.mark.integration

SHARED_PCAPS = Path(__file__).resolve().parents[2].parent / "shared/data/pcaps"
CAPTURES = sorted(SHARED_PCAPS.glob("*.pcap"))
RETRANSMISSIONS = "tcp.analysis.retransmission || tcp.analysis.spurious_retransmission"


def _tshark_lines(tshark: str, path: Path, display_filter: str, *fields: str) -> list[list[str]]:
    args = [tshark, "-r", str(path), "-n", "-Y", display_filter, "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


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
            retransmitted: set[int]) -> tuple[dict[int, str], dict[int, str]]:
    """Frames whose counts differ: (explained frame -> reason, unexplained frame -> what differs)."""
    explained, unexplained = {}, {}
    for frame in sorted(set(native) | set(wire)):
        ours, theirs = native[frame], wire[frame]
        if ours == theirs:
            continue
        if ours - truncated[frame] == theirs:
            explained[frame] = f"truncated: {truncated[frame]} partial ADU(s) flushed by the native reassembler"
        elif theirs == 0 and frame in retransmitted and paired[frame] == ours:
            explained[frame] = f"retransmission: Wireshark skips the segment; native keeps {ours} new ADU(s)"
        else:
            unexplained[frame] = f"native {ours} ADU(s), tshark {theirs}"
    return explained, unexplained


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_adu_count_matches_tshark(path: Path) -> None:
    tshark = require_tool("tshark")  # in the test, so that CI reports FAILED
    native, truncated, paired, stats = native_adus(path)
    assert sum(native.values()) == stats.modbus_adus + stats.truncated_adus, "each ADU is the half of one event"
    assert sum(truncated.values()) == stats.truncated_adus, "truncated ADUs are never paired"
    wire = tshark_adus(tshark, path)
    retransmitted = {int(f) for f, in _tshark_lines(tshark, path, RETRANSMISSIONS, "frame.number")}
    explained, unexplained = explain(native, truncated, paired, wire, retransmitted)
    print(f"{path.name}: native {stats.modbus_adus} ADUs (+{stats.truncated_adus} truncated), "
          f"tshark {sum(wire.values())}; "
          + "; ".join(f"frame {f}: {why}" for f, why in explained.items()))
    if unexplained:
        info = {int(f): text for f, text in _tshark_lines(
            tshark, path, " || ".join(f"frame.number == {f}" for f in unexplained), "frame.number", "_ws.col.Info")}
        lines = [f"frame {f}: {what}; tshark: {info.get(f, '')}" for f, what in unexplained.items()]
        pytest.fail(f"{path.name}: ADU counts differ in {len(lines)} frame(s):\n  " + "\n  ".join(lines[:40]))
