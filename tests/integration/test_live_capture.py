"""Live capture on the loopback interface: a real Modbus/TCP exchange, captured and decoded as it happens.

The server and client are plain Python sockets, so what is asserted (transaction ids, addresses, values, pairing,
latency, flow counts) is known independently of the decoder. Every wait is bounded: a broken capture fails, never
hangs. The CLI error tests at the end need no privilege and run everywhere.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from otsentry.cli import main
from otsentry.collectors import live, ring
from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.live import LiveCapture
from otsentry.records import FlowEvent, ModbusEvent, event_from_dict
from tests.helpers import IN_CI, ROOT

TIMEOUT_S = 10.0
ILLEGAL_FROM = 1000  # the toy server answers reads at or above this address with exception 2 (illegal address)


def register_value(addr: int) -> int:
    """What the toy server holds at ``addr``: distinct per address, so a shifted decode cannot pass."""
    return (addr * 37 + 11) & 0xFFFF


def _capture_problem() -> str | None:
    """Why this process cannot open a packet socket, or None when it can."""
    af_packet = getattr(socket, "AF_PACKET", None)
    if af_packet is None:
        return "no AF_PACKET sockets on this platform"
    try:
        socket.socket(af_packet, socket.SOCK_RAW, socket.htons(0x0003)).close()
    except PermissionError:
        return f"live capture needs CAP_NET_RAW, which this process (uid {os.geteuid()}) lacks: run the tests as root"
    except OSError as exc:
        return f"cannot open a packet socket: {exc}"
    if not os.path.exists("/sys/class/net/lo"):
        return "no loopback interface named lo"
    return None


def require_capture() -> None:
    """A machine that cannot capture fails in CI (the tests would silently prove nothing) and skips elsewhere."""
    problem = _capture_problem()
    if problem is not None:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)


# -- a tiny Modbus/TCP server and client ---------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise ConnectionError("peer closed mid-ADU")
        data += part
    return data


def _read_adu(sock: socket.socket) -> tuple[int, int, bytes] | None:
    """(transaction id, unit id, PDU), or None at a clean end of stream."""
    head = sock.recv(7, socket.MSG_WAITALL)
    if not head:
        return None
    if len(head) < 7:
        head += _recv_exact(sock, 7 - len(head))
    tid, proto, length, unit = struct.unpack(">HHHB", head)
    assert proto == 0
    return tid, unit, _recv_exact(sock, length - 1)


def _adu(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


class ModbusServer:
    """Answers FC 3 (read holding registers) on one connection; other function codes get exception 1."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT_S)
        self.port = self.listener.getsockname()[1]
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, name="modbus-server", daemon=True)

    def start(self) -> "ModbusServer":
        self.thread.start()
        return self

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(TIMEOUT_S)
                while (adu := _read_adu(conn)) is not None:
                    tid, unit, pdu = adu
                    conn.sendall(_adu(tid, unit, self._answer(pdu)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
            self.error = exc
        finally:
            self.listener.close()

    @staticmethod
    def _answer(pdu: bytes) -> bytes:
        fc = pdu[0]
        if fc != 3:
            return bytes([fc | 0x80, 1])
        addr, qty = struct.unpack(">HH", pdu[1:5])
        if addr >= ILLEGAL_FROM:
            return bytes([0x83, 2])
        values = [register_value(a) for a in range(addr, addr + qty)]
        return bytes([3, 2 * qty]) + struct.pack(f">{qty}H", *values)

    def join(self) -> None:
        self.thread.join(TIMEOUT_S)
        assert not self.thread.is_alive(), "the Modbus server thread did not finish"
        if self.error is not None:
            raise self.error


@dataclass(frozen=True)
class Read:
    tid: int
    unit: int
    addr: int
    qty: int

    @property
    def pdu(self) -> bytes:
        return struct.pack(">BHH", 3, self.addr, self.qty)


# Sequential reads (including the 125-register maximum that scapy's dissector truncates), one read the server refuses,
# then two requests sent in a single segment (pipelined), as some HMIs do.
SEQUENTIAL = [Read(1, 1, 0, 4), Read(2, 1, 100, 10), Read(3, 7, 40, 1), Read(4, 1, 0, 125), Read(5, 1, 2000, 2)]
PIPELINED = [Read(6, 2, 300, 3), Read(7, 2, 500, 6)]
ALL_READS = SEQUENTIAL + PIPELINED


def run_client(port: int) -> tuple[str, int]:
    """Run the exchange against the server; returns the client's (ip, port)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = sock.getsockname()
        for read in SEQUENTIAL:
            sock.sendall(_adu(read.tid, read.unit, read.pdu))
            tid, _, _ = _read_adu(sock)
            assert tid == read.tid
        sock.sendall(b"".join(_adu(r.tid, r.unit, r.pdu) for r in PIPELINED))
        for read in PIPELINED:
            tid, _, _ = _read_adu(sock)
            assert tid == read.tid
    return client


def exchange(port: int, server: ModbusServer) -> tuple[str, int]:
    client = run_client(port)
    server.join()
    time.sleep(0.2)  # let the FIN/ACK exchange reach the capture socket
    return client


def check_events(events: list[ModbusEvent], client: tuple[str, int], port: int) -> None:
    """Every read that was sent, decoded with what the server answered, paired, in send order."""
    assert [e.transaction_id for e in events] == [r.tid for r in ALL_READS]
    for ev, read in zip(events, ALL_READS):
        assert (ev.client_ip, ev.client_port, ev.server_ip, ev.server_port) == (*client, "127.0.0.1", port)
        assert ev.unit_id == read.unit
        assert ev.function_code == 3
        assert ev.start_address == read.addr and ev.quantity == read.qty
        if read.addr >= ILLEGAL_FROM:
            assert ev.exception_code == 2 and ev.values == ()
        else:
            assert ev.exception_code is None
            assert ev.values == tuple(register_value(a) for a in range(read.addr, read.addr + read.qty))
        assert ev.flags == ()
        assert ev.request_frame is not None and ev.response_frame is not None
        assert ev.request_frame < ev.response_frame
        assert ev.response_ts is not None and ev.latency_s is not None
        assert 0 <= ev.latency_s < 2.0
        assert ev.latency_s == pytest.approx(ev.response_ts - ev.ts, abs=1e-6)
        assert abs(ev.ts - time.time()) < 120  # wall-clock timestamps, not capture-relative ones
    # pipelined: both requests travelled in one segment, so they share a frame
    assert events[-1].request_frame == events[-2].request_frame


def check_flow(flows: list[FlowEvent], client: tuple[str, int], port: int, captured: int) -> None:
    """One connection, every captured packet in it once: a duplicated loopback copy would double the counts."""
    assert len(flows) == 1
    fl = flows[0]
    assert (fl.orig_ip, fl.orig_port, fl.resp_ip, fl.resp_port) == (*client, "127.0.0.1", port)
    assert fl.modbus and fl.transport == "tcp"
    assert fl.syn == 2 and fl.fin == 2 and fl.retransmissions == 0
    assert fl.packets == captured


# -- the library, iterated in a thread ------------------------------------------------------------------------------


@pytest.mark.integration
def test_live_capture_decodes_a_real_exchange():
    require_capture()
    server = ModbusServer()
    capture = LiveCapture("lo", CollectorConfig(server_ports=frozenset({server.port})), handle_signals=False)
    capture.open()  # before any traffic: the handshake must be captured
    assert capture.linktype == 1  # Linux gives loopback frames an Ethernet header
    events: list[ModbusEvent] = []
    flows: list[FlowEvent] = []
    failure: list[BaseException] = []

    def consume() -> None:
        try:
            for batch in capture:
                events.extend(batch.modbus.events(capture.conns))
                flows.extend(batch.flows)
        except BaseException as exc:  # noqa: BLE001
            failure.append(exc)

    worker = threading.Thread(target=consume, name="live-capture", daemon=True)
    worker.start()
    try:
        server.start()
        client = exchange(server.port, server)
    finally:
        capture.stop()
        worker.join(TIMEOUT_S)
    assert not worker.is_alive(), "the capture did not stop"
    if failure:
        raise failure[0]
    assert capture.stop_reason == "stopped"
    check_events(events, client, server.port)
    check_flow(flows, client, server.port, capture.captured)
    assert capture.stats.packets == capture.captured
    frames = sorted({e.request_frame for e in events} | {e.response_frame for e in events})
    assert frames[0] > 1 and frames[-1] <= capture.captured  # frame 1 is the SYN


@pytest.mark.integration
def test_live_capture_count_and_duration():
    require_capture()
    server = ModbusServer()
    config = CollectorConfig(server_ports=frozenset({server.port}))
    with LiveCapture("lo", config, count=3, handle_signals=False) as capture:
        server.start()
        exchange(server.port, server)
        started = time.monotonic()
        batches = list(capture)  # the handshake is already queued: returns without waiting for more
    assert time.monotonic() - started < TIMEOUT_S
    assert capture.captured == 3 and capture.stop_reason == "count"
    flows = [fl for b in batches for fl in b.flows]
    assert len(flows) == 1 and flows[0].packets == 3 and flows[0].syn == 2

    quiet = LiveCapture("lo", CollectorConfig(server_ports=frozenset({server.port})), duration_s=0.3,
                        handle_signals=False)
    started = time.monotonic()
    batches = list(quiet)
    assert 0.25 < time.monotonic() - started < 3.0
    assert quiet.stop_reason == "duration" and quiet.captured == 0 and len(batches) == 1


@pytest.mark.integration
def test_kernel_drops_are_reported():
    """A collector that falls behind must say it lost packets, not silently report fewer transactions."""
    require_capture()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    # The smallest ring (two 64 KiB blocks): ~1,000 loopback datagrams fill it.
    ring = live.RingConfig(ring_mb=1, block_kb=64)
    capture = LiveCapture("lo", CollectorConfig(), bpf=f"udp port {port}", duration_s=0.5, handle_signals=False,
                          ring=ring)
    sent = 20_000
    with capture, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for i in range(sent):  # nobody reads the ring meanwhile: it overflows
            out.sendto(i.to_bytes(4, "big") * 16, ("127.0.0.1", port))
        batches = list(capture)
    sink.close()
    assert capture.kernel_drops > 0
    assert capture.captured + capture.kernel_drops == sent  # every datagram is either captured or counted lost
    assert any("dropped by the kernel" in w for w in capture.stats.warnings)
    losses = [b.loss for b in batches if b.loss is not None]
    assert sum(x.kernel_drops for x in losses) == capture.kernel_drops  # handed to the windower, none hidden


# -- the CLI, as a process: JSON lines out, SIGTERM for a clean stop ------------------------------------------------


class CliProcess:
    """``otsentry collect live`` as a child process; both pipes are read by threads, so no read can block the test."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otsentry", "collect", "live", "--iface", "lo", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stdout: list[str] = []
        self.stderr: queue.Queue = queue.Queue()
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout.append), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.put), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    @staticmethod
    def _pump(stream, put) -> None:
        for line in stream:
            put(line)
        put(None)

    def wait_capturing(self) -> None:
        """Return once the capture socket is open (the CLI says so on stderr)."""
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                line = self.stderr.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self.kill()
                pytest.fail("otsentry collect live did not start capturing in time")
            if line is None:
                self.kill()
                pytest.fail(f"otsentry collect live exited early ({self.proc.returncode}): {''.join(self.stdout)}")
            if "capturing on lo" in line:
                return

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT_S)

    def finish(self) -> tuple[list[dict], str]:
        """Wait for the exit; the JSON records printed and the rest of stderr."""
        try:
            self.proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("otsentry collect live did not stop in time")
        for pump in self._pumps:
            pump.join(TIMEOUT_S)
        err = []
        while (line := self.stderr.get(timeout=TIMEOUT_S)) is not None:
            err.append(line)
        assert self.proc.returncode == 0, "".join(err)
        return [json.loads(line) for line in self.stdout if line is not None], "".join(err)


