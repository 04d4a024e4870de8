"""Frames Wireshark never dissects although otsentry does, found with tshark itself (shared by the cross-checks).

tshark runs with out-of-order reassembly on, as otsentry reassembles: see ``test_tshark_counts`` for what each kind
of frame is and why otsentry frames it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

LOST = "tcp.analysis.lost_segment || tcp.analysis.ack_lost_segment"


def tshark_lines(tshark: str, path: Path, display_filter: str, *fields: str) -> list[list[str]]:
    args = [tshark, "-o", "tcp.reassemble_out_of_order:TRUE", "-r", str(path), "-n", "-Y", display_filter,
            "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def after_holes(tshark: str, path: Path) -> set[int]:
    """Frames with payload tshark never reassembled, in a stream where a segment was lost at or before them."""
    lost: dict[str, int] = {}
    for frame, stream in tshark_lines(tshark, path, LOST, "frame.number", "tcp.stream"):
        lost.setdefault(stream, int(frame))
    stuck = tshark_lines(tshark, path, "tcp.len > 0 && !mbtcp && !tcp.reassembled_in", "frame.number", "tcp.stream")
    return {int(f) for f, stream in stuck if stream in lost and lost[stream] <= int(f)}


def restarts(tshark: str, path: Path, far: int = 1 << 20) -> set[int]:
    """Frames with payload more than ``far`` bytes behind the furthest sequence number their direction reached."""
    high: dict[tuple[str, str], int] = {}
    out = set()
    for frame, stream, port, seq, nxt in tshark_lines(tshark, path, "tcp.len > 0", "frame.number", "tcp.stream",
                                                         "tcp.srcport", "tcp.seq", "tcp.nxtseq"):
        key = (stream, port)
        behind = (high[key] - int(seq)) % (1 << 32) if key in high else 0  # sequence numbers wrap
        if far < behind < 1 << 31:
            out.add(int(frame))
        if key not in high or 0 < (int(nxt) - high[key]) % (1 << 32) < 1 << 31:
            high[key] = int(nxt)
    return out


