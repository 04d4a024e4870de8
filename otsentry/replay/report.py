"""``replay score --report DIR``: one HTML page for students, all scenarios scored, a timeline picture each.

The page is static (no script, no network): ``DIR/index.html`` plus one ``DIR/NAME.png`` per scenario, referenced
by relative paths, so the folder can be zipped, mailed or opened from a USB stick.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from otsentry import __version__
from otsentry.replay.plot import timeline_png
from otsentry.replay.score import ScenarioScore, overall

__all__ = ["MAX_ALERTS_LISTED", "write_report"]

MAX_ALERTS_LISTED = 25

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1150px;
       color: #1d1d1d; line-height: 1.45; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2.2em; border-bottom: 2px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.overall td { font-weight: bold; background: #fafafa; }
.yes { color: #17692c; font-weight: bold; } .no { color: #b00020; font-weight: bold; } .na { color: #777; }
.explain { background: #eef5ff; border-left: 4px solid #3d7fd6; padding: 0.6em 1em; }
.meta { color: #555; font-size: 0.9em; } img.timeline { width: 100%; max-width: 1100px; border: 1px solid #ddd; }
code { background: #f4f4f4; padding: 0 0.25em; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def _detected(value: bool | None) -> str:
    if value is None:
        return '<span class="na">n/a (no attack)</span>'
    return '<span class="yes">yes</span>' if value else '<span class="no">no</span>'


def _mmss(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


def _summary_table(scores: Sequence[ScenarioScore]) -> str:
    rows = []
    for s in scores:
        d, ev = s.to_dict(), s.evaluation
        rows.append(
            f'<tr><td><a href="#{_e(s.info.name)}">{_e(s.info.name)}</a></td><td>{_e(s.info.technique)}</td>'
            f"<td>{_detected(s.detected)}</td><td class=num>{_num(ev.time_to_detect_s, '{:.0f} s')}</td>"
            f"<td class=num>{ev.attack_windows}</td><td class=num>{_num(d['precision'], '{:.2f}')}</td>"
            f"<td class=num>{_num(d['recall'], '{:.2f}')}</td><td class=num>{_num(d['f1'], '{:.2f}')}</td>"
            f"<td class=num>{ev.false_alerts}</td><td class=num>{ev.false_alerts_per_hour:.2f}</td></tr>")
    o = overall(scores)
    rows.append(
        f'<tr class="overall"><td>overall</td><td>{len(scores)} scenario{"s" if len(scores) != 1 else ""}</td>'
        f"<td>{o.attacks_detected} of {o.attacks} attacks</td><td></td>"
        f"<td class=num>{o.true_positives + o.false_negatives}</td><td class=num>{o.precision:.2f}</td>"
        f"<td class=num>{o.recall:.2f}</td><td class=num>{o.f1:.2f}</td><td class=num>{o.false_alerts}</td>"
        f"<td class=num>{o.false_alerts_per_hour:.2f}</td></tr>")
    head = ("<tr><th>scenario</th><th>ATT&amp;CK for ICS</th><th>detected</th><th>time to detect</th>"
            "<th>attack units</th><th>precision</th><th>recall</th><th>F1</th><th>false alerts</th>"
            "<th>false alerts / h</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _metrics(s: ScenarioScore) -> str:
    ev, d = s.evaluation, s.to_dict()
    per_attack = "".join(
        f"<li>attack {i}: {_mmss(a.start_ts - s.generated.start_ts)} to {_mmss(a.end_ts - s.generated.start_ts)} "
        f"(mm:ss) &mdash; {_detected(a.detected)}"
        + (f", alert {a.time_to_detect_s:.0f} s after it began" if a.time_to_detect_s is not None else "") + "</li>"
        for i, a in enumerate(s.attacks, start=1))
    rows = [
        ("detected", _detected(s.detected)), ("time to detect", _e(_num(ev.time_to_detect_s, "{:.1f} s"))),
        ("precision", _e(_num(d["precision"]))), ("recall", _e(_num(d["recall"]))), ("F1", _e(_num(d["f1"]))),
        ("ROC-AUC", _e(_num(ev.roc_auc))),
        ("units scored (10-s window x host pair)", ev.windows), ("attack units", ev.attack_windows),
        ("alerted units", ev.alerted_windows), ("false alerts", ev.false_alerts),
        ("normal traffic scored", f"{ev.normal_hours * 60:.1f} min"),
        ("false alerts per hour", f"{ev.false_alerts_per_hour:.2f}"),
        ("learned from", f"{s.learned_windows} windows ({s.generated.learn_s / 60:.0f} min)"),
    ]
    table = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class=metrics>{table}</table>" + (f"<ul>{per_attack}</ul>" if per_attack else "")


def _alerts(s: ScenarioScore) -> str:
    if not s.alerts:
        return "<p>No alert was raised after the learning period.</p>"
    t0 = s.generated.start_ts
    rows = "".join(
        f"<tr><td class=num>{_mmss(a.window_end - t0)}</td><td>{_e(a.severity)}</td><td><code>{_e(a.rule_id)}</code>"
        f"</td><td>{_e(a.client_ip)} &rarr; {_e(a.server_ip)}</td><td>{_e(a.explanation)}</td></tr>"
        for a in s.alerts[:MAX_ALERTS_LISTED])
    more = len(s.alerts) - MAX_ALERTS_LISTED
    tail = f"<p class=meta>... and {more} more (every window counts here: re-alert suppression is off).</p>" \
        if more > 0 else ""
    return ("<table><tr><th>raised at (mm:ss)</th><th>severity</th><th>rule</th><th>hosts</th><th>why</th></tr>"
            f"{rows}</table>{tail}")


def _timeline(s: ScenarioScore) -> str:
    """What happened when in this capture (from its ground truth, so --quick timings are right too)."""
    gen, t0 = s.generated, s.generated.start_ts
    events = [(0.0, "capture starts: normal traffic, learned from"), (gen.learn_s, "learning ends, scoring starts")]
    for start, end in gen.attack_intervals:
        events += [(start - t0, "attack starts"), (end - t0, "attack ends")]
    if gen.truth.get("last_ts"):
        events.append((float(gen.truth["last_ts"]) - t0, "capture ends"))
    items = "".join(f"<li><b>{_mmss(at)}</b> {_e(what)}</li>" for at, what in sorted(events))
    return f"<p class=meta>Timeline of this capture (mm:ss from its start):</p><ul>{items}</ul>"


def _section(s: ScenarioScore, image: str) -> str:
    info = s.info
    tech = (info.technique + (f" (tactic: {info.tactic})" if info.tactic else "")) if info.technique_id \
        else "none (no attack)"
    return f"""
