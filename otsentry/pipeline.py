"""The embedded pipeline: captures -> collector -> feature windows -> detectors -> alerts, in one process.

``train`` learns a ModelBundle from known-good captures; ``Detection`` scores windows as they stream in (keeping
the policy baseline's re-alert state across batches); ``run`` wires both, optionally learning on the first part
of the capture itself (``learn_for_s``), as a student replaying a scenario or an operator starting fresh would.
"""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass, field, replace
from itertools import groupby
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from otsentry.collectors.collector import CollectorConfig
from otsentry.contracts.windows import alert_order
from otsentry.correlation import DEFAULT_IDLE_GAP_S, Correlator
from otsentry.detectors.scoring import Detection
from otsentry.detectors.variables import VariableWatch
from otsentry.errors import InputError
from otsentry.features.closed import ClosedWindows
from otsentry.features.from_capture import closed_from_capture, window_batches_from_capture
from otsentry.features.values import ValueState
from otsentry.prefetch import prefetched
from otsentry.records import Alert, FeatureWindow, Incident

__all__ = ["DEFAULT_WINDOW_S", "PipelineError", "RunResult", "attack_frames_from_capture", "completed", "fit_bundle",
    "iter_closed", "iter_window_batches", "iter_windows", "live_closed", "run", "run_batches", "run_live", "train"]

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 10.0


class PipelineError(InputError, ValueError):
    """A problem the user can fix (too little learning data, incompatible bundle...); one line."""


def iter_window_batches(paths: Sequence[Path], window_s: float, config: CollectorConfig | None = None,
                        progress: Callable[[int], None] | None = None,
                        current: list[str] | None = None) -> Iterator[list[FeatureWindow]]:
    """Feature windows of several captures, one after the other, in the groups in which they close; ``current[0]``
    names the capture of the group last yielded (alerts name the capture their window came from)."""

    def groups() -> Iterator[list[FeatureWindow]]:
        for path in paths:
            for group in window_batches_from_capture(path, window_s, config):
                if current is not None:
                    current[0] = str(Path(path).resolve())
                yield group

    return _counted(groups(), progress)


def iter_closed(paths: Sequence[Path], window_s: float, config: CollectorConfig | None = None,
                defer_values: bool = False) -> Iterator[ClosedWindows]:
    """``iter_window_batches`` as columns: cheap to send to another process, ``.windows()`` there (after
    ``complete`` with one ``ValueState`` per capture when ``defer_values``: see ``completed``)."""
    for source, path in enumerate(paths):
        for closed in closed_from_capture(path, window_s, config, defer_values=defer_values):
            closed.source = source
            yield closed


def completed(closed: Iterator[ClosedWindows], paths: Sequence[Path] = (), current: list[str] | None = None,
              watch: VariableWatch | None = None,
              side: list[Alert] | None = None) -> Iterator[list[FeatureWindow]]:
    """The windows of ``iter_closed(..., defer_values=True)``, register values tracked here, a fresh state per
    capture as the windower of each capture has in one process (``current`` as in ``iter_window_batches``).
    ``watch`` sees each group's reads first (process variables); its alerts go to ``side``."""
    state, source = ValueState(), 0
    with closing(closed):
        for c in closed:
            if c.source != source:
                state, source = ValueState(), c.source
            if current is not None and paths:
                current[0] = str(Path(paths[c.source]).resolve())
            if watch and side is not None:
                side.extend(watch.observe(c.pairs))
            yield c.complete(state).windows()


def iter_windows(paths: Sequence[Path], window_s: float, config: CollectorConfig | None = None,
                 progress: Callable[[int], None] | None = None) -> Iterator[FeatureWindow]:
    for group in iter_window_batches(paths, window_s, config, progress):
        yield from group


def fit_bundle(windows: Sequence[FeatureWindow], window_s: float, captures: Iterable[str] = (),
               false_alarm_rate: float = 1e-4):
    """Learn the policy baseline and one anomaly ensemble per window kind that has enough windows."""
    from otsentry.detectors.anomaly import AnomalyWindowDetector
    from otsentry.detectors.bundle import ModelBundle, TrainingStats
    from otsentry.detectors.policy import PolicyBaseline

    windows = [w for w in windows if w.kind != "sensor"]  # sensor evidence is reported, never learned as normal
    if not windows:
        raise PipelineError("no traffic to learn from: the learning captures hold no Modbus or IP conversation")
    policy = PolicyBaseline().fit(windows)
    detectors = {}
    for kind in ("pair", "flow", "ot"):
        if kind == "ot" and not any(w.kind == "ot" for w in windows):
            continue  # no DNP3, IEC 104, S7 or EtherNet/IP traffic: nothing to warn about
        detector = AnomalyWindowDetector(kind=kind, false_alarm_rate=false_alarm_rate)
        try:
            detectors[kind] = detector.fit(windows)
        except ValueError as exc:  # too few windows of this kind: the policy baseline still covers them
            log.warning("no %s anomaly model, policy rules only for %s windows: %s", kind, kind, exc)
    return ModelBundle(detectors=detectors, policy=policy, window_s=window_s,
                       training=TrainingStats.from_windows(windows, captures))


