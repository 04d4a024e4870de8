"""OT protocols below IP, counted by EtherType: IEC 61850 GOOSE and Sampled Values, PROFINET RT/DCP, EtherCAT...

A substation's process bus is GOOSE and SV multicast frames, a PROFINET cell is RT frames: none is an IP flow,
and a sensor that reads only IP would show the bus as silent. Each is counted (``link_frames`` under its name
in the summary's ``protocols``); they are not decoded further.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

import numpy as np

from otsentry.collectors.chunks import Chunk
from otsentry.collectors.ics.counts import ProtocolCounts
from otsentry.collectors.packets import ETHERLIKE, VLAN_TPIDS

__all__ = ["LINK_PROTOCOLS", "count_link_protocols", "link_ethertypes"]

LINK_PROTOCOLS: Mapping[int, str] = MappingProxyType({
    0x88B8: "goose", 0x88B9: "gse-management", 0x88BA: "iec61850-sv", 0x8892: "profinet-rt", 0x88A4: "ethercat",
    0x88AB: "powerlink", 0x88CD: "sercos-iii", 0x88E3: "mrp", 0x892F: "hsr", 0x88FB: "prp-supervision",
    0x88F7: "ptp", 0x88CC: "lldp", 0x8204: "cc-link-ie", 0x890F: "cc-link-ie-field",
})


def link_ethertypes(chunk: Chunk, rows: np.ndarray) -> np.ndarray:
    """The EtherType of each record at ``rows`` (past up to two VLAN tags); 0 where the link has none."""
    u8 = np.frombuffer(chunk.buf, np.uint8)
    off, cap, lt = chunk.offset[rows].astype(np.int64), chunk.caplen[rows].astype(np.int64), chunk.linktype[rows]
    et = np.zeros(len(rows), np.int64)
    pos = np.zeros(len(rows), np.int64)
    for code, (hlen, etpos) in ETHERLIKE.items():
        sel = np.flatnonzero((lt == code) & (cap >= hlen))
        pos[sel] = off[sel] + etpos
        et[sel] = u8[pos[sel]].astype(np.int64) << 8 | u8[pos[sel] + 1]
    for _ in range(2):
        tagged = np.flatnonzero(np.isin(et, VLAN_TPIDS) & (pos + 6 <= off + cap))
        if not len(tagged):
            break
        pos[tagged] += 4
        et[tagged] = u8[pos[tagged]].astype(np.int64) << 8 | u8[pos[tagged] + 1]
    return et


def count_link_protocols(chunk: Chunk, rows: np.ndarray, counts: dict[str, ProtocolCounts]) -> None:
    """Count the named link-layer protocols among the records at ``rows`` (the ones that are not IP)."""
    types, n = np.unique(link_ethertypes(chunk, rows), return_counts=True)
    for ethertype, frames in zip(types.tolist(), n.tolist()):
        name = LINK_PROTOCOLS.get(ethertype)
        if name is not None:
            c = counts.get(name)
            if c is None:
                c = counts[name] = ProtocolCounts()
            c.link_frames += frames