def _start_cli(*args: str) -> CliProcess:
    cli = CliProcess(*args)
    cli.wait_capturing()
    return cli


@pytest.mark.integration
def test_cli_collect_live_json_until_sigterm():
    require_capture()
    server = ModbusServer()
    cli = _start_cli("--ports", str(server.port), "--json", "--duration", "60")
    try:
        server.start()
        client = exchange(server.port, server)
        time.sleep(0.3)
    finally:
        cli.proc.send_signal(signal.SIGTERM)
    records, err = cli.finish()
    events = [event_from_dict(r) for r in records]
    modbus = [e for e in events if isinstance(e, ModbusEvent)]
    flows = [e for e in events if isinstance(e, FlowEvent)]
    check_events(modbus, client, server.port)
    captured = int(err.rsplit("lo: ", 1)[1].split(" packets")[0])
    check_flow(flows, client, server.port, captured)
    assert "(SIGTERM)" in err


@pytest.mark.integration
def test_cli_collect_live_count_ends_by_itself():
    require_capture()
    server = ModbusServer()
    cli = _start_cli("--ports", str(server.port), "--count", "3")
    try:
        server.start()
        exchange(server.port, server)
    except BaseException:
        cli.kill()
        raise
    records, err = cli.finish()
    assert [r["kind"] for r in records] == ["flow"] and records[0]["packets_orig"] + records[0]["packets_resp"] == 3
    assert "3 packets" in err and "(count)" in err


