"""Collector throughput: ``otsentry inspect --summary`` against tshark on the same generated capture.

Usage: ``python benchmarks/collect.py [--packets N | --quick] [--seed S] [--repeat R] [--keep] [--fresh]``

The capture comes from the project's own generator (``otsentry.synth``), so anyone can reproduce it; it is cached
under ``benchmarks/out/`` (git-ignored) with its ground truth, keyed by packets, seed and a hash of the generator's
source, so a changed generator never benchmarks a stale file. Each tool runs as a child process; wall time is
measured around it and peak RSS comes from ``os.wait4`` (the child's own ``ru_maxrss``; grandchildren it starts
are not included). Each tool runs ``--repeat`` times (default 3) and the median and best wall times are printed:
the machines this runs on are often shared and noisy. otsentry's bytecode is compiled first, as ``pip install``
does for a regular install, so the first run does not pay for compiling it. tshark is asked for the same work a
Modbus monitor does (dissect every ADU, print the transaction ids) with its output thrown away. Exit status: 0 if
every tool ran, 1 otherwise.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import otsentry.synth
from otsentry.synth.polling import generate_polling

OUT = Path(__file__).resolve().parent / "out"
COMPARED = ("packets", "modbus_adus", "modbus_requests", "modbus_responses", "exceptions")


@dataclass
class Run:
    """One child's measurements; ``error`` is set when it could not run or exited non-zero."""

    tool: str
    seconds: float = 0.0
    peak_mib: float = 0.0
    returncode: int | None = None
    all_seconds: tuple[float, ...] = ()
    stdout: str = ""
    error: str | None = None


