"""Live capture: frames from a network interface, decoded by the same collector as capture files.

scapy opens the capture socket (AF_PACKET on Linux, BPF elsewhere) and compiles the BPF filter with libpcap. Only raw
frames are read (``recv_raw``: no per-packet dissection, which is what makes scapy slow); they are batched into the
``Chunk``s a pcap reader produces, so a wire and a file go through one decoder and give the same events.

scapy is imported lazily: importing it costs a fraction of a second that ``otsentry inspect`` should not pay.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from contextlib import contextmanager
from typing import Sequence, Any, Callable, Iterable, Iterator

from otsentry.collectors.capture import chunk_from_packets
from otsentry.collectors.collector import CollectedBatch, Collector, CollectorConfig
from otsentry.collectors.types import CaptureError

ARPHRD_LOOPBACK = 772  # Linux hardware type of ``lo``
LINKTYPE_ETHERNET = 1
# Largest frame read: an IPv4/IPv6 packet of 65535 bytes (loopback MTU is 65536, GRO merges up to 64 KiB) plus
# Ethernet and VLAN headers. Reading less would cut payloads without telling the decoder they were cut.
SNAPLEN = 65600
DEFAULT_BATCH_PACKETS = 1000
DEFAULT_BATCH_INTERVAL_S = 0.5
RCVBUF_BYTES = 64 << 20  # kernel queue asked for: ~0.5 s of a saturated 1 Gb/s mirror port while Python catches up
SOL_PACKET, PACKET_STATISTICS, SO_RCVBUFFORCE = 263, 6, 33  # Linux constants the socket module does not export
POLL_S = 0.1  # longest blind wait in select(): how soon stop(), a signal or the --duration deadline is noticed
MAX_DRAIN = 100_000  # packets read after a stop request, so that what the kernel already queued is not lost


class LiveCaptureError(CaptureError):
    """The interface cannot be captured on (privilege, unknown name, bad filter): one line for the user."""


def default_filter(ports: Iterable[int]) -> str:
    """The BPF filter for the configured Modbus server ports: the kernel drops everything else."""
    ps = sorted(set(ports))
    if not ps:
        raise ValueError("at least one server port is needed")
    if len(ps) == 1:
        return f"tcp port {ps[0]}"
    return "tcp and (" + " or ".join(f"port {p}" for p in ps) + ")"


def list_interfaces() -> list[str]:
    """Names of the interfaces scapy can capture on (for the unknown-interface message)."""
    try:
        import scapy.arch  # noqa: F401  (registers the platform's interface provider)
        from scapy.interfaces import get_if_list

        return sorted(get_if_list())
    except Exception:  # noqa: BLE001 - best effort: the stdlib's view is good enough for a message
        try:
            return sorted(name for _, name in socket.if_nameindex())
        except OSError:
            return []


def privilege_message(iface: str) -> str:
    python = os.path.realpath(sys.executable)  # setcap needs the real file, not a venv symlink
    return (f"capturing on {iface} needs CAP_NET_RAW (run as root, or: "
            f"sudo setcap cap_net_raw,cap_net_admin=eip {python})")


def _is_permission_error(exc: BaseException) -> bool:
    return isinstance(exc, PermissionError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EPERM, errno.EACCES)
    )


def _is_linux_loopback(iface: str) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open(f"/sys/class/net/{iface}/type", encoding="ascii") as f:
            return int(f.read().strip()) == ARPHRD_LOOPBACK
    except (OSError, ValueError):
        return False


@contextmanager
def _quiet_scapy() -> Iterator[None]:
    """scapy warns "Unable to guess type" for ``lo``; we map the link type ourselves, so hide that noise."""
    logger = logging.getLogger("scapy.runtime")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _l2listen(iface: str, bpf: str | None) -> Any:
    """Open scapy's layer-2 listening socket: the one call that needs CAP_NET_RAW (tests replace it)."""
    import scapy.arch  # noqa: F401  (sets conf.L2listen for this platform)
    from scapy.config import conf

    with _quiet_scapy():
        return conf.L2listen(iface=iface, filter=bpf)


def _packet_socket(sock: Any) -> socket.socket | None:
    """The Linux AF_PACKET socket under a scapy socket, or None on other platforms."""
    ins = getattr(sock, "ins", None)
    if isinstance(ins, socket.socket) and ins.family == getattr(socket, "AF_PACKET", None):
        return ins
    return None


def _tune(sock: Any) -> bool:
    """A bigger kernel queue (bursts outpace Python), drop counters zeroed, non-blocking reads: True if done."""
    ins = _packet_socket(sock)
    if ins is None:
        return False
    try:
        ins.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)  # beyond rmem_max: needs CAP_NET_ADMIN
    except OSError:
        pass  # scapy already asked for as much as net.core.rmem_max allows
    read_kernel_drops(sock)
    ins.setblocking(False)
    return True


