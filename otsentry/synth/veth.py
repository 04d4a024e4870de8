"""Replaying a capture onto a real interface that no packet can leave: a veth pair with its sending end in a
private network namespace.

Why: live capture has to be tested and measured on a real interface (the kernel's ring, its drop counters, the
NIC's), and the traffic must stay home. The pair's sending end lives in a namespace created for the run (deleted
with it); the receiving end, in the host's namespace so that a collector there can reach a local Kafka broker, has
no address and IPv6 disabled, and the replayed addresses are rewritten into 127.0.0.0/8 (``rewrite_to_loopback``),
which the host's IP stack drops as martians on any interface but ``lo``: a packet socket sees every packet, and
nothing is routed, answered or forwarded. ``tcpreplay`` sends; both it and ``tcprewrite`` come with Debian's
``tcpreplay`` package. Needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ReplayResult", "VethPair", "rewrite_to_loopback", "veth_problem"]


@dataclass(frozen=True)
class ReplayResult:
    sent: int
    seconds: float
    pps: float
    failed: int


def veth_problem() -> str | None:
    """Why veth replays cannot run here (None when they can)."""
    if not os.path.exists("/sys/class/net"):
        return "no Linux network interfaces (/sys/class/net)"
    if os.geteuid() != 0:
        return "creating a network namespace and a veth pair needs root"
    for tool in ("ip", "tcpreplay", "tcprewrite"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian packages iproute2, tcpreplay)"
    return None


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=30)


def rewrite_to_loopback(src: Path, dst: Path) -> Path:
    """A copy of ``src`` with every IPv4 address mapped into 127.0.0.0/8 (``tcprewrite --pnat``), cached by mtime."""
    if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
        return dst
    tmp = dst.with_suffix(".tmp")
    _run("tcprewrite", "--pnat=0.0.0.0/0:127.0.0.0/8", f"--infile={src}", f"--outfile={tmp}")
    tmp.replace(dst)
    return dst


class VethPair:
    """``with VethPair() as v:`` capture on ``v.rx``, ``v.replay(pcap)`` sends from the namespace's ``v.tx``."""

    def __init__(self, tag: str = "ots") -> None:
        suffix = f"{os.getpid() % 100000}"
        self.netns = f"{tag}-{suffix}"
        self.rx = f"{tag}{suffix}r"[:15]
        self.tx = f"{tag}{suffix}t"[:15]
        self._up = False

    def __enter__(self) -> "VethPair":
        problem = veth_problem()
        if problem:
            raise RuntimeError(problem)
        self.close()
        try:
            _run("ip", "netns", "add", self.netns)
            _run("ip", "link", "add", self.rx, "type", "veth", "peer", "name", self.tx, "netns", self.netns)
            _run("sysctl", "-qw", f"net.ipv6.conf.{self.rx}.disable_ipv6=1")
            _run("ip", "netns", "exec", self.netns, "sysctl", "-qw", f"net.ipv6.conf.{self.tx}.disable_ipv6=1")
            _run("ip", "link", "set", self.rx, "up")
            _run("ip", "netns", "exec", self.netns, "ip", "link", "set", self.tx, "up")
        except BaseException:
            self.close()
            raise
        self._up = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Delete the namespace (its end of the pair, and so the pair, goes with it); idempotent."""
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.rx], capture_output=True, timeout=30)
        self._up = False

    def replay(self, pcap: Path, *, pps: int | None = None, topspeed: bool = False, loop: int = 1,
               unique_ip: bool = False, timeout_s: float = 600.0) -> ReplayResult:
        """Send ``pcap`` from the namespace; bounded in time. ``unique_ip`` gives every loop new addresses, so each
        loop is new connections (otherwise a repeat of the same sequence numbers is, rightly, a retransmission)."""
        args = ["ip", "netns", "exec", self.netns, "tcpreplay", "-q", "-i", self.tx]
        if topspeed:
            args.append("--topspeed")
        elif pps:
            args.append(f"--pps={pps}")
        if loop > 1:
            args.append(f"--loop={loop}")
            if unique_ip:
                args.append("--unique-ip")
        args.append(str(pcap))
        out = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
        if out.returncode != 0:
            raise RuntimeError(f"tcpreplay failed: {(out.stderr or out.stdout).strip()[-300:]}")
        return parse_tcpreplay(out.stdout + out.stderr)


def parse_tcpreplay(text: str) -> ReplayResult:
    """Packets sent, seconds and rate from tcpreplay's report."""
    actual = re.search(r"Actual: (\d+) packets .* sent in ([\d.]+) seconds", text)
    rated = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", text)
    failed = re.search(r"Failed packets:\s+(\d+)", text)
    if not actual:
        raise RuntimeError(f"cannot read tcpreplay's report: {text.strip()[-300:]}")
    return ReplayResult(int(actual.group(1)), float(actual.group(2)), float(rated.group(1)) if rated else 0.0,
                        int(failed.group(1)) if failed else 0)
