"""Classic pcap records: where each record of a buffer starts, and its fields, with numpy (``pcapwalk``)."""

from __future__ import annotations

import numpy as np

from otsentry.collectors.chunks import MAX_CAPLEN, Chunk, record_pairs
from otsentry.collectors.pcapwalk import walk_records

__all__ = ["PCAP_MAGICS", "PcapRecords"]

PCAP_MAGICS = {  # first four bytes -> (struct byte order, timestamp fraction in ns)
    b"\xd4\xc3\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}


class PcapRecords:
    """The classic-pcap half of ``CaptureReader`` (its state: byte order, snap length, link type, frame count)."""

    # -- classic pcap ------------------------------------------------------------------------------------------
    def _walk_pcap(self, buf: bytes) -> tuple[Chunk | None, int, int, str | None]:
        """Find complete records; returns (chunk, bytes used, bytes to read next, stop message)."""
        unpack = self._cap_at
        end = len(buf)
        at, pos = walk_records(buf, 8, self._endian)  # pos walks the caplen field of each record header
        need = n_last = 0
        if pos > end + 8:  # the last record is incomplete (or its length is junk)
            pos, at = int(at[-1]), at[:-1]
            (n_last,) = unpack(buf, pos)
            need = pos + 8 + n_last - end
        used = pos - 8
        stop = self._stop_msg(f"caplen {n_last} > {MAX_CAPLEN}", used) if n_last > MAX_CAPLEN else None
        if not len(at):
            return None, used, max(self.chunk_bytes, need), stop
        sec, frac = record_pairs(buf, at - 8, self._endian)
        caplen, wirelen = record_pairs(buf, at, self._endian)
        bad = caplen > MAX_CAPLEN
        if bad.any():
            k = int(bad.argmax())
            stop = self._stop_msg(f"caplen {int(caplen[k])} > {MAX_CAPLEN}", int(at[k]) - 8)
            at, caplen, wirelen, sec, frac = at[:k], caplen[:k], wirelen[:k], sec[:k], frac[:k]
        ts = sec * 1_000_000_000 + frac * self._frac_ns
        chunk = Chunk(
            buf=buf,
            offset=at + 8,
            caplen=caplen,
            wirelen=wirelen,
            ts_ns=ts,
            linktype=np.full(len(at), self._linktype, dtype=np.int32),
            first_frame=self._next_frame,
        )
        return chunk, used, max(self.chunk_bytes, need), stop

    # -- pcapng ------------------------------------------------------------------------------------------------
