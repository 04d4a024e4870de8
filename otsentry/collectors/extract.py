"""The packets behind an alert: one host pair (and service) over one time span, copied from a capture to a pcap.

An analyst opens the result in Wireshark to see what the window held. Records keep their original bytes, lengths
and timestamps (nanosecond pcap), so frame contents and timing are exactly the capture's; the output's frames are
numbered from 1, and the source frame numbers are returned for the message.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from otsentry.collectors.capture import Chunk, open_capture
from otsentry.collectors.packets import addr_from_str, decode_packets
from otsentry.collectors.types import CaptureError

__all__ = ["Extracted", "extract_packets"]

_MAGIC_NS = 0xA1B23C4D


class Extracted:
    """What was written: packet count and the source frame numbers of the first and last packet."""

    def __init__(self) -> None:
        self.packets = 0
        self.first_frame = 0
        self.last_frame = 0
        self.skipped_links = 0  # packets of the span on another link type than the first (not writable in one pcap)


def _header(out: BinaryIO, linktype: int, snaplen: int = 262144) -> None:
    out.write(struct.pack("<IHHiIII", _MAGIC_NS, 2, 4, 0, 0, snaplen, linktype))


def extract_packets(capture: Path | Sequence[Path], output: Path, start: float, end: float, host_a: str,
                    host_b: str = "", port: int = 0) -> Extracted:
    """Copy the packets between ``host_a`` and ``host_b`` (any peer when empty), in either direction, with
    ``start <= time < end`` and, when ``port`` is given, that port on either side, from one capture or several in
    time order (a live sensor's rolling files); returns what was written."""
    sources = [Path(capture)] if isinstance(capture, (str, Path)) else [Path(c) for c in capture]
    a = addr_from_str(host_a)
    b = addr_from_str(host_b) if host_b else None
    lo_ns, hi_ns = int(round(start * 1e9)), int(round(end * 1e9))
    done = Extracted()
    linktype: int | None = None
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    try:
        with tmp.open("wb") as out:
            for chunk in _chunks(sources):  # all of it: capture timestamps need not be in order
                p = decode_packets(chunk)
                src_a = (p.src_hi == a[0]) & (p.src_lo == a[1])
                dst_a = (p.dst_hi == a[0]) & (p.dst_lo == a[1])
                if b is None:
                    pair = src_a | dst_a
                else:
                    src_b = (p.src_hi == b[0]) & (p.src_lo == b[1])
                    dst_b = (p.dst_hi == b[0]) & (p.dst_lo == b[1])
                    pair = (src_a & dst_b) | (src_b & dst_a)
                keep = pair & (chunk.ts_ns >= lo_ns) & (chunk.ts_ns < hi_ns) & (p.ipver != 0)
                if port:
                    keep &= (p.sport == port) | (p.dport == port)
                for i in np.flatnonzero(keep).tolist():
                    lt = int(chunk.linktype[i])
                    if linktype is None:
                        linktype = lt
                        _header(out, lt)
                    if lt != linktype:
                        done.skipped_links += 1
                        continue
                    off, cap = int(chunk.offset[i]), int(chunk.caplen[i])
                    sec, ns = divmod(int(chunk.ts_ns[i]), 1_000_000_000)
                    out.write(struct.pack("<IIII", sec, ns, cap, int(chunk.wirelen[i])))
                    out.write(chunk.buf[off:off + cap])
                    frame = chunk.first_frame + i
                    done.first_frame = done.first_frame or frame
                    done.last_frame = frame
                    done.packets += 1
            if linktype is None:
                _header(out, 1)  # an empty but valid capture
        tmp.replace(output)
    except OSError as exc:
        raise CaptureError(f"{output}: cannot write ({exc.strerror})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return done


def _chunks(sources: Sequence[Path]) -> Iterator[Chunk]:
    for source in sources:
        with open_capture(source) as reader:
            yield from reader.chunks()
