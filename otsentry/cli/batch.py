"""``otsentry train``, ``otsentry run`` and ``otsentry evaluate``: the embedded pipeline (no broker, no database)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import click

from otsentry.cli.alerts import ES_HELP
from otsentry.cli.common import (JOBS, UserError, capture_options, collector_config, collector_options, parse_duration,
                                 resolve_jobs, ring_config)
from otsentry.cli.es_sink import close_es_sink, open_es_sink, write_es

__all__ = ["CAPTURES", "WINDOW", "evaluate_cmd", "load_bundle", "run_cmd", "train_cmd"]

CAPTURES = click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
WINDOW = click.option("--window", "window", default="10s", show_default=True, metavar="DURATION",
                      help="Length of the tumbling feature windows (e.g. 10s, 1m).")


def load_bundle(model: Path):
    from otsentry.detectors.bundle import ModelBundle

    try:
        return ModelBundle.load(model)
    except OSError as exc:
        raise UserError(f"{model}: cannot read model ({exc.strerror})") from None


def _progress(enabled: bool | None, desc: str):
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(unit=" windows", desc=desc, leave=False)
    return bar.update, bar.close


@click.command("train")
@CAPTURES
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the model bundle (e.g. plant.otsb).")
@WINDOW
@click.option("--learn-for", default=None, metavar="DURATION", help="Learn only from the first DURATION (e.g. 10m).")
@click.option("--false-alarm-rate", type=click.FloatRange(0, 0.5, min_open=True), default=1e-4, show_default=True,
              help="Target share of normal windows above the anomaly threshold.")
@collector_options
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: when it is a terminal).")
def train_cmd(captures, output, window, learn_for, false_alarm_rate, config_path, ports, pairing_timeout,
              progress) -> None:
    """Learn how the plant normally talks from known-good CAPTURES; save the baseline as a model bundle.

    The bundle holds the policy baseline (who talks to whom, function codes, address and value ranges, services)
    and one anomaly ensemble per window kind (ECOD, IForest, HBOS, COPOD, KNN), with thresholds calibrated on the
    learning windows. `otsentry run --model` loads it.
    """
    from otsentry.pipeline import train

    config = collector_config(config_path, ports, pairing_timeout)
    update, close = _progress(progress, "learning")
    t0 = time.monotonic()
    try:
        bundle = train(list(captures), parse_duration(window), config,
                       parse_duration(learn_for) if learn_for else None, false_alarm_rate, update)
    finally:
        close()
    path = bundle.save(output)
    t = bundle.training
    click.echo(f"learned from {t.windows} windows ({t.pairs} asset pairs and conversations, {t.duration_s / 60:.1f} min "
               f"of traffic) in {time.monotonic() - t0:.1f} s")
    for name, det in bundle.detectors.items():
        click.echo(f"  anomaly model {name}: threshold {det.threshold_:.4g}")
    click.echo(f"model written to {path}")


@click.command("run")
@click.argument("captures", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--iface", "-i", default=None,
              help="Instead of captures: score a live interface (mirror port) with --model until Ctrl-C/SIGTERM.")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Model bundle from `otsentry train`.")
@click.option("--learn-for", default=None, metavar="DURATION",
              help="Instead of --model: learn from the first DURATION of the captures, score the rest.")
@click.option("--alerts-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also append alerts as ECS JSON lines to this file (ids already in it are not written again).")
@click.option("--incidents-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also append incidents (alerts of one attack folded together) as ECS JSON lines to this file.")
@click.option("--incident-gap", default="15m", show_default=True, metavar="DURATION",
              help="An incident closes after this long without a new alert (window time); a later repeat opens a "
                   "new one.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table: one readable line per alert, then one per incident; json: one ECS document per line.")
@click.option("--es", "es_url", default=None, metavar="URL",
              help="Also index alerts and incidents into Elasticsearch. " + ES_HELP)
@click.option("--es-index", "es_prefix", default="otsentry-alerts", show_default=True,
              help="Alias and daily-index prefix for --es (indices PREFIX-YYYY.MM.DD).")
@click.option("--es-incidents-index", "es_incident_prefix", default="otsentry-incidents", show_default=True,
              help="Alias and daily-index prefix of the incidents for --es.")
@click.option("--filter", "bpf", default=None, metavar="BPF",
              help="With --iface: BPF capture filter. Default: TCP on the --ports and on the DNP3, IEC 104, S7 and "
                   "EtherNet/IP ports, UDP on DNP3's and EtherNet/IP's (so conversations on other ports are not "
                   "seen: '' captures everything, for new talkers and services).")
@click.option("--pcap-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="With --iface: also keep a rolling capture of what was seen here, for `otsentry pcap extract "
                   "--pcap-dir`.")
@click.option("--pcap-retention", default="2GB", show_default=True, metavar="SIZE",
              help="Most bytes the rolling capture keeps (oldest files deleted first).")
@click.option("--pcap-file-size", default=None, metavar="SIZE",
              help="Size of each rolling file (default: a quarter of the retention, at most 100MB).")
@WINDOW
@collector_options
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: when it is a terminal).")
@JOBS
@capture_options
def run_cmd(captures, iface, model, learn_for, alerts_out, incidents_out, incident_gap, fmt, es_url, es_prefix,
            es_incident_prefix, bpf, pcap_dir, pcap_retention, pcap_file_size, window, config_path, ports, pairing_timeout,
            progress, jobs, ring_mb, snaplen, fanout_group, fanout_workers, capture_user) -> None:
    """Replay CAPTURES through collector, features, detectors and alerts, and print the alerts.

    Give a model (--model) learned by `otsentry train`, or --learn-for to learn from the start of the captures.
    With --iface, a live interface is scored with --model instead (needs CAP_NET_RAW). Alerts of one attack (same
    actor or target, close in time) are folded into incidents with their ATT&CK for ICS tactics in order; every
    alert names its incident. A summary goes to stderr at the end.
    """
    from otsentry.alerts.ecs import to_ecs
    from otsentry.alerts.sinks import AlertTable, JsonlSink, incidents_sink
    from otsentry.pipeline import run, run_live

    if bool(captures) == bool(iface):
        raise UserError("give capture files or --iface IF (one of them)")
    if iface and model is None:
        raise UserError("live scoring needs a model: otsentry train good.pcap -o plant.otsb, then --model plant.otsb")
    if (model is None) == (learn_for is None):
        raise UserError("give either --model MODEL or --learn-for DURATION")
    config = collector_config(config_path, ports, pairing_timeout)
    recording = _recording(pcap_dir, pcap_retention, pcap_file_size) if pcap_dir is not None else None
    if recording is not None and not iface:
        raise UserError("--pcap-dir records a live interface (--iface): a capture file is its own record")
    bundle = load_bundle(model) if model is not None else None
    table = AlertTable(sys.stdout) if fmt == "table" else None
    sink = JsonlSink(alerts_out) if alerts_out is not None else None
    incident_file = incidents_sink(incidents_out) if incidents_out is not None else None
    es = open_es_sink(es_url, es_prefix, live=bool(iface)) if es_url else None
    es_incidents = open_es_sink(es_url, es_incident_prefix, live=bool(iface), incidents=True) if es_url else None
    gap = parse_duration(incident_gap)

    def on_alert(alert) -> None:
        if table is not None:
            table.write(alert)
        else:
            sys.stdout.write(json.dumps(to_ecs(alert), sort_keys=True) + "\n")
            sys.stdout.flush()
        if sink is not None:
            sink.write(alert)
        if es is not None:
            write_es(es, alert)

    def on_incident(incident) -> None:
        if table is not None:
            table.write_incident(incident)
        if incident_file is not None:
            incident_file.write(incident)
        if es_incidents is not None:
            write_es(es_incidents, incident)

    update, close = _progress(progress if not iface else False, "scoring")
    t0 = time.monotonic()
    try:
        if iface:
            click.echo(f"otsentry: scoring {iface} live with {model}; Ctrl-C to stop", err=True)
            ring = ring_config(ring_mb, snaplen, fanout_group, fanout_workers, capture_user)
            result = run_live(iface, bundle, config, bpf=bpf, on_alert=on_alert, ring=ring, jobs=resolve_jobs(jobs),
                              on_incident=on_incident, idle_gap_s=gap, recording=recording)
        else:
            result = run(list(captures), bundle, parse_duration(learn_for) if learn_for else None,
                         parse_duration(window), config, on_alert, progress=update,
                         jobs=resolve_jobs(jobs), on_incident=on_incident, idle_gap_s=gap)
    finally:
        close()
        for f in (sink, incident_file):
            if f is not None:
                f.close()
        es_summary = close_es_sink(es) + close_es_sink(es_incidents).replace(" indexed", " incidents indexed")
    by_sev = Counter(result.severities)
    sev = ", ".join(f"{by_sev[s]} {s}" for s in ("critical", "high", "medium", "low") if by_sev[s]) or "none"
    learned = f"learned from {result.learned_windows} windows, " if learn_for else ""
    click.echo(f"otsentry: {learned}scored {result.windows} windows in {time.monotonic() - t0:.1f} s: "
               f"{sum(by_sev.values())} alerts ({sev}) in {result.incident_count} incidents"
               + (f"; written to {alerts_out}" if alerts_out else "")
               + (f"; incidents to {incidents_out}" if incidents_out else "")
               + es_summary + (f"; {result.sensor}" if result.sensor else ""), err=True)


def _recording(directory: Path, retention: str, file_size: str | None) -> tuple[Path, int, int | None]:
    from otsentry.collectors.rolling import parse_size

    try:
        keep = parse_size(retention)
        each = parse_size(file_size) if file_size else None
    except ValueError as exc:
        raise UserError(f"--pcap-retention/--pcap-file-size: {exc}") from None
    if each is not None and each > keep:
        raise UserError(f"--pcap-file-size {file_size} is larger than --pcap-retention {retention}")
    return directory, keep, each


@click.command("evaluate")
@click.argument("capture", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--labels", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Ground truth: `frame;label` per frame (1 = attack) or `start;end` intervals, ';'-separated.")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Model bundle.")
@click.option("--learn-for", default=None, metavar="DURATION", help="Instead of --model: learn from the first DURATION.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
@WINDOW
@collector_options
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: when it is a terminal).")
@JOBS
def evaluate_cmd(capture, labels, model, learn_for, as_json, window, config_path, ports, pairing_timeout,
                 progress, jobs) -> None:
    """Score CAPTURE against ground-truth LABELS: window-level precision, recall, F1, ROC-AUC, time to detect and
    false alerts per hour of normal traffic.

    Every window is judged on its own: the policy's hourly re-alert suppression (which `run` applies so a SOC is
    not told the same thing every 10 s) is off here, so a missed window is a real miss and every false window
    counts as a false alert.
    """
    from otsentry.detectors.evaluation import evaluate, load_labels
    from otsentry.pipeline import attack_frames_from_capture, run

    if (model is None) == (learn_for is None):
        raise UserError("give either --model MODEL or --learn-for DURATION")
    truth = load_labels(labels)
    config = collector_config(config_path, ports, pairing_timeout)
    bundle = load_bundle(model) if model is not None else None
    update, close = _progress(progress, "scoring")
    try:
        result = run([capture], bundle, parse_duration(learn_for) if learn_for else None, parse_duration(window),
                     config, keep_scores=True, progress=update, suppress=False, jobs=resolve_jobs(jobs))
    finally:
        close()
    frames = attack_frames_from_capture(capture, truth.frames)
    ev = evaluate(result.detection.scored_windows, result.alerts, result.detection.scores, truth, frames)
    if as_json:
        click.echo(json.dumps({"capture": str(capture), "labels": str(labels), **ev.to_dict()}, sort_keys=True))
        return
    rows = [
        ("host-pair windows", ev.windows), ("attack windows", ev.attack_windows), ("alerted windows", ev.alerted_windows),
        ("precision", f"{ev.precision:.3f}"), ("recall", f"{ev.recall:.3f}"), ("F1", f"{ev.f1:.3f}"),
        ("ROC-AUC", "-" if ev.roc_auc is None else f"{ev.roc_auc:.3f}"),
        ("detected", "yes" if ev.detected else "no"),
        ("time to detect", "-" if ev.time_to_detect_s is None else f"{ev.time_to_detect_s:.1f} s"),
        ("false alerts", ev.false_alerts), ("normal traffic", f"{ev.normal_hours:.2f} h"),
        ("false alerts per hour", f"{ev.false_alerts_per_hour:.2f}"),
    ]
    for name, value in rows:
        click.echo(f"{name:22} {value}")
    if ev.alerts_by_rule:
        click.echo("alerts by rule: " + ", ".join(f"{k} {v}" for k, v in ev.alerts_by_rule.items()))