<section id="{_e(info.name)}">
<h2>{_e(info.name)} <span class=meta>&mdash; {_e(info.summary)}</span></h2>
<p class=meta>MITRE ATT&amp;CK for ICS: {_e(tech)}</p>
<p>{_e(info.description)}</p>
<div class="explain"><b>For students:</b> {_e(info.explanation)}</div>
<p><img class="timeline" src="{_e(image)}" alt="timeline of {_e(info.name)}: anomaly score over time, threshold,
attack shaded, alerts marked"></p>
{_metrics(s)}
<h3>Alerts</h3>
{_alerts(s)}
{_timeline(s)}
<p class=meta>capture <code>{_e(s.generated.pcap)}</code>, seed {s.generated.seed}, scored in {s.seconds:.1f} s</p>
</section>"""


def write_report(scores: Sequence[ScenarioScore], out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` and one timeline PNG per scenario; return the page's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for s in scores:
        image = timeline_png(s, out_dir / f"{s.info.name}.png")
        sections.append(_section(s, image.name))
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>otsentry replay score</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>otsentry replay score</h1>
<p class=meta>otsentry {_e(__version__)}, {now}. Each scenario: learn on its normal first part, score the rest.
Units are 10-second windows x pair of hosts; re-alert suppression is off, so every window counts.</p>
{_summary_table(scores)}
<p><b>How to read the pictures.</b> The blue line is the highest anomaly score of each 10-second slot divided by
its threshold: above the red dashed line (1) the anomaly models alert. Grey is the learning period (learned from,
not scored); orange is when the attack really happened (ground truth). The strip under each plot shows when each
rule raised an alert; policy rules (<code>policy.*</code>) fire on facts never seen while learning, whatever the
score. Precision: share of alerted units that were the attack. Recall: share of attack units alerted.</p>
{''.join(sections)}
</body></html>
"""
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
