"""MAC address -> vendor, from Wireshark's ``manuf`` database (the file tshark itself uses).

Why Wireshark's file: it merges the IEEE MA-L, MA-M and MA-S registries (24-, 28- and 36-bit prefixes) and is kept
up to date by a distribution's package (Debian's ``libwireshark-data``, installed with tshark), so nothing here is
a hand-made table. ``OTSENTRY_MANUF`` points at another copy; without any, vendors are left empty (one warning).
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

__all__ = ["MANUF_PATHS", "Vendors", "vendors"]

log = logging.getLogger(__name__)

MANUF_PATHS = (Path("/usr/share/wireshark/manuf"), Path("/usr/local/share/wireshark/manuf"),
               Path("/opt/homebrew/share/wireshark/manuf"))


def _mac_int(text: str) -> int | None:
    digits = text.replace(":", "").replace("-", "").replace(".", "")
    if len(digits) != 12:
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None


class Vendors:
    """Prefix lookups over one manuf file: the longest registered prefix wins (a 36-bit block inside a 24-bit one)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._by_bits: dict[int, dict[int, str]] = {}
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip() or line.startswith("#"):
                    continue
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 2:
                    continue
                prefix, _, bits_text = parts[0].partition("/")
                digits = prefix.replace(":", "").replace("-", "")
                try:
                    bits = int(bits_text) if bits_text else len(digits) * 4
                    value = int(digits.ljust(12, "0"), 16)
                except ValueError:
                    continue
                name = (parts[2] if len(parts) > 2 and parts[2].strip() else parts[1]).split("#")[0].strip(" ,;")
                self._by_bits.setdefault(bits, {})[value >> (48 - bits)] = name

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_bits.values())

    def lookup(self, mac: str) -> str:
        """The registered organisation of ``mac``, or "" (unknown, locally administered, no database)."""
        value = _mac_int(mac)
        if value is None:
            return ""
        for bits in sorted(self._by_bits, reverse=True):
            name = self._by_bits[bits].get(value >> (48 - bits))
            if name:
                return name
        return ""


@lru_cache(maxsize=1)
def vendors() -> Vendors:
    """The machine's database (``OTSENTRY_MANUF``, then Wireshark's usual places, then ``tshark -G manuf`` of
    Wireshark 4.2 and later, which build the file in); empty, with one warning, when there is none."""
    env = os.environ.get("OTSENTRY_MANUF")
    candidates = [Path(env)] if env else list(MANUF_PATHS)
    for path in candidates:
        if path.is_file():
            return Vendors(path)
    if not env:
        dumped = _tshark_manuf()
        if dumped is not None:
            return dumped
    log.warning("no Wireshark manuf database found (%s, nor tshark -G manuf): MAC vendors are left empty; install "
                "tshark or set OTSENTRY_MANUF", ", ".join(str(p) for p in candidates))
    return Vendors(None)


def _tshark_manuf() -> Vendors | None:
    import shutil
    import subprocess
    import tempfile

    tshark = shutil.which("tshark")
    if tshark is None:
        return None
    try:
        out = subprocess.run([tshark, "-G", "manuf"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if "\t" not in out:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".manuf", delete=False) as f:
        f.write(out)
    try:
        return Vendors(Path(f.name))
    finally:
        os.unlink(f.name)