def train(paths: Sequence[Path], window_s: float = DEFAULT_WINDOW_S, config: CollectorConfig | None = None,
          learn_for_s: float | None = None, false_alarm_rate: float = 1e-4,
          progress: Callable[[int], None] | None = None):
    """Learn from known-good captures (all of them, or their first ``learn_for_s`` seconds), the asset inventory
    with the baseline."""
    from otsentry.assets import inventory_from_captures
    from otsentry.assets.variables import VariableBook

    windows = list(iter_windows(paths, window_s, config, progress))
    end = None
    if learn_for_s is not None and windows:
        end = min(w.window_start for w in windows) + learn_for_s
        windows = [w for w in windows if w.window_end <= end]
    bundle = fit_bundle(windows, window_s, [str(p) for p in paths], false_alarm_rate)
    # the inventory and the process variables are learned with the baseline, over the same traffic (a second pass:
    # about 0.5 s per million packets plus the variables' per-value bookkeeping, small beside the models' fit)
    book = VariableBook()
    assets = inventory_from_captures(paths, config, until_ts=end, variables=book)
    return replace(bundle, assets=tuple(assets), variables=tuple(book.variables()))


@dataclass
class RunResult:
    alerts: list[Alert]
    windows: int
    learned_windows: int
    bundle: object
    detection: Detection
    sensor: str = ""  # live capture: drops and parser health, for the last line
    incidents: list[Incident] = field(default_factory=list)
    severities: dict[str, int] = field(default_factory=dict)  # alerts by severity (live runs keep no list)
    incident_count: int = 0


class _Emitter:
    """Alerts through correlation to the caller: each alert gets its incident id before ``on_alert`` sees it;
    incidents go to ``on_incident`` when they close (idle for the gap in window time) and at the end."""

    def __init__(self, on_alert: Callable[[Alert], None] | None, on_incident: Callable[[Incident], None] | None,
                 idle_gap_s: float, current: list[str] | None = None, keep: bool = True) -> None:
        self.on_alert, self.on_incident, self.current = on_alert, on_incident, current
        self.correlator = Correlator(idle_gap_s)
        self.keep = keep  # a months-long live run hands alerts on and keeps counts only
        self.alerts: list[Alert] = []
        self.incidents: list[Incident] = []
        self.severities: dict[str, int] = {}
        self.incident_count = 0

    def alerts_of(self, batch: list[Alert], windows: Sequence[FeatureWindow] = ()) -> None:
        """A batch in ``alert_order``, correlated one window time at a time (as ``correlate`` does)."""
        for _, same_window in groupby(batch, key=lambda a: a.window_start):
            group = list(same_window)
            self._closed(self.correlator.close_idle(group[0].window_start))
            for a in self.correlator.add_window(group):
                if self.current is not None and self.current[0] and not a.capture:
                    a = replace(a, capture=self.current[0])
                self.severities[a.severity] = self.severities.get(a.severity, 0) + 1
                if self.keep:
                    self.alerts.append(a)
                if self.on_alert is not None:
                    self.on_alert(a)
        if windows:
            self._closed(self.correlator.close_idle(max(w.window_end for w in windows)))

    def finish(self) -> None:
        self._closed(self.correlator.flush())

    def _closed(self, incidents: list[Incident]) -> None:
        for i in incidents:
            self.incident_count += 1
            if self.keep:
                self.incidents.append(i)
            if self.on_incident is not None:
                self.on_incident(i)


