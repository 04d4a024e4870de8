"""Live capture: frames from a network interface, decoded by the same collector as capture files.

Packets come through the kernel's memory-mapped ring (``otsentry.collectors.ring``, TPACKET_V3, as libpcap uses):
no Python call per packet; each batch of ring blocks is one ``Chunk``, so a wire and a file go through one
decoder and give the same events. What the ring had no room for (kernel drops) and what the NIC dropped before it
(interface drops) are counted per batch, reported at the end and handed to the windower, which turns them into
``sensor.packet_loss`` evidence: a blind sensor must say so.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

from otsentry.collectors.chunks import Chunk
from otsentry.collectors.collector import CollectedBatch, Collector, CollectorConfig
from otsentry.collectors.events import ModbusBatch
from otsentry.collectors.ics.ports import DECODED_TCP, DECODED_UDP
from otsentry.collectors.ring import (LiveCaptureError, PacketRing, RawBlock, RingConfig, blocks_to_chunk,
                                      interface_drops, interface_names, privilege_message)

__all__ = ["LiveCapture", "LiveCaptureError", "RingConfig", "default_filter", "list_interfaces", "open_ring",
           "privilege_message"]

POLL_S = 0.1  # longest blind wait: how soon stop(), a signal or the --duration deadline is noticed
MAX_DRAIN_S = 10.0  # after a stop request, what is already captured is still decoded for at most this long
MAX_BLOCKS = 32  # ring blocks decoded as one chunk
IDLE_BATCH_S = 1.0  # an empty batch this often on a quiet link, so that windows close on the wall clock


def default_filter(ports: Iterable[int], ot_protocols: bool = True) -> str:
    """The BPF filter for the configured Modbus server ports and (``ot_protocols``) the ports of the other decoded
    OT protocols (DNP3, IEC 104, S7, EtherNet/IP, over TCP and UDP): the kernel drops everything else."""
    ps = sorted(set(ports))
    if not ps:
        raise ValueError("at least one server port is needed")
    tcp = sorted(set(ps) | (set(DECODED_TCP) if ot_protocols else set()))
    tcp_part = f"tcp port {tcp[0]}" if len(tcp) == 1 else "tcp and (" + " or ".join(f"port {p}" for p in tcp) + ")"
    if not ot_protocols:
        return tcp_part
    udp = sorted(DECODED_UDP)
    return f"({tcp_part}) or (udp and (" + " or ".join(f"port {p}" for p in udp) + "))"


def list_interfaces() -> list[str]:
    """Names of the interfaces on this host (for the unknown-interface message)."""
    return interface_names()


class RingReader(threading.Thread):
    """Moves filled ring blocks into memory as soon as the kernel hands them over, while the main thread decodes.

    Why a thread: closing a window of a busy port is a burst of work (millions of rows at once); while it runs the
    ring would fill and the kernel drop. This thread only copies blocks out (its GIL share is enough: poll and the
    copies are short), into a buffer bounded by ``RingConfig.buffer_mb``; when that is full it stops taking blocks
    and the kernel's drop counter says what was lost.
    """

    def __init__(self, ring: PacketRing, limit_bytes: int) -> None:
        super().__init__(name="otsentry-ring", daemon=True)
        self.ring = ring
        self.limit = limit_bytes
        self.ready = threading.Event()
        self.peak_bytes = 0
        self._blocks: collections.deque[RawBlock] = collections.deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def run(self) -> None:
        ring = self.ring
        while not self._halt.is_set():
            if self._bytes >= self.limit:
                self._halt.wait(0.001)
                continue
            if not ring.wait(0.05):
                continue
            while self._bytes < self.limit:
                raw = ring.take_raw()
                if raw is None:
                    break
                with self._lock:
                    self._blocks.append(raw)
                    self._bytes += len(raw.data)
                    self.peak_bytes = max(self.peak_bytes, self._bytes)
                self.ready.set()

    def take(self, max_blocks: int) -> list[RawBlock]:
        with self._lock:
            out = [self._blocks.popleft() for _ in range(min(max_blocks, len(self._blocks)))]
            self._bytes -= sum(len(b.data) for b in out)
            if not self._blocks:
                self.ready.clear()
        return out

    @property
    def pending(self) -> int:
        return len(self._blocks)

    def halt(self) -> None:
        self._halt.set()
        self.join(2.0)


def open_ring(iface: str, bpf: str | None, config: RingConfig) -> PacketRing:
    """Open the capture ring: the one call that needs CAP_NET_RAW."""
    names = list_interfaces()
    if names and iface not in names:
        raise LiveCaptureError(f"no interface named {iface!r}; available: {', '.join(names)}")
    return PacketRing(iface, bpf, config)


class LiveCapture:
    """Capture ``iface`` and decode it; iterate once for ``CollectedBatch``es, the last one from ``finish()``.

    A batch is handed over as soon as ring blocks are ready: a block is full, or ``RingConfig.block_timeout_ms``
    after its first packet on a quiet link. The capture ends at ``count`` packets, after ``duration_s`` seconds, on
    ``stop()``, on SIGINT/SIGTERM (when opened in the main thread) or on KeyboardInterrupt; in every case the
    blocks already filled and the collector's final flush are yielded.
    """

    def __init__(
        self,
        iface: str,
        config: CollectorConfig | None = None,
        *,
        bpf: str | None = None,
        count: int | None = None,
        duration_s: float | None = None,
        handle_signals: bool = True,
        observers: Sequence[Any] = (),
        ring: RingConfig | None = None,
        recorder: Callable[[Chunk], None] | None = None,
    ) -> None:
        if count is not None and count <= 0:
            raise ValueError("count must be positive")
        if duration_s is not None and duration_s <= 0:
            raise ValueError("duration_s must be positive")
        self.iface = iface
        self.config = config or CollectorConfig()
        # None: the default filter; "": no filter at all (every flow on the segment is reported)
        self.bpf = default_filter(self.config.server_ports) if bpf is None else (bpf.strip() or None)
        self.count = count
        self.duration_s = duration_s
        self.handle_signals = handle_signals
        self.ring_config = ring or RingConfig()
        self.recorder = recorder  # sees every chunk before it is decoded (the rolling capture of --pcap-dir)
        self.collector = Collector(self.config, observers=tuple(observers))  # e.g. the windower's flow observer
        self.conns = self.collector.conns
        self.stats = self.collector.stats
        self.linktype: int | None = None
        self.captured = 0
        self.kernel_drops = 0  # packets the ring had no room for
        self.interface_drops = 0  # packets the NIC / driver dropped before the ring, while we captured
        self.stop_reason: str | None = None
        self._ring: PacketRing | None = None
        self._stop = threading.Event()
        self._restore_signals: Callable[[], None] | None = None
        self._started = False
        self._nic_base = 0
        self.buffer_peak_bytes = 0  # most bytes the reader thread held for the decoder

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def open(self) -> "LiveCapture":
        """Open the ring now (iteration does it otherwise): errors surface early, and traffic from here on is kept."""
        if self._ring is None:
            self._ring = open_ring(self.iface, self.bpf, self.ring_config)
            self.linktype = self._ring.linktype
            self._nic_base = interface_drops(self.iface)
            if self.handle_signals:
                self._restore_signals = self._install_signal_handlers()
        return self

    def stop(self) -> None:
        """Ask the capture to end; safe from other threads and signal handlers. Pending batches are still yielded."""
        self._stop.set()

    def close(self) -> None:
        """Release the ring and the signal handlers (idempotent; iteration does it when it ends)."""
        if self._restore_signals is not None:
            self._restore_signals()
            self._restore_signals = None
        if self._ring is not None:
            try:
                self._ring.close()
            finally:
                self._ring = None

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
            yield from self._run()
        finally:
            self.close()

    def health(self) -> dict[str, int]:
        """What the sensor could not see so far, read now: drops, undecoded bytes, holes, reordering, fragments.

        For ``/metrics`` and the end-of-run line; loss per batch goes to the windower (``CollectedBatch.loss``)."""
        counts = self.collector.reassembly_counts()
        return {"kernel_drops": self.kernel_drops, "interface_drops": self.interface_drops, **counts,
                "ip_fragments_pending": self.collector.fragments_pending, "buffer_peak_bytes": self.buffer_peak_bytes}

    def health_line(self) -> str:
        """The drops and parser health in a few words, for the last line of a run."""
        h = self.health()
        return (f"{h['kernel_drops']} kernel drops, {h['interface_drops']} interface drops, "
                f"{h['non_modbus_payload_bytes']} undecoded bytes, {h['tcp_gaps']} stream gaps, "
                f"{h['tcp_out_of_order']} out-of-order segments, {h['ip_fragments']} IP fragments "
                f"({h['ip_fragments_expired']} expired), decoder buffer peak {h['buffer_peak_bytes'] >> 20} MiB")

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

    def _count_drops(self) -> tuple[int, int]:
        """New (kernel, interface) drops since the last call."""
        if self._ring is None:
            return 0, 0
        kernel = self._ring.read_drops()
        self.kernel_drops += kernel
        nic = max(0, interface_drops(self.iface) - self._nic_base) - self.interface_drops
        self.interface_drops += nic
        return kernel, nic

    def _process(self, reader: RingReader) -> CollectedBatch | None:
        chunk = blocks_to_chunk(reader.take(MAX_BLOCKS), self.captured + 1, self.linktype or 1)
        if chunk is None:
            return None
        if self.count is not None and self.captured + len(chunk) > self.count:
            chunk = chunk.head(self.count - self.captured)
        self.captured += len(chunk)  # frames count from 1, capture order
        if self.recorder is not None:
            self.recorder(chunk)
        batch = self.collector.process(chunk)
        kernel, nic = self._count_drops()
        if kernel or nic:
            ts = float(chunk.ts_ns[-1]) / 1e9 if len(chunk) else time.time()
            batch = batch.with_loss(ts, kernel, nic)
        return batch

    def _run(self) -> Iterator[CollectedBatch]:
        assert self._ring is not None
        reader = RingReader(self._ring, self.ring_config.buffer_mb << 20)
        reader.start()
        deadline = time.monotonic() + self.duration_s if self.duration_s is not None else None
        idle_since = time.monotonic()
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
                wait = POLL_S if deadline is None else min(POLL_S, deadline - now)
                if reader.ready.wait(max(wait, 0.0)):
                    batch = self._process(reader)
                    if batch is not None:
                        idle_since = time.monotonic()
                        yield batch
                elif time.monotonic() - idle_since >= IDLE_BATCH_S:
                    idle_since = time.monotonic()
                    yield CollectedBatch(ModbusBatch.empty(), [])  # a quiet link: consumers still see time pass
            if self.stop_reason != "count":
                yield from self._drain(reader)
        except KeyboardInterrupt:  # Ctrl-C without our handler (opened in another thread, or handle_signals=False)
            self.stop_reason = "SIGINT"
        finally:
            reader.halt()
            self.buffer_peak_bytes = reader.peak_bytes
        kernel, nic = self._count_drops()
        last = self.collector.finish()
        if kernel or nic:
            last = last.with_loss(time.time(), kernel, nic)
        if self.kernel_drops or self.interface_drops:
            self.stats.warnings.append(
                f"{self.kernel_drops} packets dropped by the kernel (capture ring full) and {self.interface_drops} "
                "by the interface: transactions may be missing or unanswered"
            )
        yield last

    def _drain(self, reader: RingReader) -> Iterator[CollectedBatch]:
        """Keep what the kernel had already queued when the stop came: it was seen before the stop. The block
        being filled is handed over by the kernel within the block timeout."""
        settle = 2 * self.ring_config.block_timeout_ms / 1000
        end = time.monotonic() + max(MAX_DRAIN_S, settle)
        quiet_until = time.monotonic() + settle
        while time.monotonic() < end and (self.count is None or self.captured < self.count):
            if not reader.ready.wait(0.01):
                if time.monotonic() >= quiet_until and not reader.pending:
                    return
                continue
            batch = self._process(reader)
            if batch is not None:
                quiet_until = time.monotonic() + settle
                yield batch
