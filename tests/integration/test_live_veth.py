"""Live capture from a real interface: a capture replayed with tcpreplay into a veth pair in a private namespace.

``collect live --summary`` must decode what ``inspect --summary`` decodes from the same file (no packet lost, no
kernel drop), also when the attack's segments arrive reversed; two collectors in one fan-out group must split the
traffic by address pair, between them decoding every ADU once. Addresses are rewritten into 127.0.0.0/8 and the
sending end lives in a namespace made for the test (``otsentry.synth.veth``): nothing leaves the pair. Needs root,
iproute2 and tcpreplay: fails in CI when they are missing, skips with the reason elsewhere.
"""

from __future__ import annotations

import json
import pwd
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from otsentry.synth.evasion import evade
from otsentry.synth.veth import VethPair, rewrite_to_loopback, veth_problem
from tests.helpers import IN_CI, ROOT

pytestmark = pytest.mark.integration

DEMO = ROOT / "replays" / "demo-polling.pcap"
COMPARED = ("modbus_adus", "modbus_requests", "modbus_responses", "exceptions", "malformed", "truncated_adus")
RATE = 20_000  # packets/s: the 5,000-packet demo capture in a quarter of a second


def require_veth() -> None:
    problem = veth_problem()
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)


class Collector:
    """``otsentry collect live`` as a process; returns once its ring is open (it says so on stderr)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "otsentry", "collect", "live", *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.err.append(line)
                if "capturing on" in line:
                    ready.set()
            ready.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        assert ready.wait(30), "the collector did not start"
        assert self.proc.poll() is None, "".join(self.err)

    def stop(self) -> str:
        time.sleep(1.0)  # the last ring block is handed over within the block timeout (50 ms)
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        self._pump.join(5)
        assert self.proc.returncode == 0, "".join(self.err)
        return out


@pytest.fixture(scope="module")
def veth():
    require_veth()
    with VethPair("otst") as pair:
        yield pair


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    require_veth()
    return rewrite_to_loopback(DEMO, tmp_path_factory.mktemp("veth") / "demo-127.pcap")


def inspect_summary(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "otsentry", "inspect", "--summary", str(path)], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def test_collect_live_summary_matches_inspect_summary(veth, demo):
    expected = inspect_summary(demo)
    collector = Collector("--iface", veth.rx, "--filter", "", "--summary")
    sent = veth.replay(demo, pps=RATE)
    summary = json.loads(collector.stop().strip().splitlines()[-1])
    assert sent.sent == expected["packets"] and sent.failed == 0
    assert summary["kernel_drops"] == 0 and summary["interface_drops"] == 0
    assert summary["packets"] == sent.sent
    assert {k: summary[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}
    assert set(expected) <= set(summary)  # the same object as inspect --summary, plus the drops


def test_reversed_segments_on_the_wire_decode_like_the_file(veth, demo, tmp_path):
    """The client's segments are each cut in three and sent last-first: the collector must put them back."""
    expected = inspect_summary(demo)
    reversed_pcap = tmp_path / "reversed.pcap"
    evade(demo, reversed_pcap, range(1, expected["packets"] + 1), "tcp_reversed")
    collector = Collector("--iface", veth.rx, "--filter", "", "--summary")
    veth.replay(reversed_pcap, pps=RATE)
    summary = json.loads(collector.stop().strip().splitlines()[-1])
    assert summary["kernel_drops"] == 0
    assert summary["tcp_out_of_order"] > 0 and summary["tcp_gaps"] == 0
    assert {k: summary[k] for k in COMPARED} == {k: expected[k] for k in COMPARED}


def test_two_fanout_workers_split_by_address_pair(veth, demo):
    expected = inspect_summary(demo)
    workers = [Collector("--iface", veth.rx, "--filter", "", "--json", "--no-flows", "--fanout-group", "4711",
                         "--fanout-workers", "2") for _ in range(2)]
    veth.replay(demo, pps=RATE)
    outputs = [w.stop() for w in workers]
    pairs, adus = [], 0
    for out in outputs:
        events = [json.loads(line) for line in out.splitlines() if line.strip()]
        events = [e for e in events if e.get("kind") == "modbus"]
        pairs.append(Counter((e["client_ip"], e["server_ip"]) for e in events))
        adus += sum((e["request_frame"] is not None) + (e["response_frame"] is not None) for e in events)
    assert all(pairs), "each worker must get a share of the traffic"
    assert not set(pairs[0]) & set(pairs[1]), "an asset pair was split between workers"
    assert adus == expected["modbus_adus"] + expected["truncated_adus"]


def test_privileges_are_dropped_once_the_ring_is_open(veth, demo):
    """--user: the capture keeps working as an unprivileged user (the ring was opened as root)."""
    collector = Collector("--iface", veth.rx, "--filter", "", "--summary", "--user", "nobody")
    status = Path(f"/proc/{collector.proc.pid}/status").read_text()
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert int(uid) == pwd.getpwnam("nobody").pw_uid
    veth.replay(demo, pps=RATE)
    summary = json.loads(collector.stop().strip().splitlines()[-1])
    assert summary["modbus_adus"] == inspect_summary(demo)["modbus_adus"] and summary["kernel_drops"] == 0


def test_unknown_user_is_one_line(veth):
    res = subprocess.run([sys.executable, "-m", "otsentry", "collect", "live", "--iface", veth.rx, "--user",
                          "otsentry-no-such-user", "--count", "1"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and lines == ["Error: cannot drop privileges: no user named 'otsentry-no-such-user'"]


def test_run_iface_keeps_a_rolling_capture_of_everything_it_saw(veth, demo, tmp_path):
    from otsentry.collectors.capture import open_capture

    model = tmp_path / "m.otsb"
    subprocess.run([sys.executable, "-m", "otsentry", "train", str(demo), "-o", str(model)], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    rolled = tmp_path / "rolling"
    proc = subprocess.Popen([sys.executable, "-m", "otsentry", "run", "--iface", veth.rx, "--model", str(model),
                             "--jobs", "1", "--filter", "", "--pcap-dir", str(rolled), "--pcap-retention", "64MB",
                             "--pcap-file-size", "256KB"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)  # the ring opens after the start message
    assert proc.poll() is None
    sent = veth.replay(demo, pps=RATE)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    files = sorted(rolled.glob("otsentry-*.pcap"))
    assert len(files) >= 2  # 256 KB files: the demo capture spans several
    recorded = []
    for f in files:
        with open_capture(f) as reader:
            for chunk in reader.chunks():
                recorded += [bytes(chunk.buf[o:o + c]) for o, c in zip(chunk.offset.tolist(), chunk.caplen.tolist())]
    with open_capture(demo) as reader:
        original = [bytes(chunk.buf[o:o + c]) for chunk in reader.chunks()
                    for o, c in zip(chunk.offset.tolist(), chunk.caplen.tolist())]
    assert len(recorded) == sent.sent == len(original)
    assert recorded == original  # every frame, byte for byte, in order
    assert f"{sent.sent:,} packets recorded in {rolled}" in err
