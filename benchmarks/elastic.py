"""Alerts indexed per second into Elasticsearch by otsentry's sink (bulk, op_type=create, ids = alert ids).

Reproducible: the alerts are built deterministically (30 asset pairs, every rule, 1-6 top features each, spread
over 30 days so several daily indices are written), indexed into a throw-away prefix on the node of
``make services`` (or ``--es URL``), counted back, and deleted. Prints alerts/s for building the ECS documents
alone and for indexing, per batch size. Not a test: numbers depend on the machine and on the node's heap.

    .venv/bin/python benchmarks/elastic.py [--alerts N] [--quick] [--es URL]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from otsentry.alerts.ecs import to_ecs
from otsentry.alerts.elastic import ElasticConfig, ElasticSink, cluster_health, make_client
from otsentry.records import Alert, FeatureEvidence, alert_id

RULES = [("policy.new_talker", "high"), ("policy.new_function_code", "high"), ("policy.first_write", "high"),
         ("policy.address_out_of_range", "medium"), ("policy.exception_burst", "medium"),
         ("policy.diagnostics", "high"), ("anomaly.pair_ensemble", "critical"), ("anomaly.flow_ensemble", "medium")]


def make_alerts(n: int, days: int = 1, seed: int = 1) -> list[Alert]:
    """``n`` distinct alerts, their windows spread evenly over ``days`` days (so ``days`` daily indices)."""
    rng = random.Random(seed)
    start0 = 1_709_251_200.0  # 2024-03-01 00:00:00 UTC
    windows = max(1, -(-n // len(RULES)))
    step = max(10.0, (days * 86400 - 10) // windows // 10 * 10)
    out = []
    for i in range(n):
        rule, severity = RULES[i % len(RULES)]
        client, server = f"10.10.1.{10 + i % 30}", f"10.10.2.{10 + (i // 30) % 8}"
        start = start0 + step * (i // len(RULES))
        unit = -1 if rule.startswith("anomaly.flow") else 1 + i % 3
        evidence = tuple(FeatureEvidence(f"fc_{rng.randrange(1, 44)}", float(rng.randrange(1, 5000)), 0.0,
                                         float(rng.randrange(1, 50)), round(rng.random(), 4))
                         for _ in range(rng.randrange(1, 7)))
        out.append(Alert(
            id=alert_id(start, start + 10, client, server, unit, rule), rule_id=rule, rule_name=rule, category=
            rule.split(".")[0], detector="policy" if rule.startswith("policy") else "ensemble", severity=severity,
            risk_score=rng.uniform(20, 99), score=rng.uniform(1, 5), threshold=1.0, window_start=start,
            window_end=start + 10, client_ip=client, server_ip=server, unit_id=unit,
            explanation=f"{client} -> {server} unit {unit}: {rule} (benchmark alert {i})", evidence=evidence,
            function_codes=tuple(sorted({rng.randrange(1, 25) for _ in range(3)})), server_port=502))
    assert len({a.id for a in out}) == n, "alert ids must be distinct"
    return out


def index_run(client, alerts: list[Alert], batch_size: int, state: Path) -> tuple[float, int]:
    """Seconds from the first write to the last document searchable (close + refresh), and the count back."""
    prefix = f"otsentry-bench-{os.getpid()}-{batch_size}-{len(alerts)}"
    sink = ElasticSink(client, prefix, state_dir=state, batch_size=batch_size)
    try:
        t0 = time.perf_counter()
        sink.extend(alerts)
        assert sink.close(), "Elasticsearch became unreachable during the benchmark"
        client.indices.refresh(index=prefix)
        seconds = time.perf_counter() - t0
        count = int(client.count(index=prefix)["count"])
    finally:
        client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
        client.options(ignore_status=404).indices.delete_index_template(name=prefix)
    return seconds, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="10,000 alerts")
    parser.add_argument("--batch", type=int, action="append", help="bulk batch size (repeatable; default 500, 2000)")
    parser.add_argument("--es", default=os.environ.get("OTSENTRY_ES", "http://127.0.0.1:9200"))
    args = parser.parse_args(argv)
    n = 10_000 if args.quick else args.alerts
    config = ElasticConfig.from_env(args.es)
    client = make_client(config)
    health = cluster_health(client)
    if health is None:
        print(f"no Elasticsearch on {config.url}: run `make services` (or --es URL)")
        return 1
    alerts = make_alerts(n, days=1)
    t0 = time.perf_counter()
    for a in alerts:
        to_ecs(a)
    ecs_s = time.perf_counter() - t0
    version = client.options(ignore_status=404).nodes.info(node_id="_local", metric="os")
    node = next(iter(version.get("nodes", {}).values()), {})
    print(f"Elasticsearch {node.get('version', '?')} on {config.url} ({health['status']}), {os.cpu_count()} CPUs; "
          f"{n:,} alerts")
    print(f"\n{'stage':28} {'seconds':>8} {'alerts/s':>10}")
    print(f"{'to_ecs (documents only)':28} {ecs_s:>8.2f} {n / ecs_s:>10,.0f}")
    runs = [(f"index, batch {b}, 1 day", b, alerts) for b in args.batch or [500, 2000]]
    # a month replayed: the same number of alerts over 30 daily indices (index creation included)
    runs.append(("index, batch 500, 30 days", 500, make_alerts(n, days=30)))
    with tempfile.TemporaryDirectory() as state:
        for label, batch, docs in runs:
            seconds, count = index_run(client, docs, batch, Path(state))
            if count != n:
                print(f"{label}: {count} documents counted, expected {n}")
                return 1
            print(f"{label:28} {seconds:>8.2f} {n / seconds:>10,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
