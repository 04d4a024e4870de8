"""End-to-end throughput of the embedded pipeline: ``otsentry run CAPTURE --model M`` on a 1,000,000-packet capture.

Reproducible: the capture comes from otsentry's own generator (cached in benchmarks/out/, shared with
benchmarks/collect.py); the model is trained on the first 10 minutes of it. Prints packets/s and peak memory of the
run with ``--jobs 2`` (the default on two or more CPUs: captures are decoded into windows in a second process
while the first scores them) and with ``--jobs 1`` (one process), next to ``otsentry inspect --summary``
(collector only) on the same file, so the cost of features and detectors is visible. Peak memory is that of the
process otsentry was started as (the decoding child's is about the same as inspect's). Not a test: numbers depend
on the machine.

    .venv/bin/python benchmarks/pipeline.py [--packets N] [--quick] [--repeat R]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from collect import capture, compile_bytecode, measure, repeated, table_header, table_row  # noqa: E402  (same folder)

OUT = Path(__file__).resolve().parent / "out"


def stale(model: Path) -> bool:
    """A cached model this otsentry refuses (older bundle format, other versions): retrained, not benchmarked."""
    from otsentry.detectors.bundle import BundleError, read_manifest

    try:
        read_manifest(model)
    except BundleError as exc:
        print(f"model: {exc}")
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 packets")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs per command; the median and best are shown")
    args = parser.parse_args(argv)
    packets = 100_000 if args.quick else args.packets
    path, truth = capture(packets, args.seed, fresh=False)
    model = OUT / f"{path.stem}.otsb"
    otsentry = [sys.executable, "-m", "otsentry"]
    compile_bytecode()
    if model.exists() and stale(model):
        model.unlink()
    if not model.exists():
        trained = measure("train", [*otsentry, "train", str(path), "--learn-for", "10m", "-o", str(model),
                                    "--no-progress"], keep_stdout=True)
        if trained.error:
            print(f"train failed: {trained.error}")
            return 1
        print(f"model: {model} trained in {trained.seconds:.1f} s (first 10 minutes of the capture)")
    runs = [
        repeated("run --jobs 2", [*otsentry, "run", str(path), "--model", str(model), "--format", "json",
                                 "--no-progress", "--jobs", "2"], False, args.repeat),
        repeated("run --jobs 1", [*otsentry, "run", str(path), "--model", str(model), "--format", "json",
                                 "--no-progress", "--jobs", "1"], False, args.repeat),
        repeated("inspect --summary", [*otsentry, "inspect", "--summary", str(path)], False, args.repeat),
    ]
    print("\n" + table_header("stage", 20))
    for r in runs:
        if r.error:
            print(f"{r.tool}: {r.error}")
            return 1
        print(table_row(r, truth["packets"], 20))
    print("\ntarget: otsentry run >= 500,000 packets/s (--jobs 2, the default with two or more CPUs, decodes in a "
          "second process; peak MiB is the scoring process's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