def generator_hash() -> str:
    """Hash of the generator's source: part of the cache key."""
    digest = hashlib.sha256()
    for path in sorted(Path(otsentry.synth.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:10]


def capture(packets: int, seed: int, fresh: bool) -> tuple[Path, dict]:
    """The cached capture and its ground truth, generated when missing (stale versions are removed)."""
    OUT.mkdir(parents=True, exist_ok=True)
    stem = f"polling-{packets}-s{seed}"
    path = OUT / f"{stem}-{generator_hash()}.pcap"
    truth_path = path.with_suffix(".json")
    for old in OUT.glob(f"{stem}-*"):  # made by an older generator
        if not old.name.startswith(path.stem + "."):
            old.unlink()
    if path.exists() and truth_path.exists() and not fresh:
        print(f"capture: {path} (cached)")
        return path, json.loads(truth_path.read_text())
    started = time.perf_counter()
    truth = generate_polling(path, packets, seed).to_dict()
    elapsed = time.perf_counter() - started
    truth_path.write_text(json.dumps(truth, indent=2) + "\n")
    print(f"capture: {path} generated in {elapsed:.1f} s ({packets / elapsed:,.0f} packets/s)")
    return path, truth


def compile_bytecode() -> None:
    """Write otsentry's .pyc files (an editable install has none, and PYTHONDONTWRITEBYTECODE may stop Python
    from writing them), so timings measure the work, not the compiler."""
    compileall.compile_dir(Path(otsentry.synth.__file__).parents[1], quiet=1)


def repeated(tool: str, argv: list[str], keep_stdout: bool, repeat: int) -> Run:
    """``measure`` ``repeat`` times: the median run's figures (median wall time), every wall time in ``all_seconds``."""
    runs = []
    for _ in range(max(1, repeat)):
        run = measure(tool, argv, keep_stdout)
        if run.error:
            return run
        runs.append(run)
    runs.sort(key=lambda r: r.seconds)
    median = runs[len(runs) // 2]
    median.seconds = statistics.median(r.seconds for r in runs)
    median.all_seconds = tuple(r.seconds for r in runs)
    return median


def measure(tool: str, argv: list[str], keep_stdout: bool) -> Run:
    """Run ``argv`` as a child, timing it and reading its peak RSS; stdout kept in memory or discarded."""
    run = Run(tool)
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as out:
        try:
            started = time.perf_counter()
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=err,
                                     stdout=out if keep_stdout else subprocess.DEVNULL)
        except OSError as exc:
            run.error = f"cannot start {argv[0]}: {exc}"
            return run
        _, status, usage = os.wait4(child.pid, 0)
        run.seconds = time.perf_counter() - started
        child.returncode = run.returncode = os.waitstatus_to_exitcode(status)
        run.peak_mib = usage.ru_maxrss / 1024  # KiB on Linux
        out.seek(0)
        run.stdout = out.read().decode("utf-8", "replace")
        if run.returncode != 0:
            err.seek(0)
            lines = [ln for ln in err.read().decode("utf-8", "replace").splitlines()
                     if ln.strip() and "Running as user" not in ln]
            run.error = f"exit status {run.returncode}: " + ("\n  ".join(lines[-15:]) or "(no stderr)")
    return run


def compare_summary(run: Run, truth: dict) -> str:
    """otsentry's --summary JSON against the generator's ground truth, in one line."""
    try:
        summary = json.loads(run.stdout)
    except ValueError:
        return "summary is not JSON: " + run.stdout[:200]
    diffs = [f"{k} {summary.get(k)} != {truth[k]}" for k in COMPARED if summary.get(k) != truth[k]]
    return "counts agree with the ground truth" if not diffs else "MISMATCH: " + "; ".join(diffs)


def table_header(label: str, width: int) -> str:
    return (f"{label:<{width}} {'packets':>10} {'median s':>9} {'packets/s':>11} {'best s':>7} {'best pkts/s':>11} "
            f"{'peak MiB':>9}")


def table_row(run: Run, packets: int, width: int) -> str:
    """One line of figures: median and best wall time of the runs, and the packets/s of each."""
    if run.error:
        return f"{run.tool:<{width}} {'FAILED':>10}"
    best = min(run.all_seconds or (run.seconds,))
    return (f"{run.tool:<{width}} {packets:>10,} {run.seconds:>9.2f} {packets / run.seconds:>11,.0f} {best:>7.2f} "
            f"{packets / best:>11,.0f} {run.peak_mib:>9.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 packets")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool; the median and best are shown")
    parser.add_argument("--keep", action="store_true", help="also keep the tools' outputs in benchmarks/out/")
    parser.add_argument("--fresh", action="store_true", help="regenerate the capture even if cached")
    args = parser.parse_args(argv)
    packets = 100_000 if args.quick else args.packets
    path, truth = capture(packets, args.seed, args.fresh)
    print(f"truth: {truth['packets']:,} packets, {truth['modbus_adus']:,} ADUs, {truth['duration_s']:,.0f} s of "
          f"traffic")

    compile_bytecode()
    runs = [repeated("otsentry", [sys.executable, "-m", "otsentry", "inspect", "--summary", str(path)], True,
                    args.repeat)]
    tshark = shutil.which("tshark")
    if tshark is None:
        runs.append(Run("tshark", error="tshark is not installed (make tools)"))
    else:
        runs.append(repeated("tshark", [tshark, "-r", str(path), "-T", "fields", "-e", "mbtcp.trans_id"],
                            args.keep, args.repeat))
    if args.keep:
        for run in runs:
            (OUT / f"{path.stem}.{run.tool}.out").write_text(run.stdout)

    print()
    print(table_header("tool", 10))
    for run in runs:
        print(table_row(run, truth["packets"], 10))
    ours, theirs = runs
    if not ours.error and not theirs.error:
        print(f"\notsentry is {theirs.seconds / ours.seconds:.2f}x tshark's speed (medians of {args.repeat} runs)")
    if not ours.error:
        print("otsentry: " + compare_summary(ours, truth))
    for run in runs:
        if run.error:
            print(f"\n{run.tool} failed: {run.error}", file=sys.stderr)
    return 1 if any(run.error for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
