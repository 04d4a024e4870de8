"""Live capture without loss: otsentry beside tcpdump on the same replays into a private veth pair.

Usage: ``sudo .venv/bin/python benchmarks/live.py [--packets N] [--tools T,...] [--scenarios S,...] [--kafka B]``

The benchmark capture of ``benchmarks/collect.py`` (generated, cached in ``benchmarks/out/``) is rewritten into
127.0.0.0/8 (``tcprewrite --pnat``) and replayed with ``tcpreplay`` from a network namespace created for the run
(``otsentry.synth.veth``: nothing is routed or leaves the pair) at increasing rates, at top speed, and for 20 s at
500,000 packets/s (``--loop 10 --unique-ip``: a ring alone cannot absorb that, the decoder has to keep up). For
each replay every tool captures the receiving end as a separate process and is stopped with SIGINT once the replay
is over; the table shows packets sent, packets captured, Modbus ADUs decoded (against ``inspect --summary`` on the
replayed file, times the loops) and the drops each reports (tcpdump: "dropped by kernel"; otsentry: the ring's
PACKET_STATISTICS and the interface's counters). Tools:

* ``tcpdump``: ``tcpdump -w /dev/null -B 262144`` (libpcap's TPACKET_V3 ring, 256 MiB), the reference;
* ``collect``: ``otsentry collect live --filter '' --summary`` (decode everything, print counts at the end);
* ``kafka``: ``otsentry collect live --filter '' --kafka B`` (windows published to a real broker; needs --kafka);
* ``run``: ``otsentry run --iface --model M`` (decode, window, score; the model is learned from the same file).

Needs root, ``ip``, ``tcpreplay``/``tcprewrite`` and tcpdump. Exit status 0 when every run finished, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from collect import OUT, capture  # noqa: E402  (same folder)
from otsentry.synth.veth import VethPair, rewrite_to_loopback, veth_problem

OTSENTRY = [sys.executable, "-m", "otsentry"]
SCENARIOS = {  # name -> (tcpreplay options, loops)
    "100k": ({"pps": 100_000}, 1),
    "250k": ({"pps": 250_000}, 1),
    "500k": ({"pps": 500_000}, 1),
    "top": ({"topspeed": True}, 1),
    "500k-20s": ({"pps": 500_000, "loop": 10, "unique_ip": True}, 10),
}
TOOLS = ("tcpdump", "collect", "kafka", "run")
READY = {"tcpdump": "listening on", "collect": "capturing on", "kafka": "publishing", "run": "scoring"}


@dataclass
class Result:
    tool: str
    scenario: str
    sent: int = 0
    rate: float = 0.0
    captured: int | None = None
    adus: int | None = None
    drops: int | None = None
    interface_drops: int | None = None
    error: str = ""


class Tool:
    """One capturing process; stderr read by a thread so that neither pipe can block it."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.out = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self.ready = threading.Event()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)
            if READY[self.name] in line:
                self.ready.set()

    def stop(self, timeout_s: float = 120.0) -> tuple[str, str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._pump.join(5)
        self.out.seek(0)
        out = self.out.read()
        self.out.close()
        return out, "".join(self.err)


def argv_for(tool: str, iface: str, model: Path, kafka: str | None) -> list[str]:
    if tool == "tcpdump":
        return ["tcpdump", "-i", iface, "-n", "-w", "/dev/null", "-B", "262144", "-s", "65535"]
    if tool == "collect":
        return [*OTSENTRY, "collect", "live", "--iface", iface, "--filter", "", "--summary"]
    if tool == "kafka":
        return [*OTSENTRY, "collect", "live", "--iface", iface, "--filter", "", "--kafka", str(kafka)]
    return [*OTSENTRY, "run", "--iface", iface, "--model", str(model), "--format", "json"]


def parse(tool: str, out: str, err: str, r: Result) -> None:
    if tool == "tcpdump":
        got = re.search(r"(\d+) packets captured", err)
        dropped = re.search(r"(\d+) packets dropped by kernel", err)
        r.captured = int(got.group(1)) if got else None
        r.drops = int(dropped.group(1)) if dropped else None
    elif tool == "collect":
        s = json.loads(out.strip().splitlines()[-1])
        r.captured, r.adus, r.drops, r.interface_drops = (s["packets"], s["modbus_adus"], s["kernel_drops"],
                                                            s["interface_drops"])
    else:
        got = re.search(r"(\d+) packets, \d+ windows published", err)
        dropped = re.search(r"(\d+) kernel drops, (\d+) interface drops", err)
        r.captured = int(got.group(1)) if got else None
        if dropped:
            r.drops, r.interface_drops = int(dropped.group(1)), int(dropped.group(2))
    if r.drops is None:
        r.error = "no drop count in the output: " + (err.strip().splitlines() or ["(nothing)"])[-1][:200]


def one(tool: str, scenario: str, veth: VethPair, pcap: Path, model: Path, kafka: str | None) -> Result:
    r = Result(tool, scenario)
    options, _ = SCENARIOS[scenario]
    proc = Tool(tool, argv_for(tool, veth.rx, model, kafka))
    if not proc.ready.wait(60):
        _, err = proc.stop(10)
        r.error = "did not start: " + (err.strip().splitlines() or ["(no output)"])[-1][:200]
        return r
    time.sleep(1.0 if tool != "kafka" else 3.0)  # the Kafka collector sends its start watermark first
    try:
        sent = veth.replay(pcap, **options)
        r.sent, r.rate = sent.sent, sent.pps
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        r.error = str(exc)
    time.sleep(2.0)  # the last ring blocks are handed over within the block timeout
    out, err = proc.stop()
    if not r.error:
        try:
            parse(tool, out, err, r)
        except (ValueError, IndexError, KeyError) as exc:
            r.error = f"cannot read the output ({exc}): {err.strip()[-200:]}"
    return r


def expected_adus(pcap: Path) -> int:
    out = subprocess.run([*OTSENTRY, "inspect", "--summary", str(pcap)], capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout)["modbus_adus"])


