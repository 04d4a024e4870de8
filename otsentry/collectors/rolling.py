"""A size-bounded rolling capture for live sensors: what ``otsentry pcap extract`` reads for a live alert.

Every chunk the sensor decodes is also appended to pcap files in one directory (nanosecond timestamps, the link
type of the capture), a new file once the current one passes ``file_bytes``, the oldest files deleted while the
directory holds more than ``retention_bytes``. File names carry the first packet's time (``otsentry-<epoch ns>.pcap``)
so the files covering an alert's window are found by name. Records are written as a whole chunk at once
(vectorised: one ``write`` per chunk), so recording costs the capture process little. Retention is checked when a
file starts, so the directory may hold one file more than ``retention_bytes`` for a while; file names follow packet
time, so a clock stepped backwards makes a new file sort first (it is then the one kept, older ones deleted).
"""

from __future__ import annotations

import logging
import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from otsentry.arrays import ranges
from otsentry.collectors.chunks import Chunk

__all__ = ["RollingPcap", "files_between", "parse_size"]

log = logging.getLogger(__name__)

MAGIC_NS = 0xA1B23C4D
SNAPLEN = 262144
NAME = re.compile(r"^otsentry-(\d{19,20})\.pcap$")
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30,
          "T": 1 << 40, "TB": 1 << 40}


def parse_size(text: str) -> int:
    """'2GB', '500MB', '1.5G', '4096' -> bytes; a ValueError says what is accepted."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?B?)\s*", text.upper())
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a size: give e.g. 2GB, 500MB or 1048576")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


class RollingPcap:
    """Appends chunks to rolling pcap files in ``directory``; ``close()`` is safe twice."""

    def __init__(self, directory: Path, retention_bytes: int, file_bytes: int | None = None) -> None:
        self.directory = Path(directory)
        self.retention_bytes = retention_bytes
        self.file_bytes = file_bytes or max(1 << 20, min(100 << 20, retention_bytes // 4))
        if self.file_bytes > retention_bytes:
            raise ValueError(f"a file ({self.file_bytes} bytes) cannot be larger than the retention "
                             f"({retention_bytes} bytes)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = None
        self._size = 0
        self._linktype: int | None = None
        self.written = 0  # packets
        self.deleted = 0  # files removed by retention
        self.failed = ""  # why recording stopped (a full disk...): detection goes on, the health line says so
        self.lost = 0  # packets not recorded since

    def write(self, chunk: Chunk) -> None:
        """Record a chunk; an I/O error stops recording (counted, logged once), never the sensor."""
        if self.failed:
            self.lost += len(chunk)
            return
        try:
            self._write(chunk)
        except OSError as exc:
            self.failed = f"{exc.strerror or exc} ({self.directory})"
            self.lost += len(chunk)
            log.error("rolling capture stopped: %s; detection goes on without it", self.failed)
            self._close_file()

    def _write(self, chunk: Chunk) -> None:
        n = len(chunk)
        if not n:
            return
        linktype = int(chunk.linktype[0])
        if self._file is None or self._size >= self.file_bytes or linktype != self._linktype:
            self._rotate(int(chunk.ts_ns[0]), linktype)
        caplen = chunk.caplen.astype(np.int64)
        rec = 16 + caplen
        start = np.cumsum(rec) - rec
        out = np.empty(int(rec.sum()), dtype=np.uint8)
        sec, nsec = np.divmod(chunk.ts_ns.astype(np.int64), 1_000_000_000)
        head = np.stack([sec, nsec, caplen, chunk.wirelen.astype(np.int64)], axis=1).astype("<u4")
        out[(start[:, None] + np.arange(16)).ravel()] = head.view(np.uint8).ravel()
        buf = np.frombuffer(chunk.buf, dtype=np.uint8)
        out[ranges(start + 16, caplen)] = buf[ranges(chunk.offset.astype(np.int64), caplen)]
        assert self._file is not None
        self._file.write(out.tobytes())
        self._file.flush()  # an extract from a live sensor sees the packets up to the last chunk
        self._size += len(out)
        self.written += n

    def _rotate(self, first_ns: int, linktype: int) -> None:
        self._close_file()
        path = self.directory / f"otsentry-{first_ns:019d}.pcap"
        self._file = path.open("ab")
        if self._file.tell() == 0:
            self._file.write(struct.pack("<IHHiIII", MAGIC_NS, 2, 4, 0, 0, SNAPLEN, linktype))
        self._size, self._linktype = self._file.tell(), linktype
        self._enforce_retention(keep=path)

    def _enforce_retention(self, keep: Path) -> None:
        files = sorted(p for p in self.directory.iterdir() if NAME.match(p.name))
        total = sum(p.stat().st_size for p in files)
        for old in files:
            if total <= self.retention_bytes or old == keep:
                break
            size = old.stat().st_size
            old.unlink(missing_ok=True)
            total -= size
            self.deleted += 1

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    def close(self) -> None:
        self._close_file()


def files_between(directory: Path, start: float, end: float) -> list[Path]:
    """The rolling files that may hold packets of [start, end): each covers its start to the next file's."""
    named = sorted((int(m.group(1)), p) for p in Path(directory).iterdir() if (m := NAME.match(p.name)))
    lo, hi = int(start * 1e9), int(end * 1e9)
    out = []
    for i, (first, path) in enumerate(named):
        following = named[i + 1][0] if i + 1 < len(named) else None
        if first < hi and (following is None or following > lo):
            out.append(path)
    return out
