"""Windows per second through collector -> Kafka -> detector worker, beside the in-process rate on the same capture.

Reproducible: the 1,000,000-packet capture of benchmarks/collect.py (cached in benchmarks/out/) and a model trained
on its first 10 minutes. Three measurements of the same windows and alerts:

* in-process, ``pipeline.run`` (what ``otsentry run`` does, bundle already loaded);
* in-process, the streaming stages over the in-memory transport (collector stage, watermarks, event-time
  buffer, detector worker), i.e. the cost of the stream machinery without a broker;
* over Kafka: ``otsentry detect --kafka`` started first (model loaded, group joined), then
  ``otsentry collect pcap --kafka``; timed from the collector's start until the worker's ``/metrics`` says every
  window is scored (each its own process, as deployed; the broker is ``make services``'s, on this machine).

Not a test: numbers depend on the machine. Needs a broker (``make services``; ``--kafka`` to use another).

    .venv/bin/python benchmarks/kafka.py [--packets N] [--quick] [--kafka HOST:PORT]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from collect import capture  # noqa: E402  (benchmarks/collect.py, same folder)

OUT = Path(__file__).resolve().parent / "out"
ROOT = Path(__file__).resolve().parents[1]


def _model(path: Path) -> Path:
    model = OUT / f"{path.stem}.otsb"
    if not model.exists():
        subprocess.run([sys.executable, "-m", "otsentry", "train", str(path), "--learn-for", "10m", "-o", str(model),
                        "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    return model


def in_process(path: Path, model: Path) -> tuple[float, int, int]:
    from otsentry import pipeline
    from otsentry.detectors.bundle import ModelBundle

    bundle = ModelBundle.load(model)
    t0 = time.perf_counter()
    result = pipeline.run([path], bundle=bundle)
    return time.perf_counter() - t0, result.windows, len(result.alerts)


def in_memory_stream(path: Path, model: Path) -> tuple[float, int, int]:
    from otsentry.detectors.bundle import ModelBundle
    from otsentry.stream.publish import WindowPublisher, publish_captures
    from otsentry.detectors.scoring import Detection
    from otsentry.stream.delivery.outbox import Outbox
    from otsentry.stream.transport import MemoryBroker
    from otsentry.stream.detect import DetectorWorker

    bundle = ModelBundle.load(model)
    broker = MemoryBroker(partitions=6)
    t0 = time.perf_counter()
    publish_captures([path], WindowPublisher(Outbox(broker.publisher()), "f", "bench"), bundle.window_s)
    worker = DetectorWorker(lambda: broker.consumer(["f"], "g"), Outbox(broker.publisher()), Detection(bundle),
                            alerts_topic="a")
    while worker.step(0) or worker.buffer.held:
        pass
    return time.perf_counter() - t0, worker.scored, worker.alerts_published


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def over_kafka(path: Path, model: Path, bootstrap: str, windows: int) -> tuple[float, float, float]:
    """(end-to-end seconds, collector seconds, alerts) with fresh topics and group."""
    from otsentry.stream.runtime.metrics import scrape

    sfx = uuid.uuid4().hex[:8]
    topics = ["--kafka", bootstrap, "--features-topic", f"bench.features.{sfx}", "--partitions", "6"]
    otsentry = [sys.executable, "-m", "otsentry"]
    port = _free_port()
    env = {**os.environ, "OTSENTRY_KAFKA_BOOTSTRAP": ""}
    detector = subprocess.Popen([*otsentry, "detect", "--model", str(model), *topics, "--alerts-topic",
                                 f"bench.alerts.{sfx}", "--deadletter-topic", "", "--group", f"bench-{sfx}",
                                 "--metrics-port", str(port)], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while (scrape(port, "otsentry_assigned_partitions") or 0) < 6:
            if time.monotonic() > deadline or detector.poll() is not None:
                raise RuntimeError("the detector did not join its group")
            time.sleep(0.05)
        t0 = time.perf_counter()
        collector = subprocess.run([*otsentry, "collect", "pcap", str(path), *topics], cwd=ROOT, env=env,
                                   capture_output=True, text=True)
        collected = time.perf_counter() - t0
        if collector.returncode:
            raise RuntimeError(f"collector failed: {collector.stderr[-500:]}")
        while (scrape(port, "otsentry_windows_scored_total") or 0) < windows:
            if time.perf_counter() - t0 > 600 or detector.poll() is not None:
                raise RuntimeError("the detector did not score every window")
            time.sleep(0.02)
        total = time.perf_counter() - t0
        return total, collected, scrape(port, "otsentry_alerts_published_total") or 0.0
    finally:
        detector.terminate()
        detector.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 packets")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kafka", default=os.environ.get("OTSENTRY_KAFKA", "127.0.0.1:9092"))
    args = parser.parse_args(argv)
    path, truth = capture(100_000 if args.quick else args.packets, args.seed, fresh=False)
    model = _model(path)
    seconds, windows, alerts = in_process(path, model)
    mem_seconds, mem_windows, mem_alerts = in_memory_stream(path, model)
    k_seconds, k_collect, k_alerts = over_kafka(path, model, args.kafka, windows)
    print(f"\n{truth['packets']:,} packets, {windows:,} windows, {alerts} alerts (run)\n")
    print(f"{'path':46} {'seconds':>8} {'windows/s':>10} {'alerts':>7}")
    rows = [("in-process: pipeline.run", seconds, alerts),
            ("in-process: stream stages, in-memory transport", mem_seconds, mem_alerts),
            ("collector -> Kafka -> detector (3 processes)", k_seconds, k_alerts)]
    for name, secs, n_alerts in rows:
        print(f"{name:46} {secs:>8.2f} {windows / secs:>10,.0f} {int(n_alerts):>7}")
    print(f"{'  of which the collector publishing':46} {k_collect:>8.2f} {windows / k_collect:>10,.0f}")
    if mem_windows != windows:
        print(f"warning: the in-memory stream scored {mem_windows} windows, run {windows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
