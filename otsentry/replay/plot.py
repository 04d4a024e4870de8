"""The timeline picture of a scored scenario: the first thing a student looks at.

x is minutes since the capture started; y is the highest anomaly score of each 10-second time slot divided by its
threshold (so the threshold is 1 whatever the model), on a log scale because attacks score hundreds of times
higher than normal traffic. The learning period is greyed out (it is learned from, not scored), ground-truth attack
intervals are shaded, and under each plot a strip shows when each rule raised an alert. Attacks last seconds in a
capture of tens of minutes, so a second row zooms in on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from otsentry.replay.score import ScenarioScore

__all__ = ["FLOOR", "ZOOM_MARGIN_S", "timeline_png"]

FLOOR = 1e-2  # scores below this (or windows without one) are drawn at the floor of the log axis
ZOOM_MARGIN_S = 120.0
_COLORS = ("#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#1f77b4", "#ff7f0e", "#2ca02c")


def _panel(fig, spec, s: ScenarioScore, rules: Sequence[str], span: tuple[float, float], title: str) -> None:
    """One score axes and its alert strip below it, over ``span`` (capture seconds, absolute)."""
    import numpy as np
    from matplotlib.gridspec import GridSpecFromSubplotSpec

    gen = s.generated
    t0 = gen.start_ts
    inner = GridSpecFromSubplotSpec(2, 1, subplot_spec=spec, height_ratios=[3.2, 0.45 + 0.28 * max(len(rules), 1)],
                                    hspace=0.0)
    ax = fig.add_subplot(inner[0])
    strip = fig.add_subplot(inner[1], sharex=ax)
    lo, hi = (span[0] - t0) / 60, (span[1] - t0) / 60

    for a in (ax, strip):
        a.axvspan(0.0, (gen.learn_end_ts - t0) / 60, color="#bbbbbb", alpha=0.35, lw=0,
                  label="learning period (not scored)" if a is ax else None)
        for i, (start, end) in enumerate(gen.attack_intervals):
            # at least ~0.4 % of the axis wide, so a 1-second attack is still visible on a 40-minute plot
            pad = max(0.0, (hi - lo) * 0.002 - (end - start) / 120)
            a.axvspan((start - t0) / 60 - pad, (end - t0) / 60 + pad, color="#ff9900", alpha=0.35, lw=0,
                      label="attack (ground truth)" if a is ax and i == 0 else None)

    if s.slot_scores:
        x = np.array([(end - t0) / 60 for end, _ in s.slot_scores])
        y = np.maximum(np.array([v for _, v in s.slot_scores]), FLOOR)
        ax.plot(x, y, drawstyle="steps-pre", color="#1f4e79", lw=1.1, label="highest anomaly score / threshold")
    ax.axhline(1.0, color="#c00000", ls="--", lw=1.2, label="alert threshold (= 1)")
    ax.set_yscale("log")
    top = max((v for _, v in s.slot_scores), default=1.0)
    ax.set_ylim(FLOOR * 0.8, max(10.0, top * 2))  # the threshold line always inside, with room above it
    ax.set_ylabel("score / threshold")
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.tick_params(labelbottom=False)

    labels = []
    for i, rule in enumerate(rules):
        times = [(a.window_end - t0) / 60 for a in s.alerts if a.rule_id == rule]
        strip.plot(times, [i] * len(times), ls="none", marker="v", ms=8, color=_COLORS[i % len(_COLORS)],
                   mec="black", mew=0.4)
        labels.append(f"{rule} ({len(times)})")
    ax.plot([], [], ls="none", marker="v", ms=8, color="#888888", mec="black", mew=0.4,
            label="alert raised (below: one row per rule, with its count)")
    strip.set_yticks(range(len(rules)), labels=labels, fontsize=8)
    strip.set_ylim(-0.7, max(len(rules), 1) - 0.3)
    strip.invert_yaxis()
    if not rules:
        strip.text(0.5, 0.5, "no alerts", transform=strip.transAxes, ha="center", va="center", color="#555555")
        strip.set_yticks([])
    strip.set_xlabel("minutes since the capture started (alerts drawn when their 10-s window closes)")
    strip.grid(True, axis="x", alpha=0.3)
    ax.set_xlim(lo, hi)


def timeline_png(s: ScenarioScore, path: Path, dpi: int = 100) -> Path:
    """Draw ``s`` into a PNG at ``path`` (matplotlib's Agg backend: no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    gen = s.generated
    truth = gen.truth
    first = gen.start_ts
    last = float(truth.get("last_ts") or (s.slot_scores[-1][0] if s.slot_scores else gen.learn_end_ts))
    rules = sorted({a.rule_id for a in s.alerts})
    zoom = None
    if gen.attack_intervals:
        zoom = (max(first, min(a for a, _ in gen.attack_intervals) - ZOOM_MARGIN_S),
                min(last, max(b for _, b in gen.attack_intervals) + ZOOM_MARGIN_S))
    strip_h = 0.45 + 0.28 * max(len(rules), 1)
    height = (3.2 + strip_h) * (2 if zoom else 1) + 0.8
    fig = Figure(figsize=(11, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)  # Agg on this figure only: no global backend switch, no display needed
    fig.get_layout_engine().set(h_pad=0.03, hspace=0.01)  # each strip hugs its plot; titles separate the panels
    grid = fig.add_gridspec(2 if zoom else 1, 1)
    _panel(fig, grid[0], s, rules, (first, last), f"{s.info.name}: the whole capture")
    if zoom:
        _panel(fig, grid[1], s, rules, zoom, "zoom on the attack (ground truth shaded)")
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncol=3, fontsize=8.5, frameon=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
