"""``python -m otsentry.synth FILE --packets N --seed S``: write a polling capture, print its ground truth as JSON.

No click here on purpose: benchmarks and CI scripts call it before (or without) the CLI being importable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from otsentry.synth.polling import PollingOptions, generate_polling


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m otsentry.synth", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="pcap file to write")
    parser.add_argument("--packets", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--plcs", type=int, default=4)
    parser.add_argument("--link", choices=("ethernet", "sll", "raw"), default="ethernet")
    parser.add_argument("--vlan", type=int, default=None)
    parser.add_argument("--ipv6", action="store_true")
    parser.add_argument("--nanosecond", action="store_true", help="nanosecond-resolution pcap")
    parser.add_argument("--no-background", action="store_true", help="Modbus only: no DNS/HTTP flows")
    parser.add_argument("--transactions", action="store_true", help="include every transaction in the JSON")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    truth = generate_polling(
        args.file, args.packets, args.seed, args.plcs, options=PollingOptions(background=not args.no_background),
        link=args.link, vlan=args.vlan, ipv6=args.ipv6, nanosecond=args.nanosecond,
        keep_transactions=args.transactions,
    )
    result = truth.to_dict(with_transactions=args.transactions)
    result["generation_s"] = round(time.perf_counter() - started, 3)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
