"""``otsentry replay``: the student-facing scenario library (list, show, generate, run, score)."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from otsentry.cli.alerts import ES_HELP
from otsentry.cli.common import JOBS, UserError, resolve_jobs
from otsentry.cli.streamopts import stream_options, stream_params, stream_settings
from otsentry.replay.catalog import DEFAULT_OUT, QUICK_LEARN_S, QUICK_TOTAL_S
from otsentry.stream.runtime.settings import DaemonConfig

__all__ = ["CACHE", "QUICK", "REPLAY_SKIP", "SEED", "generate_cmd", "list_cmd", "replay", "run_cmd", "score_cmd",
    "show_cmd"]

SEED = click.option("--seed", type=int, default=None,
                    help="Simulator seed (same seed, same capture) [default: the seed in the scenario's spec].")
QUICK = click.option("--quick", is_flag=True,
                     help=f"A short version: {QUICK_LEARN_S / 60:.0f} min to learn, about {QUICK_TOTAL_S / 60:.0f} min in "
                          "all (less learning, so expect more false alerts).")
CACHE = click.option("--cache", "cache", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT,
                     show_default=True, help="Where generated captures are kept and reused.")


def _mmss(seconds: float) -> str:
    return f"{int(max(seconds, 0) // 60):02d}:{int(max(seconds, 0) % 60):02d}"


@click.group("replay")
def replay() -> None:
    """Scenario captures with ground truth: replay them, watch the alerts, score the detectors.

    \b
      otsentry replay list                       the scenarios and their ATT&CK for ICS techniques
      otsentry replay show fc_sweep              what happens, when, and what to look for
      otsentry replay run fc_sweep --speed 20x   alerts as a live sensor would print them
      otsentry replay score --all --report out   every scenario scored, with timeline pictures
    """


@replay.command("list")
def list_cmd() -> None:
    """The scenarios: name, ATT&CK for ICS technique, what happens (`replay show NAME` tells more)."""
    from otsentry.replay.catalog import load_catalog

    catalog = load_catalog()
    wn = max(len("name"), *(len(n) for n in catalog))
    wt = max(len("technique"), *(len(i.technique) for i in catalog.values()))
    room = shutil.get_terminal_size().columns - wn - wt - 4 if sys.stdout.isatty() else 0
    click.echo(f"{'name':{wn}}  {'technique':{wt}}  description")
    for name, info in catalog.items():
        text = info.summary
        if room >= 30 and len(text) > room:  # one line per scenario on a terminal; `show NAME` has the rest
            text = text[: room - 3].rstrip() + "..."
        click.echo(f"{name:{wn}}  {info.technique:{wt}}  {text}")


@replay.command("show")
@click.argument("name")
def show_cmd(name: str) -> None:
    """What scenario NAME does, which technique it illustrates, and its timeline."""
    from otsentry.replay.catalog import get_scenario

    info = get_scenario(name)
    click.echo(f"{info.name}: {info.summary}")
    click.echo(f"  technique: {info.technique}" + (f" (tactic: {info.tactic})" if info.tactic else ""))
    click.echo(click.wrap_text(info.description, width=100, initial_indent="  what happens: ",
                               subsequent_indent="    "))
    click.echo(click.wrap_text(info.explanation, width=100, initial_indent="  what to look for: ",
                               subsequent_indent="    "))
    click.echo(f"  timeline (mm:ss from the start, seed {info.seed}):")
    for ev in info.timeline:
        click.echo(f"    {_mmss(ev.at_s)}  {ev.what}")
    click.echo(f"  try: otsentry replay run {info.name} --speed 20x   |   otsentry replay score {info.name} "
               f"--report out/{info.name}")


@replay.command("generate")
@click.argument("name")
@SEED
@QUICK
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT,
              show_default=True, help="Folder for the capture and its ground truth.")
def generate_cmd(name: str, seed: int | None, quick: bool, out: Path) -> None:
    """Write scenario NAME's capture (pcap) and ground truth (frame labels, attack intervals); print the paths."""
    from otsentry.replay.catalog import generate, get_scenario

    gen = generate(get_scenario(name), out, seed, quick)
    click.echo(f"capture:          {gen.pcap}")
    click.echo(f"frame labels:     {gen.labels}")
    click.echo(f"attack intervals: {gen.intervals}")
    click.echo(f"learning part:    first {gen.learn_s / 60:g} min (otsentry run {gen.pcap} --learn-for "
               f"{gen.learn_s:g}s)")


# ``replay run --kafka``: the broker, its topics and client settings as `collect pcap --kafka` takes them; not the
# consumer-group keys (a replay only publishes), nor the window length and daemon keys (a replay is not a daemon).
REPLAY_SKIP = frozenset({"kafka.group", "kafka.group_instance_id", "kafka.session_timeout_s",
                         "kafka.auto_offset_reset", "kafka.deadletter_topic", "stream.window_s", "stream.source",
                         "stream.max_poll_records", "stream.max_buffered_windows", "stream.max_hold_s",
                         "stream.max_in_flight", "kafka.correlated_topic", "kafka.incidents_topic"}) | \
    {f"daemon.{f.name}" for f in fields(DaemonConfig)}


