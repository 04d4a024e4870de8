"""Linux packet capture through the kernel's memory-mapped ring (AF_PACKET, TPACKET_V3), read a block at a time.

Why: one ``recv`` per packet from Python tops out near 100,000 packets/s and the kernel drops the rest. With
TPACKET_V3 the kernel writes packets into shared memory blocks (what libpcap and tcpdump use on Linux); Python
only waits for a full (or timed-out) block, copies it once, hands it back, and finds the packets in it with one
tight integer loop and numpy gathers, so a block becomes a ``Chunk`` for the same decoder capture files use.

Also here: the BPF filter (compiled by libpcap through scapy, attached before the socket is bound, so nothing
unfiltered is ever queued), drop counters (``PACKET_STATISTICS``: packets the ring had no room for), fan-out over
several sockets (``PACKET_FANOUT`` with a classic-BPF program that picks the worker from the XOR of the source and
destination addresses: both directions of every conversation, all connections of an asset pair and every
fragment of a datagram land in the same worker, so per-pair windows stay whole), and dropping root privileges
once the socket and ring are set up.
"""

from __future__ import annotations

import errno
import mmap
import os
import select
import socket
import struct
import sys
from dataclasses import dataclass

import numpy as np

from otsentry.collectors.chunks import Chunk
from otsentry.collectors.types import CaptureError

__all__ = ["ARPHRD_ETHER", "ARPHRD_LOOPBACK", "ETH_P_ALL", "LINKTYPE_ETHERNET", "LiveCaptureError", "PACKET_FANOUT",
    "PACKET_FANOUT_CBPF", "PACKET_FANOUT_DATA", "PACKET_FANOUT_FLAG_DEFRAG", "PACKET_RX_RING", "PACKET_STATISTICS",
    "PACKET_VERSION", "PacketRing", "RawBlock", "RingConfig", "SOL_PACKET", "SO_ATTACH_FILTER", "TPACKET_V3",
    "TP_STATUS_USER", "blocks_to_chunk", "drop_privileges", "fanout_program", "interface_drops", "interface_names",
    "is_loopback", "packet_socket", "privilege_message"]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_RX_RING, PACKET_STATISTICS, PACKET_VERSION, PACKET_FANOUT, PACKET_FANOUT_DATA = 5, 6, 10, 18, 22
TPACKET_V3 = 2
PACKET_FANOUT_CBPF = 6
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
SO_ATTACH_FILTER = 26
TP_STATUS_USER = 1
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
LINKTYPE_ETHERNET = 1
_BLOCK_STATUS, _NUM_PKTS, _FIRST_PKT, _BLK_LEN = 8, 12, 16, 20  # offsets in tpacket_block_desc
# tpacket3_hdr: next_offset, sec, nsec, snaplen, len, status (u32 each), mac, net (u16)
_HDR = np.dtype([("next", "<u4"), ("sec", "<u4"), ("nsec", "<u4"), ("snaplen", "<u4"), ("len", "<u4"),
                 ("status", "<u4"), ("mac", "<u2"), ("net", "<u2")])


class LiveCaptureError(CaptureError):
    """The interface cannot be captured on (privilege, unknown name, bad filter): one line for the user."""


@dataclass(frozen=True)
class RingConfig:
    """Capture set-up: ring size (what absorbs bursts while Python decodes), snap length, block timeout (how late
    a packet on a quiet link may be handed over), fan-out, and the user to run as after opening."""

    ring_mb: int = 256
    buffer_mb: int = 1024  # blocks copied out of the ring, waiting for the decoder (grows only when it lags)
    block_kb: int = 1024
    snaplen: int = 65535
    block_timeout_ms: int = 50
    fanout_group: int | None = None  # sockets sharing a group id split the traffic between them
    fanout_workers: int = 1
    user: str | None = None  # drop root privileges to this user once the ring is open

    def __post_init__(self) -> None:
        if self.ring_mb <= 0 or self.buffer_mb <= 0 or self.block_kb <= 0 or self.snaplen <= 0 or self.block_timeout_ms <= 0:
            raise ValueError("ring size, block size, snap length and block timeout must be positive")
        if self.block_kb * 1024 % mmap.PAGESIZE or self.block_kb * 1024 < 64 * 1024:
            raise ValueError(f"block size must be a multiple of {mmap.PAGESIZE // 1024} KiB and at least 64 KiB")
        if self.fanout_workers < 1 or (self.fanout_group is not None and not 0 <= self.fanout_group <= 0xFFFF):
            raise ValueError("fan-out needs 1 or more workers and a group id in 0-65535")