@pytest.mark.integration
def test_cli_bad_filter_is_one_line():
    require_capture()
    res = CliRunner().invoke(main, ["collect", "live", "--iface", "lo", "--filter", "tcp prot 502"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "'tcp prot 502'" in lines[0] and "filter" in lines[0]


# -- user errors that need no privilege ------------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [PermissionError(errno.EPERM, "Operation not permitted"),
                                 OSError(errno.EACCES, "Permission denied")])
def test_cli_missing_privilege_is_one_line(monkeypatch, exc):
    def refuse() -> None:
        raise exc

    monkeypatch.setattr(live, "list_interfaces", lambda: ["eth0", "lo"])
    monkeypatch.setattr(ring, "interface_names", lambda: ["eth0", "lo"])
    monkeypatch.setattr(ring, "packet_socket", refuse)
    res = CliRunner().invoke(main, ["collect", "live", "--iface", "eth0"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    python = os.path.realpath(sys.executable)
    assert lines == [f"Error: capturing on eth0 needs CAP_NET_RAW (run as root, or: "
                     f"sudo setcap cap_net_raw,cap_net_admin=eip {python})"]


def test_cli_unknown_interface_lists_the_available_ones(monkeypatch):
    def never() -> None:
        raise AssertionError("no socket may be opened for an unknown interface")

    monkeypatch.setattr(live, "list_interfaces", lambda: ["eth0", "lo"])
    monkeypatch.setattr(ring, "packet_socket", never)
    res = CliRunner().invoke(main, ["collect", "live", "--iface", "eht0"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == ["Error: no interface named 'eht0'; available: eth0, lo"]


def test_cli_unknown_interface_real_list():
    """Without fakes: the machine's own interfaces are listed (no privilege needed to find that out)."""
    res = CliRunner().invoke(main, ["collect", "live", "--iface", "otsentry-nope0"])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "no interface named 'otsentry-nope0'" in lines[0]
    if sys.platform.startswith("linux"):
        assert "lo" in lines[0].split("available: ", 1)[1].split(", ")


def test_default_filter():
    assert live.default_filter([502], ot_protocols=False) == "tcp port 502"
    assert live.default_filter([5020, 502], ot_protocols=False) == "tcp and (port 502 or port 5020)"
    assert live.default_filter([502]) == ("(tcp and (port 102 or port 502 or port 2404 or port 20000 or port 44818))"
                                          " or (udp and (port 2222 or port 20000 or port 44818))")


def test_importing_the_cli_does_not_import_scapy():
    code = "import sys, otsentry.cli, otsentry.collectors.live; sys.exit(any(m.startswith('scapy') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60).returncode == 0
