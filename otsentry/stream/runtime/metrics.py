"""``/healthz`` and Prometheus ``/metrics`` for the daemons, from the standard library (``http.server``).

Why not prometheus_client: a dozen counters and gauges do not justify a dependency, and the text exposition format
is a few lines. The server runs in a daemon thread on a local port (127.0.0.1 by default: metrics reveal the
plant's traffic volumes, so exposing them is a decision for the operator). ``/healthz`` answers 200 while the main
loop is alive and the broker reachable, 503 otherwise, with a small JSON body saying why.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

__all__ = ["HEALTH_METRICS", "METRICS", "Metrics", "MetricsServer", "scrape"]

log = logging.getLogger("otsentry.stream")

# name -> (type, help). Counters end in _total as Prometheus expects.
METRICS: dict[str, tuple[str, str]] = {
    "otsentry_packets_total": ("counter", "Packets read by the collector."),
    "otsentry_windows_published_total": ("counter", "Feature windows published."),
    "otsentry_windows_consumed_total": ("counter", "Feature windows read from the features topic."),
    "otsentry_windows_scored_total": ("counter", "Feature windows scored by the detector."),
    "otsentry_windows_late_total": ("counter", "Windows that arrived after their time had been scored."),
    "otsentry_windows_forced_total": ("counter", "Windows scored before the watermarks allowed (max hold or "
                                                 "buffer limit)."),
    "otsentry_windows_duplicate_total": ("counter", "Window copies dropped (a producer's retry)."),
    "otsentry_alerts_published_total": ("counter", "Alerts published and acknowledged."),
    "otsentry_malformed_records_total": ("counter", "Records that could not be read (skipped or dead-lettered)."),
    "otsentry_deadletter_total": ("counter", "Records copied to the dead-letter topic."),
    "otsentry_resent_records_total": ("counter", "Records published again after a failed delivery."),
    "otsentry_commits_total": ("counter", "Offset commits."),
    "otsentry_errors_total": ("counter", "Errors (broker unreachable, failed deliveries or commits)."),
    "otsentry_consumer_lag": ("gauge", "Records in the assigned partitions not read yet."),
    "otsentry_windows_buffered": ("gauge", "Windows held for event-time ordering."),
    "otsentry_in_flight_records": ("gauge", "Records published, not yet acknowledged."),
    "otsentry_assigned_partitions": ("gauge", "Partitions assigned to this worker."),
    "otsentry_broker_up": ("gauge", "1 when the broker connection is up."),
    "otsentry_up": ("gauge", "1 while the main loop runs."),
    # the alert indexer (otsentry index)
    "otsentry_alerts_consumed_total": ("counter", "Alerts read from the alerts topic."),
    "otsentry_alerts_correlated_total": ("counter", "Alerts folded into incidents and published with their id."),
    "otsentry_incidents_published_total": ("counter", "Incidents published when they closed."),
    "otsentry_alerts_late_total": ("counter", "Alerts that arrived after their window time had been folded."),
    "otsentry_alerts_indexed_total": ("counter", "Alerts Elasticsearch acknowledged as created."),
    "otsentry_alerts_duplicate_total": ("counter", "Alerts already indexed (409 on create: a re-delivery)."),
    "otsentry_alerts_rejected_total": ("counter", "Alerts Elasticsearch rejected (in the dead-letter file)."),
    "otsentry_elasticsearch_up": ("gauge", "1 when the last bulk request to Elasticsearch succeeded."),
    # what the sensor could not see (live collectors): see otsentry.collectors.live.LiveCapture.health
    "otsentry_capture_kernel_drops_total": ("counter", "Packets the kernel's capture ring had no room for."),
    "otsentry_capture_interface_drops_total": ("counter", "Packets the interface dropped while capturing."),
    "otsentry_undecoded_bytes_total": ("counter", "Payload bytes on Modbus ports that were not Modbus/TCP."),
    "otsentry_tcp_gaps_total": ("counter", "Stream holes never filled (framing resynchronised after each)."),
    "otsentry_tcp_out_of_order_total": ("counter", "TCP segments that arrived ahead of a hole and were held."),
    "otsentry_tcp_overlap_conflicts_total": ("counter", "TCP segments overlapping earlier bytes with other content."),
    "otsentry_tcp_held_peak_bytes": ("gauge", "High-water mark of one stream direction's out-of-order buffer."),
    "otsentry_ip_fragments_total": ("counter", "IP fragments seen."),
    "otsentry_ip_fragments_pending": ("gauge", "IP datagrams waiting for fragments."),
    "otsentry_ip_fragments_expired_total": ("counter", "IP datagrams that never completed."),
    "otsentry_ip_fragment_overlap_conflicts_total": ("counter", "IP fragments overlapping with other content."),
    "otsentry_ip_tiny_fragments_total": ("counter", "Non-last IP fragments too small for any real MTU."),
}

# LiveCapture.health() key -> metric name
HEALTH_METRICS = {
    "kernel_drops": "otsentry_capture_kernel_drops_total",
    "interface_drops": "otsentry_capture_interface_drops_total",
    "non_modbus_payload_bytes": "otsentry_undecoded_bytes_total",
    "tcp_gaps": "otsentry_tcp_gaps_total",
    "tcp_out_of_order": "otsentry_tcp_out_of_order_total",
    "tcp_overlap_conflicts": "otsentry_tcp_overlap_conflicts_total",
    "tcp_held_peak_bytes": "otsentry_tcp_held_peak_bytes",
    "ip_fragments": "otsentry_ip_fragments_total",
    "ip_fragments_pending": "otsentry_ip_fragments_pending",
    "ip_fragments_expired": "otsentry_ip_fragments_expired_total",
    "ip_fragment_overlap_conflicts": "otsentry_ip_fragment_overlap_conflicts_total",
    "ip_tiny_fragments": "otsentry_ip_tiny_fragments_total",
}


class Metrics:
    """Counters and gauges by name; gauges may be callables evaluated at scrape time."""

    def __init__(self, role: str) -> None:
        self.role = role
        self._values: dict[str, float] = {name: 0.0 for name in METRICS}
        self._callbacks: dict[str, Callable[[], float | None]] = {}
        self._lock = threading.Lock()
        self.heartbeat = time.monotonic()
        self.broker_up = False
        self.downstream_up: bool | None = None  # a daemon with a second service (the indexer's Elasticsearch)
        self.running = False

    def set_downstream_up(self, up: bool) -> None:
        """The indexer's Elasticsearch: in ``/healthz`` (an outage makes it unhealthy) and as a gauge."""
        self.downstream_up = up
        self.set("otsentry_elasticsearch_up", 1.0 if up else 0.0)

    def inc(self, name: str, by: float = 1.0) -> None:
        with self._lock:
            self._values[name] += by

    def set(self, name: str, value: float) -> None:
        with self._lock:
            self._values[name] = float(value)

    def set_health(self, health: dict[str, int]) -> None:
        """The sensor's counts so far (absolute values, as ``LiveCapture.health`` gives them)."""
        for key, name in HEALTH_METRICS.items():
            if key in health:
                self.set(name, health[key])

    def gauge_fn(self, name: str, fn: Callable[[], float | None]) -> None:
        self._callbacks[name] = fn

    def get(self, name: str) -> float:
        fn = self._callbacks.get(name)
        if fn is not None:
            try:
                value = fn()
            except Exception:  # noqa: BLE001 - a scrape must not take the daemon down
                value = None
            if value is not None:
                return float(value)
        with self._lock:
            return self._values[name]

    def beat(self) -> None:
        """The main loop is alive (called every iteration)."""
        self.heartbeat = time.monotonic()

    def render(self) -> str:
        lines = []
        for name, (kind, text) in METRICS.items():
            if name == "otsentry_broker_up":
                value = 1.0 if self.broker_up else 0.0
            elif name == "otsentry_up":
                value = 1.0 if self.running else 0.0
            else:
                value = self.get(name)
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f'{name}{{role="{self.role}"}} {value:g}']
        return "\n".join(lines) + "\n"

    def health(self, stale_s: float = 60.0) -> tuple[bool, dict[str, object]]:
        age = time.monotonic() - self.heartbeat
        ok = self.running and self.broker_up and self.downstream_up is not False and age < stale_s
        body: dict[str, object] = {"status": "ok" if ok else "unhealthy", "role": self.role, "running": self.running,
                                   "broker_up": self.broker_up, "loop_age_s": round(age, 3)}
        if self.downstream_up is not None:
            body["elasticsearch_up"] = self.downstream_up
        return ok, body


class MetricsServer:
    """Serves ``metrics`` on ``host:port`` in a daemon thread; ``port=0`` in the config means off (see cli)."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0) -> None:
        self.metrics = metrics
        handler = _handler(metrics)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="otsentry-metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self.httpd.server_address[0], self.port,
                 extra={"fields": {"event": "metrics_listening", "port": self.port}})
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()


def _handler(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?")[0] == "/metrics":
                self._send(200, metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
            elif self.path.split("?")[0] == "/healthz":
                ok, body = metrics.health()
                self._send(200 if ok else 503, json.dumps(body) + "\n", "application/json")
            else:
                self._send(404, "not found: try /metrics or /healthz\n", "text/plain")

        def _send(self, code: int, body: str, ctype: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:  # scrapes every 15 s would flood the log
            pass

    return Handler


def scrape(port: int, name: str, host: str = "127.0.0.1", timeout_s: float = 2.0) -> float | None:
    """The value of ``name`` on a daemon's ``/metrics`` (benchmarks and tests watch daemons this way); None if down."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout_s) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None