def privilege_message(iface: str) -> str:
    python = os.path.realpath(sys.executable)  # setcap needs the real file, not a venv symlink
    return (f"capturing on {iface} needs CAP_NET_RAW (run as root, or: "
            f"sudo setcap cap_net_raw,cap_net_admin=eip {python})")


def interface_names() -> list[str]:
    try:
        return sorted(name for _, name in socket.if_nameindex())
    except OSError:
        return []


def is_loopback(iface: str) -> bool:
    try:
        with open(f"/sys/class/net/{iface}/type", encoding="ascii") as f:
            return int(f.read().strip()) == ARPHRD_LOOPBACK
    except (OSError, ValueError):
        return False


def interface_drops(iface: str) -> int:
    """Frames the NIC or its driver dropped (rx_dropped + rx_missed_errors): loss before the ring."""
    total = 0
    for name in ("rx_dropped", "rx_missed_errors"):
        try:
            with open(f"/sys/class/net/{iface}/statistics/{name}", encoding="ascii") as f:
                total += int(f.read().strip())
        except (OSError, ValueError):
            pass
    return total


def fanout_program(workers: int) -> bytes:
    """Classic BPF for PACKET_FANOUT_CBPF: worker = fold(src ^ dst) % workers (IPv4, or IPv6's last words)."""
    net = (-0x100000) & 0xFFFFFFFF  # SKF_NET_OFF: offsets from the network header
    proto = (-0x1000) & 0xFFFFFFFF  # SKF_AD_OFF + SKF_AD_PROTOCOL
    ins = [
        (0x28, 0, 0, proto),  # ldh proto
        (0x15, 0, 4, 0x0800),  # jeq IPv4 ? next : +4
        (0x20, 0, 0, net + 12),  # ld src
        (0x07, 0, 0, 0),  # tax
        (0x20, 0, 0, net + 16),  # ld dst
        (0x05, 0, 0, 4),  # ja fold
        (0x15, 0, 9, 0x86DD),  # jeq IPv6 ? next : ret 0
        (0x20, 0, 0, net + 20),  # ld src[12:16]
        (0x07, 0, 0, 0),  # tax
        (0x20, 0, 0, net + 36),  # ld dst[12:16]
        (0xAC, 0, 0, 0),  # fold: xor x
        (0x07, 0, 0, 0),  # tax
        (0x74, 0, 0, 16),  # rsh 16
        (0xAC, 0, 0, 0),  # xor x
        (0x94, 0, 0, workers),  # mod workers
        (0x16, 0, 0, 0),  # ret a
        (0x06, 0, 0, 0),  # ret 0 (not IP: worker 0)
    ]
    return b"".join(struct.pack("HBBI", *i) for i in ins)


def packet_socket() -> socket.socket:
    """A packet socket with protocol 0 (nothing is queued before bind): the call that needs CAP_NET_RAW."""
    return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)


def _attach_program(sock: socket.socket, level: int, option: int, program: bytes) -> None:
    import ctypes

    buf = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(level, option, fprog)


def _attach_filter(sock: socket.socket, bpf: str, iface: str, shown: str | None) -> None:
    """Compile ``bpf`` with libpcap (through scapy) and attach it: the kernel drops what does not match. Errors
    name ``shown``, the filter the user gave (``bpf`` may wrap it)."""
    from scapy.arch.linux import attach_filter
    from scapy.error import Scapy_Exception

    try:
        attach_filter(sock, bpf, iface)
    except (Scapy_Exception, ImportError) as exc:
        detail = str(exc).removeprefix("Cannot set filter: ")
        if shown is not None and shown != bpf:
            detail = detail.replace(repr(bpf), repr(shown))
        what = shown if shown is not None else bpf
        raise LiveCaptureError(f"cannot set capture filter {what!r} on {iface}: {detail}") from None


