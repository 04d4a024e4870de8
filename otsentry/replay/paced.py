"""``otsentry replay run``: a scenario through the pipeline, in scaled real time or as fast as possible.

Pacing is a generator over the feature windows: each time slot is let through when its window would close on a
clock running ``speed`` times faster than the capture's, so an alert about a window ending at capture time ``t``
is printed ``(t - start) / speed`` seconds after the replay started, as it would be by a sensor on the wire. The
pipeline itself (learning, scoring, alert order) is the one `otsentry run` uses; only its input is slowed down.
Sleeping is plain ``time.sleep`` in the caller's thread, so Ctrl-C stops a replay at once.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator, TypeVar

from otsentry.collectors.collector import CollectorConfig
from otsentry.pipeline import DEFAULT_WINDOW_S, RunResult, iter_window_batches, run_batches
from otsentry.records import Alert, FeatureWindow, Incident
from otsentry.replay.catalog import Generated

__all__ = ["by_slot", "paced", "parse_speed", "replay"]

T = TypeVar("T")


def parse_speed(text: str) -> float:
    """``10x``, ``2.5x`` or ``10`` -> a factor > 0 (ValueError otherwise)."""
    value = text.strip().lower().removesuffix("x").strip()
    try:
        speed = float(value)
    except ValueError:
        raise ValueError(f"{text!r}: expected a speed-up factor such as 10x") from None
    if not speed > 0 or speed == float("inf"):
        raise ValueError(f"{text!r}: the speed-up factor must be a positive number")
    return speed


def paced(items: Iterable[T], time_of: Callable[[T], float], speed: float, origin: float | None = None,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Iterator[T]:
    """Yield each item no earlier than ``(time_of(item) - origin) / speed`` seconds after the first is requested.

    ``origin`` is the capture time the replay starts at (default: the first item's time). An item that is already
    late (the consumer was slower than the pace) is yielded at once: pacing never tries to catch up by skipping.
    """
    started: float | None = None
    for item in items:
        t = time_of(item)
        if started is None:
            started = clock()
            origin = t if origin is None else origin
        delay = started + (t - origin) / speed - clock()
        if delay > 0:
            sleep(delay)
        yield item


def by_slot(batches: Iterable[list[FeatureWindow]]) -> Iterator[list[FeatureWindow]]:
    """Split window groups by closing time: the collector hands over minutes of windows at once when reading a
    file, but a paced replay must release each 10-second slot on its own."""
    for group in batches:
        slot: list[FeatureWindow] = []
        for w in sorted(group, key=lambda w: w.window_end):
            if slot and w.window_end != slot[0].window_end:
                yield slot
                slot = []
            slot.append(w)
        if slot:
            yield slot


def _announce_detection(batches: Iterable[list[FeatureWindow]], learn_end_ts: float,
                        callback: Callable[[], None] | None) -> Iterator[list[FeatureWindow]]:
    """Call ``callback`` once, just before the first window after learning goes to the pipeline."""
    done = callback is None
    for group in batches:
        if not done and any(w.window_end > learn_end_ts for w in group):
            done = True
            callback()
        yield group


def _tee(batches: Iterable[list[FeatureWindow]],
         callback: Callable[[list[FeatureWindow]], None]) -> Iterator[list[FeatureWindow]]:
    for group in batches:
        callback(group)
        yield group


def replay(gen: Generated, speed: float | None, on_alert: Callable[[Alert], None],
           on_detecting: Callable[[], None] | None = None, window_s: float = DEFAULT_WINDOW_S,
           config: CollectorConfig | None = None,
           on_windows: Callable[[list[FeatureWindow]], None] | None = None,
           on_incident: Callable[[Incident], None] | None = None) -> RunResult:
    """Learn on the scenario's normal part, then score the rest, calling ``on_alert`` as alerts come.

    ``speed`` None replays as fast as possible; otherwise windows (and so alerts) are released in scaled real time
    from the scenario's start. ``on_windows`` sees each group of windows (at that pace) just before the pipeline
    takes it: ``--kafka`` publishes them.
    """
    batches: Iterable[list[FeatureWindow]] = iter_window_batches([gen.pcap], window_s, config)
    if speed is not None:
        batches = paced(by_slot(batches), lambda g: g[0].window_end, speed, origin=gen.start_ts)
    if on_windows is not None:
        batches = _tee(batches, on_windows)
    batches = _announce_detection(batches, gen.learn_end_ts, on_detecting)
    return run_batches(batches, learn_for_s=gen.learn_s, window_s=window_s, on_alert=on_alert,
                       captures=[str(gen.pcap)], on_incident=on_incident)