@replay.command("run")
@click.argument("name")
@click.option("--speed", default=None, metavar="FACTOR",
              help="Replay FACTOR times faster than real time, e.g. 10x or 1x [default: 10x].")
@click.option("--as-fast-as-possible", "fast", is_flag=True, help="No pacing: alerts come as fast as they are found.")
@click.option("--alerts-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also append the alerts as ECS JSON lines to this file (ids already in it are skipped).")
@click.option("--es", "es_url", default=None, metavar="URL",
              help="Also index the alerts into Elasticsearch. " + ES_HELP)
@click.option("--es-index", "es_prefix", default="otsentry-alerts", show_default=True,
              help="Alias and daily-index prefix for --es (indices PREFIX-YYYY.MM.DD).")
@stream_options(skip=REPLAY_SKIP)
@SEED
@QUICK
@CACHE
@click.pass_context
def run_cmd(ctx: click.Context, name: str, speed: str | None, fast: bool, alerts_out: Path | None,
            es_url: str | None, es_prefix: str, seed: int | None, quick: bool, cache: Path, **kwargs: Any) -> None:
    """Replay scenario NAME through the pipeline as a live sensor would see it, printing alerts as they come.

    The detectors learn on the scenario's first minutes (its normal part), then score the rest. With --speed,
    an alert about a window ending t seconds into the capture appears t/FACTOR seconds after the start. Ctrl-C
    stops the replay.

    With --kafka BOOTSTRAP, the scenario's FeatureWindows are also published to the features topic as
    `otsentry collect pcap --kafka` publishes them (watermarks included, at the replay's pace), for `otsentry
    detect --kafka` workers, and the alerts of this run to the alerts topic (--alerts-topic '' for windows only).
    With --es URL, the alerts are indexed into Elasticsearch as `otsentry run --es` does.
    """
    from otsentry.alerts.sinks import AlertTable, JsonlSink
    from otsentry.cli.es_sink import close_es_sink, open_es_sink, write_es
    from otsentry.errors import OtsentryError
    from otsentry.replay.catalog import generate, get_scenario
    from otsentry.replay.paced import parse_speed, replay as replay_scenario

    if fast and speed is not None:
        raise UserError("give either --speed or --as-fast-as-possible, not both")
    try:
        factor = None if fast else parse_speed(speed or "10x")
    except ValueError as exc:
        raise UserError(f"--speed {exc}") from None
    params = stream_params(kwargs)
    settings = stream_settings(None, params) if params.get("kafka__bootstrap") else None
    info = get_scenario(name)
    gen = generate(info, cache, seed, quick)
    es = open_es_sink(es_url, es_prefix, live=factor is not None) if es_url else None
    try:
        kafka = _kafka_output(settings, info.name) if settings is not None else None
    except (UserError, OtsentryError):  # a refused login too: what was indexed so far is flushed first
        close_es_sink(es)
        raise
    table = AlertTable(sys.stdout)
    sink = JsonlSink(alerts_out) if alerts_out is not None else None
    total = gen.end_ts - gen.start_ts
    pace = "as fast as possible" if factor is None else \
        f"at {factor:g}x: {total / 60:.0f} min of traffic in {_mmss(total / factor)} (mm:ss)"
    click.echo(f"replaying {info.name} (seed {gen.seed}) {pace}; learning on the first {gen.learn_s / 60:g} min"
               + ("; Ctrl-C stops" if factor is not None else ""), err=True)
    for start, end in gen.attack_intervals:
        click.echo(f"  (ground truth: attack from {_mmss(start - gen.start_ts)} to {_mmss(end - gen.start_ts)} "
                   "of capture time)", err=True)

    def on_alert(alert) -> None:
        table.write(alert)
        if sink is not None:
            sink.write(alert)
        if kafka is not None:
            kafka.alert(alert)
        if es is not None:
            write_es(es, alert)

    def on_detecting() -> None:
        click.echo(f"learning period over ({_mmss(gen.learn_s)} of capture time): detecting", err=True)

    finished = False
    try:
        result = replay_scenario(gen, factor, on_alert, on_detecting,
                                 on_windows=kafka.windows if kafka is not None else None,
                                 on_incident=table.write_incident)
        finished = True
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: {table.count} alerts so far", err=True)
        ctx.exit(130)
    finally:
        if sink is not None:
            sink.close()
        kafka_summary = _close_kafka(kafka, finished)
        es_summary = close_es_sink(es)
    click.echo(f"done: scored {result.windows} windows after learning from {result.learned_windows}: "
               f"{len(result.alerts)} alerts in {len(result.incidents)} incidents"
               + (f"; written to {alerts_out}" if alerts_out else "")
               + kafka_summary + es_summary
               + f". Next: otsentry replay score {info.name} --report out/{info.name}", err=True)