@dataclass(frozen=True, slots=True)
class RawBlock:
    """One ring block copied out of the ring: its bytes, packet count and where the first packet header is."""

    data: bytes
    num: int
    first: int


def _packets(block: RawBlock) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(data offset, captured length, wire length, ns timestamp) of each packet of a block."""
    data, num = block.data, block.num
    if num == 0 or len(data) < _HDR.itemsize:
        return None
    words = memoryview(data)[: len(data) // 4 * 4].cast("I")
    pos, where = block.first, []
    app = where.append
    last = len(data) - _HDR.itemsize
    for _ in range(num):  # headers are 16-byte aligned; tp_next_offset is the first word of each
        if pos > last:
            break
        app(pos)
        step = words[pos >> 2]
        if step == 0:  # the last packet of the block
            break
        pos += step
    del words
    at = np.fromiter(where, np.int64, len(where))
    hdr = np.ndarray((last + 1,), dtype=_HDR, buffer=data, strides=(1,))[at]
    ts = hdr["sec"].astype(np.int64) * 1_000_000_000 + hdr["nsec"].astype(np.int64)
    off = at + hdr["mac"].astype(np.int64)
    cap = np.minimum(hdr["snaplen"].astype(np.int64), len(data) - off)
    return off, cap, hdr["len"].astype(np.int64), ts


def blocks_to_chunk(blocks: "list[RawBlock]", first_frame: int, linktype: int) -> Chunk | None:
    """Blocks copied out of the ring as one Chunk (frames numbered from ``first_frame``); None without packets."""
    parts = []
    for block in blocks:
        found = _packets(block)
        if found is not None:
            parts.append((block.data, *found))
    if not parts:
        return None
    if len(parts) == 1:
        data, off, cap, wire, ts = parts[0]
    else:
        shift = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
        data = b"".join(p[0] for p in parts)
        off = np.concatenate([p[1] + k for p, k in zip(parts, shift.tolist())])
        cap, wire, ts = (np.concatenate([p[i] for p in parts]) for i in (2, 3, 4))
    return Chunk(data, off, cap, wire, ts, np.full(len(off), linktype, np.int32), first_frame)


class PacketRing:
    """One AF_PACKET socket with its TPACKET_V3 ring on ``iface``; ``take_raw()`` copies the next filled block out
    (``blocks_to_chunk`` turns blocks into a Chunk)."""

    def __init__(self, iface: str, bpf: str | None = None, config: RingConfig | None = None) -> None:
        self.iface = iface
        self.config = config or RingConfig()
        self.linktype = LINKTYPE_ETHERNET  # Linux gives lo frames a zeroed Ethernet header too
        self._sock: socket.socket | None = None
        self._mm: mmap.mmap | None = None
        self._block = 0
        self._poll = None
        self.drops = 0  # packets the ring had no room for, since open
        self._open(bpf)

    def _open(self, bpf: str | None) -> None:
        if not sys.platform.startswith("linux"):
            raise LiveCaptureError("live capture needs Linux (AF_PACKET); on other systems capture to a file "
                                   "with tcpdump and run otsentry on it")
        names = interface_names()
        if names and self.iface not in names:
            raise LiveCaptureError(f"no interface named {self.iface!r}; available: {', '.join(names)}")
        cfg = self.config
        try:
            sock = packet_socket()
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise LiveCaptureError(privilege_message(self.iface)) from None
            raise LiveCaptureError(f"cannot capture on {self.iface}: {exc.strerror or exc}") from None
        self._sock = sock
        try:
            kernel_bpf = bpf
            if is_loopback(self.iface):  # each loopback packet is seen going out and coming in: keep one
                kernel_bpf = f"inbound and ({bpf})" if bpf else "inbound"
            if kernel_bpf:
                _attach_filter(sock, kernel_bpf, self.iface, bpf)
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            block = cfg.block_kb * 1024
            nblocks = max(2, cfg.ring_mb * 1024 // cfg.block_kb)
            frame = 2048
            req = struct.pack("IIIIIII", block, nblocks, frame, block // frame * nblocks, cfg.block_timeout_ms, 0, 0)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self._mm = mmap.mmap(sock.fileno(), block * nblocks, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self._block_size, self._nblocks = block, nblocks
            sock.bind((self.iface, ETH_P_ALL))
            if cfg.fanout_group is not None and cfg.fanout_workers > 1:
                arg = cfg.fanout_group | (PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_DEFRAG) << 16
                sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", arg))  # past INT_MAX: as bytes
                _attach_program(sock, SOL_PACKET, PACKET_FANOUT_DATA, fanout_program(cfg.fanout_workers))
            self._poll = select.poll()
            self._poll.register(sock.fileno(), select.POLLIN | select.POLLERR)
            self.read_drops()  # zero the counters: what was dropped before we started is not ours
            self.drops = 0
            if cfg.user:
                drop_privileges(cfg.user)
        except LiveCaptureError:
            self.close()
            raise
        except OSError as exc:
            self.close()
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise LiveCaptureError(privilege_message(self.iface)) from None
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise LiveCaptureError(f"no interface named {self.iface!r}; available: "
                                       f"{', '.join(interface_names()) or '(none)'}") from None
            if exc.errno == errno.ENOMEM:
                raise LiveCaptureError(f"cannot allocate a {cfg.ring_mb} MiB capture ring on {self.iface}: "
                                       "choose a smaller --ring-mb") from None
            raise LiveCaptureError(f"cannot capture on {self.iface}: {exc.strerror or exc}") from None

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    def read_drops(self) -> int:
        """Packets dropped since the last call (the kernel resets its counters when read); also summed in ``drops``."""
        if self._sock is None:
            return 0
        try:
            _packets, drops, _freeze = struct.unpack("III", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12))
        except OSError:
            return 0
        self.drops += drops
        return drops

    def wait(self, timeout_s: float) -> bool:
        """True when a block is ready (or soon will be); waits at most ``timeout_s``."""
        if self._mm is None:
            return False
        if self._ready():
            return True
        assert self._poll is not None
        try:
            self._poll.poll(max(0, int(timeout_s * 1000)))
        except InterruptedError:
            pass
        return self._ready()

    def _ready(self) -> bool:
        assert self._mm is not None
        at = self._block * self._block_size + _BLOCK_STATUS
        return bool(struct.unpack_from("<I", self._mm, at)[0] & TP_STATUS_USER)

    def take_raw(self) -> RawBlock | None:
        """Copy the current block out and give it back to the kernel (cheap: what a reader thread does); None if
        no block is ready."""
        if self._mm is None or not self._ready():
            return None
        mm, base = self._mm, self._block * self._block_size
        num, first, blen = struct.unpack_from("<III", mm, base + _NUM_PKTS)
        data = mm[base : base + min(max(blen, first), self._block_size)]
        struct.pack_into("<I", mm, base + _BLOCK_STATUS, 0)
        self._block = (self._block + 1) % self._nblocks
        return RawBlock(data, num, first)

    def close(self) -> None:
        """Release the ring and the socket (idempotent)."""
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a Chunk still views it: released when that goes
                pass
            self._mm = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def drop_privileges(user: str) -> None:
    """Become ``user`` (and its primary group), keeping the open ring: the rest of the run needs no privilege."""
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise LiveCaptureError(f"cannot drop privileges: no user named {user!r}") from None
    if os.getuid() == entry.pw_uid:
        return
    try:
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    except PermissionError:
        raise LiveCaptureError(f"cannot switch to user {user!r}: start as root to drop privileges") from None
