"""Decode throughput per OT protocol: ``otsentry inspect --summary`` beside tshark on the same generated capture.

For each of DNP3, IEC 104, S7comm and EtherNet/IP a capture of ``--packets`` packets (default 1,000,000: a master
polling one device, one request and one answer segment per exchange, see ``otsentry.synth.ics_traffic``) is
generated once and cached in benchmarks/out/. otsentry decodes it (``inspect --summary``: framing, parsing,
pairing, counting) and tshark is asked for the same work (dissect every PDU and print the protocol's message
field, output thrown away). Median and best wall time of ``--repeat`` runs and peak memory are printed, with the
message counts of both tools side by side (they must agree). Not a test: figures depend on the machine.

    .venv/bin/python benchmarks/protocols.py [--packets N] [--quick] [--repeat R] [--protocol P ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from collect import compile_bytecode, repeated, table_header, table_row  # noqa: E402  (same folder)

from otsentry.synth.ics_traffic import PROTOCOLS, write_ics_capture

OUT = Path(__file__).resolve().parent / "out"
FIELDS = {"dnp3": "dnp3.al.func", "iec104": "iec60870_104.apdulen", "s7comm": "s7comm.header.rosctr",
          "enip": "enip.command"}


def capture(protocol: str, packets: int) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"ics-{protocol}-{packets}.pcap"
    if not path.exists():
        started = time.perf_counter()
        write_ics_capture(path, protocol, packets)
        print(f"capture: {path} generated in {time.perf_counter() - started:.1f} s")
    return path


def tshark_messages(tshark: str, path: Path, field: str) -> int:
    import subprocess

    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", field, "-E", "occurrence=a",
                          "-E", "aggregator=,"], capture_output=True, text=True, check=True).stdout
    return sum(len([v for v in line.split(",") if v]) for line in out.splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 packets")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--protocol", action="append", choices=PROTOCOLS)
    args = parser.parse_args(argv)
    packets = 100_000 if args.quick else args.packets
    otsentry = str(Path(sys.executable).with_name("otsentry"))
    tshark = shutil.which("tshark")
    compile_bytecode()
    failed = False
    for protocol in args.protocol or PROTOCOLS:
        path = capture(protocol, packets)
        print(f"\n{protocol}: {path.name}")
        print(table_header("tool", 22))
        ours = repeated("otsentry inspect", [otsentry, "inspect", "--summary", "--no-progress", str(path)], True,
                        args.repeat)
        print(table_row(ours, packets, 22))
        messages = json.loads(ours.stdout)["protocols"][protocol]["messages"] if not ours.error else None
        theirs_count = None
        if tshark:
            theirs = repeated("tshark", [tshark, "-r", str(path), "-T", "fields", "-e", FIELDS[protocol]], False,
                              args.repeat)
            print(table_row(theirs, packets, 22))
            theirs_count = tshark_messages(tshark, path, FIELDS[protocol])
        print(f"messages: otsentry {messages}, tshark {theirs_count}")
        failed |= bool(ours.error) or (theirs_count is not None and messages != theirs_count)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