def _kafka_output(settings: Any, scenario: str):
    """The ``--kafka`` publisher; a broker that does not answer is a one-line error (a replay does not wait)."""
    from otsentry.replay.kafka_out import KafkaReplayOutput
    from otsentry.stream.transport import TransportError

    try:
        return KafkaReplayOutput(settings.kafka, scenario, stop_timeout_s=settings.daemon.stop_timeout_s)
    except TransportError as exc:
        raise UserError(f"--kafka {settings.kafka.bootstrap}: {exc}") from None


def _close_kafka(kafka: Any, finished: bool) -> str:
    """Final watermark and acknowledgements; the summary's part about what the broker holds."""
    if kafka is None:
        return ""
    ok = kafka.close(finished)
    k, st = kafka.kafka, kafka.stats
    text = f"; {st.windows} windows published to {k.features_topic}" + (
        f", {st.alerts} alerts to {k.alerts_topic}" if k.alerts_topic else "")
    if not ok:
        text += f" (some not acknowledged within {kafka.stop_timeout_s:g} s: check the broker)"
    return text


def _table(scores) -> None:
    from otsentry.replay.score import overall

    head = ("scenario", "technique", "detected", "time to detect", "attack units", "precision", "recall", "F1",
            "false alerts", "false alerts/h")
    rows = []
    for s in scores:
        d, ev = s.to_dict(), s.evaluation
        f = (lambda v: "-" if v is None else f"{v:.2f}")
        rows.append((s.info.name, s.info.technique_id or "-",
                     "n/a" if s.detected is None else ("yes" if s.detected else "NO"),
                     "-" if ev.time_to_detect_s is None else f"{ev.time_to_detect_s:.0f} s", str(ev.attack_windows),
                     f(d["precision"]), f(d["recall"]), f(d["f1"]), str(ev.false_alerts),
                     f"{ev.false_alerts_per_hour:.2f}"))
    o = overall(scores)
    rows.append(("overall", f"{len(scores)} scenarios", f"{o.attacks_detected}/{o.attacks}", "",
                 str(o.true_positives + o.false_negatives), f"{o.precision:.2f}", f"{o.recall:.2f}", f"{o.f1:.2f}",
                 str(o.false_alerts), f"{o.false_alerts_per_hour:.2f}"))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    for i, r in enumerate((head, *rows)):
        if i == len(rows):  # separator before the overall line
            click.echo("  ".join("-" * w for w in widths))
        click.echo("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))


@replay.command("score")
@click.argument("names", nargs=-1, metavar="NAME...")
@click.option("--all", "all_", is_flag=True, help="Score every scenario of the library.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: {scenarios: [{name, detected, time_to_detect_s, precision, recall, f1, "
                   "false_alerts_per_hour, ...}], overall: {precision, recall, f1}}.")
@click.option("--report", "report", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write an HTML report with a timeline picture per scenario into this folder (index.html).")
@SEED
@QUICK
@CACHE
@click.option("--progress/--no-progress", default=None, help="Progress on stderr (default: when it is a terminal).")
@JOBS
def score_cmd(names: tuple[str, ...], all_: bool, as_json: bool, report: Path | None, seed: int | None,
              quick: bool, cache: Path, progress: bool | None, jobs: int | None) -> None:
    """Score the detectors on scenario NAME (or several, or --all): learn on its normal part, score the rest.

    Reports per scenario whether the attack was detected and how fast, precision, recall and F1 over units of
    (10-second window, host pair) with re-alert suppression off, and false alerts per hour of normal traffic.
    A scenario without an attack has no precision or recall of its own (shown as -, null in JSON); its false
    alerts count in the overall figures, which add up every scenario's units.
    """
    from otsentry.replay.catalog import generate, get_scenario, load_catalog
    from otsentry.replay.score import score_scenario, to_json

    if all_ == bool(names):
        raise UserError("give scenario names or --all (see `otsentry replay list`)")
    catalog = load_catalog()
    infos = list(catalog.values()) if all_ else [get_scenario(n, catalog) for n in dict.fromkeys(names)]
    show = sys.stderr.isatty() if progress is None else progress
    scores = []
    jobs = resolve_jobs(jobs)
    from tqdm import tqdm

    with tqdm(infos, desc="scoring", unit=" scenario", file=sys.stderr, disable=not show, leave=False) as bar:
        for info in bar:
            bar.set_postfix_str(info.name)
            scores.append(score_scenario(info, generate(info, cache, seed, quick), jobs=jobs))
    if report is not None:
        from otsentry.replay.report import write_report

        index = write_report(scores, report)
        click.echo(f"report written to {index}", err=True)
    if as_json:
        click.echo(json.dumps(to_json(scores), sort_keys=False))
    else:
        _table(scores)