def model_for(pcap: Path) -> Path:
    path = pcap.with_suffix(".otsb")
    if not path.exists() or path.stat().st_mtime < pcap.stat().st_mtime:
        subprocess.run([*OTSENTRY, "train", str(pcap), "-o", str(path)], check=True, capture_output=True)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tools", default="tcpdump,collect,kafka,run")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--kafka", default=None, metavar="BOOTSTRAP", help="broker for the kafka tool (else skipped)")
    args = ap.parse_args(argv)
    problem = veth_problem() or (None if shutil.which("tcpdump") else "tcpdump is not installed")
    if problem:
        print(f"live benchmark: {problem}", file=sys.stderr)
        return 1
    tools = [t for t in args.tools.split(",") if t in TOOLS and (t != "kafka" or args.kafka)]
    scenarios = [s for s in args.scenarios.split(",") if s in SCENARIOS]
    source, _ = capture(args.packets, args.seed, False)
    pcap = rewrite_to_loopback(source, OUT / (source.stem + "-127.pcap"))
    adus, model = expected_adus(pcap), model_for(pcap)
    print(f"capture: {pcap} ({args.packets:,} packets, {adus:,} ADUs by inspect --summary)")
    print(f"{'tool':<8} {'replay':<9} {'sent':>11} {'sent pps':>10} {'captured':>11} {'ADUs':>11} {'expected':>11} "
          f"{'drops':>9} {'nic drops':>9}")
    ok = True
    with VethPair() as veth:
        for scenario in scenarios:
            loops = SCENARIOS[scenario][1]
            for tool in tools:
                r = one(tool, scenario, veth, pcap, model, args.kafka)
                if r.error:
                    ok = False
                    print(f"{tool:<8} {scenario:<9} error: {r.error}")
                    continue
                show = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
                print(f"{tool:<8} {scenario:<9} {r.sent:>11,} {r.rate:>10,.0f} {show(r.captured):>11} "
                      f"{show(r.adus):>11} {adus * loops if tool == 'collect' else 0:>11,} {show(r.drops):>9} "
                      f"{show(r.interface_drops):>9}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