def run(paths: Sequence[Path], bundle=None, learn_for_s: float | None = None, window_s: float = DEFAULT_WINDOW_S,
        config: CollectorConfig | None = None, on_alert: Callable[[Alert], None] | None = None,
        keep_scores: bool = False, progress: Callable[[int], None] | None = None,
        suppress: bool = True, jobs: int = 1, on_incident: Callable[[Incident], None] | None = None,
        idle_gap_s: float = DEFAULT_IDLE_GAP_S) -> RunResult:
    """Replay captures through the whole pipeline.

    With ``bundle``, every window is scored. With ``learn_for_s``, the windows of the first ``learn_for_s`` seconds
    are learned from (they are not scored) and the rest is scored as it streams. ``jobs=2`` decodes captures into
    windows in a second process while this one scores them (same windows, same alerts; see ``otsentry.prefetch``).
    """
    if (bundle is None) == (learn_for_s is None):
        raise PipelineError("give either a model (--model) or a learning period (--learn-for), not both or neither")
    if bundle is not None and abs(bundle.window_s - window_s) > 1e-9:
        window_s = bundle.window_s  # the model decides the window length it was trained on
    current = [str(Path(paths[0]).resolve()) if paths else ""]
    watch = _watch(bundle, window_s)
    side: list[Alert] = []
    # register values tracked here in both modes (jobs give exactly what in-place tracking gives), so the process
    # variables are watched where the reads are
    closed_groups = prefetched(iter_closed, list(paths), window_s, config, True) if jobs >= 2 else \
        iter_closed(list(paths), window_s, config, defer_values=True)
    batches = _counted(completed(closed_groups, list(paths), current, watch, side), progress)
    with closing(batches):  # an error while scoring stops the producing process now, not at garbage collection
        return run_batches(batches, bundle, learn_for_s, window_s, on_alert, keep_scores, suppress,
                           [str(p) for p in paths], on_incident, idle_gap_s, current, side)


def _counted(groups: Iterator[list[FeatureWindow]],
             progress: Callable[[int], None] | None) -> Iterator[list[FeatureWindow]]:
    """The groups, each counted in ``progress`` once it was used (with --jobs 2: where they arrive, as the
    producing process has no progress bar)."""
    with closing(groups):  # closing this closes the producer (and stops its process) at once
        for group in groups:
            yield group
            if progress is not None:
                progress(len(group))


def run_batches(batches: Iterable[list[FeatureWindow]], bundle=None, learn_for_s: float | None = None,
                window_s: float = DEFAULT_WINDOW_S, on_alert: Callable[[Alert], None] | None = None,
                keep_scores: bool = False, suppress: bool = True, captures: Iterable[str] = (),
                on_incident: Callable[[Incident], None] | None = None,
                idle_gap_s: float = DEFAULT_IDLE_GAP_S, current: list[str] | None = None,
                side: list[Alert] | None = None) -> RunResult:
    """``run`` over window groups from any source, so a caller can wrap the stream (a paced replay, a live feed)
    and still get the same learning, scoring and alert order. ``captures`` names the sources in the bundle;
    ``current[0]``, when given, the capture each alert's window came from; ``side`` alerts raised beside the
    windows (process variables), scored with the group they came with."""
    if (bundle is None) == (learn_for_s is None):
        raise PipelineError("give either a model (--model) or a learning period (--learn-for), not both or neither")
    captures = list(captures)
    learning: list[FeatureWindow] = []
    learn_end: float | None = None
    detection: Detection | None = Detection(bundle, keep_scores, suppress) if bundle is not None else None
    out = _Emitter(on_alert, on_incident, idle_gap_s, current)

    for group in batches:
        if detection is None:
            if learn_end is None:
                learn_end = group[0].window_start + learn_for_s
            learning.extend(w for w in group if w.window_end <= learn_end)
            group = [w for w in group if w.window_end > learn_end]
            if not group:
                continue
            bundle = fit_bundle(learning, window_s, captures)
            detection = Detection(bundle, keep_scores, suppress)
        out.alerts_of(_with_side(detection.feed(group), side), group)
    if detection is None:
        raise PipelineError(
            f"the captures hold no traffic after the {learn_for_s:g} s learning period: nothing left to score"
        )
    out.alerts_of(_with_side(detection.flush(), side))
    out.finish()
    return RunResult(out.alerts, detection.windows, len(learning), bundle, detection, incidents=out.incidents,
                     severities=out.severities, incident_count=out.incident_count)


def _watch(bundle, window_s: float):
    """The process-variable watch of a bundle that learned variables (None otherwise: older bundles, --learn-for)."""
    variables = getattr(bundle, "variables", ()) if bundle is not None else ()
    if not variables:
        return None
    return VariableWatch(variables, window_s)


def _with_side(alerts: list[Alert], side: list[Alert] | None) -> list[Alert]:
    if not side:
        return alerts
    merged = sorted(alerts + side, key=alert_order)
    side.clear()
    return merged