def read_kernel_drops(sock: Any) -> int:
    """Frames the kernel dropped since the last call because the queue was full (Linux; 0 elsewhere)."""
    ins = _packet_socket(sock)
    if ins is None:
        return 0
    try:
        _packets, drops = struct.unpack("II", ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    except OSError:
        return 0
    return drops


def _linktype(sock: Any, iface: str) -> int:
    """LINKTYPE_* of the frames the socket returns: what a pcap file of this interface would declare."""
    ins = _packet_socket(sock)
    if ins is not None:
        from scapy.data import ARPHRD_TO_DLT

        hatype = ins.getsockname()[3]
        dlt = ARPHRD_TO_DLT.get(hatype)
        if dlt is not None and dlt >= 0:
            return int(dlt)  # loopback maps to Ethernet: Linux gives lo frames a zeroed Ethernet header
        raise LiveCaptureError(f"{iface}: unsupported link type (Linux hardware type {hatype})")
    import scapy.layers.l2  # noqa: F401  (fills conf.l2types)
    from scapy.config import conf

    num = conf.l2types.layer2num.get(getattr(sock, "LL", None))
    if num is None:
        raise LiveCaptureError(f"{iface}: unsupported link type ({getattr(sock, 'LL', None)!r})")
    return int(num)


def open_live_socket(iface: str, bpf: str | None) -> tuple[Any, int]:
    """Open a capture socket on ``iface`` with filter ``bpf``; returns it and its link type.

    Every failure a user can fix becomes a one-line ``LiveCaptureError``.
    """
    names = list_interfaces()
    if names and iface not in names:
        raise LiveCaptureError(f"no interface named {iface!r}; available: {', '.join(names)}")
    kernel_bpf = bpf
    if _is_linux_loopback(iface):
        # A Linux packet socket sees each loopback packet twice (going out, coming in); libpcap drops the outgoing
        # copy, and so do we, in the kernel.
        kernel_bpf = f"inbound and ({bpf})" if bpf else "inbound"
    try:
        sock = _l2listen(iface, kernel_bpf)
    except OSError as exc:
        if _is_permission_error(exc):
            raise LiveCaptureError(privilege_message(iface)) from None
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            raise LiveCaptureError(f"no interface named {iface!r}; available: {', '.join(names) or '(none)'}") from None
        raise LiveCaptureError(f"cannot capture on {iface}: {exc.strerror or exc}") from None
    except ValueError:  # scapy: "Interface 'x' not found !"
        raise LiveCaptureError(f"no interface named {iface!r}; available: {', '.join(names) or '(none)'}") from None
    except Exception as exc:
        from scapy.error import Scapy_Exception

        if isinstance(exc, Scapy_Exception):  # a bad filter, or no libpcap to compile it
            detail = str(exc).removeprefix("Cannot set filter: ")
            if kernel_bpf != bpf:
                detail = detail.replace(repr(kernel_bpf), repr(bpf))
            raise LiveCaptureError(f"cannot set capture filter {bpf!r} on {iface}: {detail}") from None
        raise
    try:
        return sock, _linktype(sock, iface)
    except BaseException:
        sock.close()
        raise


class LiveCapture:
    """Capture ``iface`` and decode it; iterate once for ``CollectedBatch``es, the last one from ``finish()``.

    A batch is handed over every ``batch_packets`` packets or ``batch_interval_s`` after its first packet, whichever
    comes first, so events show up promptly on a quiet network and cheaply on a busy one. The capture ends at
    ``count`` packets, after ``duration_s`` seconds, on ``stop()``, on SIGINT/SIGTERM (when opened in the main
    thread) or on KeyboardInterrupt; in every case the pending packets and the collector's final flush are yielded.
    """

    def __init__(
        self,
        iface: str,
        config: CollectorConfig | None = None,
        *,
        bpf: str | None = None,
        count: int | None = None,
        duration_s: float | None = None,
        batch_packets: int = DEFAULT_BATCH_PACKETS,
        batch_interval_s: float = DEFAULT_BATCH_INTERVAL_S,
        handle_signals: bool = True,
        observers: Sequence[Any] = (),
    ) -> None:
        if count is not None and count <= 0:
            raise ValueError("count must be positive")
        if duration_s is not None and duration_s <= 0:
            raise ValueError("duration_s must be positive")
        if batch_packets <= 0 or batch_interval_s <= 0:
            raise ValueError("batch_packets and batch_interval_s must be positive")
        self.iface = iface
        self.config = config or CollectorConfig()
        # None: the default filter; "": no filter at all (every flow on the segment is reported)
        self.bpf = default_filter(self.config.server_ports) if bpf is None else (bpf.strip() or None)
        self.count = count
        self.duration_s = duration_s
        self.batch_packets = batch_packets
        self.batch_interval_s = batch_interval_s
        self.handle_signals = handle_signals
        self.collector = Collector(self.config, observers=tuple(observers))  # e.g. the windower's flow observer
        self.conns = self.collector.conns
        self.stats = self.collector.stats
        self.linktype: int | None = None
        self.captured = 0
        self.kernel_drops = 0
        self.stop_reason: str | None = None
        self._sock: Any = None
        self._stop = threading.Event()
        self._restore_signals: Callable[[], None] | None = None
        self._started = False
        self._nonblocking = False
        self._batch_due = 0.0

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def open(self) -> "LiveCapture":
        """Open the socket now (iteration does it otherwise): errors surface early, and traffic from here on is kept."""
        if self._sock is None:
            self._sock, self.linktype = open_live_socket(self.iface, self.bpf)
            self._nonblocking = _tune(self._sock)
            if self.handle_signals:
                self._restore_signals = self._install_signal_handlers()
        return self

    def stop(self) -> None:
        """Ask the capture to end; safe from other threads and signal handlers. Pending batches are still yielded."""
        self._stop.set()

    def close(self) -> None:
        """Release the socket and the signal handlers (idempotent; iteration does it when it ends)."""
        if self._restore_signals is not None:
            self._restore_signals()
            self._restore_signals = None
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> "LiveCapture":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[CollectedBatch]:
        if self._started:
            raise RuntimeError("a LiveCapture can be iterated only once")
        self._started = True
        self.open()
        try:
            yield from self._run(self._sock)
        finally:
            self.close()

    # -- internals -----------------------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> Callable[[], None]:
        """SIGINT/SIGTERM end the capture cleanly; a second SIGINT interrupts whatever is stuck."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None  # Python only lets the main thread set handlers; stop() still works

        def on_signal(signum: int, _frame: object) -> None:
            if signum == signal.SIGINT and self._stop.is_set():
                raise KeyboardInterrupt
            self.stop_reason = self.stop_reason or signal.Signals(signum).name
            self._stop.set()

        previous: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, on_signal)
            except (ValueError, OSError):
                pass

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def _read(self, sock: Any) -> tuple[int, int, bytes] | None:
        """One frame as a chunk record; None for nothing (BlockingIOError when a non-blocking socket is empty)."""
        _cls, data, ts = sock.recv_raw(SNAPLEN)
        if not data:
            return None
        # scapy gives float seconds: keep microseconds, as a classic pcap would, rather than float noise in the ns
        ts_ns = time.time_ns() if ts is None else int(round(float(ts) * 1e6)) * 1000
        return ts_ns, self.linktype or LINKTYPE_ETHERNET, data

    def _read_burst(self, sock: Any, pending: list[tuple[int, int, bytes]], limit: int) -> None:
        """Read what is queued, up to ``limit`` frames: one select() per burst rather than per frame.

        Only a non-blocking socket (Linux) can be drained this way; elsewhere one frame is read per select().
        """
        for _ in range(limit):
            try:
                record = self._read(sock)
            except BlockingIOError:
                return
            if record is not None:
                if not pending:
                    self._batch_due = time.monotonic() + self.batch_interval_s
                pending.append(record)
                self.captured += 1
            if not self._nonblocking:
                return

    def _room(self, pending: list[tuple[int, int, bytes]]) -> int:
        room = self.batch_packets - len(pending)
        if self.count is not None:
            room = min(room, self.count - self.captured)
        return room

    @staticmethod
    def _readable(sock: Any, timeout: float) -> bool:
        return bool(sock.select([sock], max(timeout, 0.0)))

    def _process(self, pending: list[tuple[int, int, bytes]]) -> CollectedBatch:
        chunk = chunk_from_packets(pending, self.captured - len(pending) + 1)  # frames count from 1, capture order
        pending.clear()
        self._count_drops()
        return self.collector.process(chunk)

    def _count_drops(self) -> None:
        if self._sock is not None:
            self.kernel_drops += read_kernel_drops(self._sock)

    def _run(self, sock: Any) -> Iterator[CollectedBatch]:
        pending: list[tuple[int, int, bytes]] = []
        deadline = time.monotonic() + self.duration_s if self.duration_s is not None else None
        try:
            while True:
                if self._stop.is_set():
                    self.stop_reason = self.stop_reason or "stopped"
                    break
                if self.count is not None and self.captured >= self.count:
                    self.stop_reason = "count"
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self.stop_reason = "duration"
                    break
                if pending and (now >= self._batch_due or len(pending) >= self.batch_packets):
                    yield self._process(pending)
                    continue
                wait = POLL_S
                if pending:
                    wait = min(wait, self._batch_due - now)
                if deadline is not None:
                    wait = min(wait, deadline - now)
                if self._readable(sock, wait):
                    self._read_burst(sock, pending, self._room(pending))
            if self.stop_reason != "count":
                self._drain(sock, pending)
        except KeyboardInterrupt:  # Ctrl-C without our handler (opened in another thread, or handle_signals=False)
            self.stop_reason = "SIGINT"
        if pending:
            yield self._process(pending)
        self._count_drops()
        if self.kernel_drops:
            self.stats.warnings.append(
                f"the kernel dropped {self.kernel_drops} packets the collector did not read in time: "
                "transactions may be missing or unanswered"
            )
        yield self.collector.finish()

    def _drain(self, sock: Any, pending: list[tuple[int, int, bytes]]) -> None:
        """Keep what the kernel had already queued when the stop came: it was seen before the stop."""
        budget = MAX_DRAIN if self.count is None else min(MAX_DRAIN, self.count - self.captured)
        while budget > 0 and self._readable(sock, 0.0):
            before = self.captured
            self._read_burst(sock, pending, budget)
            if self.captured == before:
                return
            budget -= self.captured - before