def run_live(iface: str, bundle, config: CollectorConfig | None = None, *, bpf: str | None = None,
             count: int | None = None, duration_s: float | None = None,
             on_alert: Callable[[Alert], None] | None = None, ring=None, jobs: int = 1,
             on_incident: Callable[[Incident], None] | None = None,
             idle_gap_s: float = DEFAULT_IDLE_GAP_S, recording: tuple | None = None) -> RunResult:
    """Score a live interface with a bundle, until Ctrl-C/SIGTERM (or ``count``/``duration_s``).

    Windows close as traffic moves the capture clock, and on the wall clock between batches, so an alert comes at
    most one window plus the pairing timeout after the traffic that caused it; at the end the open windows are
    flushed and scored. ``jobs=2`` captures, decodes and windows in a forked child while this process scores (a
    busy mirror port needs both cores: scoring in the capturing process lets the ring overflow); SIGINT/SIGTERM
    then stop the child's capture, whose last windows are still scored. ``recording`` = (directory, retention
    bytes, file bytes) keeps a rolling capture of what was seen (``collectors.rolling``), for ``pcap extract``.
    """
    config = config or CollectorConfig()
    window_s = bundle.window_s
    detection = Detection(bundle)
    # a run until SIGTERM may last months: it hands alerts on and keeps counts; a bounded run keeps them all
    out = _Emitter(on_alert, on_incident, idle_gap_s, keep=count is not None or duration_s is not None)
    watch, side = _watch(bundle, window_s), []
    health = ""
    state = ValueState()

    def score(item: ClosedWindows) -> None:
        if watch:
            side.extend(watch.observe(item.pairs))
        windows = item.complete(state).windows()
        out.alerts_of(_with_side(detection.feed(windows), side), windows)

    if jobs >= 2:
        with _ForwardingSignals() as started:
            for item in prefetched(live_closed, iface, window_s, config, bpf, count, duration_s, ring, True,
                                   recording, started=started):
                if isinstance(item, str):
                    health = item
                else:
                    score(item)
    else:
        for item in live_closed(iface, window_s, config, bpf, count, duration_s, ring, True, recording):
            if isinstance(item, str):
                health = item
            else:
                score(item)
    out.alerts_of(detection.flush())
    out.finish()
    return RunResult(out.alerts, detection.windows, 0, bundle, detection, health, out.incidents, out.severities,
                     out.incident_count)


def live_closed(iface: str, window_s: float, config: CollectorConfig, bpf: str | None, count: int | None,
                duration_s: float | None, ring, defer_values: bool,
                recording: tuple | None = None) -> Iterator[ClosedWindows | str]:
    """Capture ``iface`` into closed windows as they close; the last item is the capture's health line."""
    import time as _time

    from otsentry.collectors.live import LiveCapture
    from otsentry.collectors.rolling import RollingPcap
    from otsentry.features.windows import Windower

    windower = Windower(window_s, config.pairing_timeout_s, server_ports=config.server_ports,
                        defer_values=defer_values)
    recorder = RollingPcap(*recording) if recording else None
    capture = LiveCapture(iface, config, bpf=bpf, count=count, duration_s=duration_s, observers=(windower.observer,),
                          ring=ring, recorder=recorder.write if recorder is not None else None)
    try:
        with capture:
            for batch in capture:
                for closed in (windower.push_closed(batch, capture.conns), windower.tick_closed(_time.time())):
                    if len(closed):
                        yield closed
    finally:
        if recorder is not None:
            recorder.close()
    last = windower.flush_closed()
    if len(last):
        yield last
    health = capture.health_line()
    if recorder is not None:
        health += f"; {recorder.written:,} packets recorded in {recorder.directory}"
        if recorder.failed:
            health += f", then recording stopped: {recorder.failed} ({recorder.lost:,} packets not recorded)"
    yield health


class _ForwardingSignals:
    """While the capture runs in a child: SIGINT/SIGTERM to this process become SIGTERM to the child (which stops
    capturing and sends its last windows), instead of interrupting the scoring of what is still coming."""

    def __enter__(self) -> Callable[[int], None]:
        import os
        import signal
        import threading

        self._previous: dict[int, object] = {}
        self._pid: int | None = None
        if threading.current_thread() is not threading.main_thread():
            return self._started

        def forward(signum: int, _frame: object) -> None:
            if self._pid is not None:
                try:
                    os.kill(self._pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, forward)
        return self._started

    def _started(self, pid: int) -> None:
        self._pid = pid

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def attack_frames_from_capture(path: Path, frames: frozenset[int]):
    """Time and hosts of each labelled frame (what window-level truth needs), read straight from the capture."""
    from otsentry.collectors.capture import open_capture
    from otsentry.collectors.packets import addr_to_str, decode_packets
    from otsentry.detectors.evaluation import AttackFrame

    if not frames:
        return []
    wanted = np.fromiter(sorted(frames), dtype=np.int64)
    out = []
    with open_capture(path) as reader:
        for chunk in reader.chunks():
            p = decode_packets(chunk)
            rows = np.flatnonzero(np.isin(p.frame, wanted) & (p.ipver != 0))
            for i in rows.tolist():
                hosts = frozenset((addr_to_str(int(p.src_hi[i]), int(p.src_lo[i])),
                                   addr_to_str(int(p.dst_hi[i]), int(p.dst_lo[i]))))
                out.append(AttackFrame(int(p.ts_ns[i]) / 1e9, hosts))
    return out
