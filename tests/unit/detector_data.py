"""Synthetic pair-window feature rows for detector tests and benchmarks: polled PLCs plus obvious attacks.

Not the plant simulator (``otsentry.synth``): this builds feature vectors directly, shaped like what ten-second
windows of periodic Modbus polling look like (steady counts, zero error counters, jittery latency, drifting register
values), so the detectors can be tested before and independently of the feature extractor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from otsentry.contracts.schema import PAIR_FEATURES, FEATURE_SCHEMA_VERSION
from otsentry.records import FeatureWindow

COLUMN = {name: i for i, name in enumerate(PAIR_FEATURES)}
WINDOW_S = 10.0


@dataclass(frozen=True)
class PairProfile:
    """How one client polls one server: requests per window, function codes, registers."""

    client_ip: str
    server_ip: str
    unit_id: int
    polls: int  # requests per window
    read_fc: int
    write_every: int  # one FC 16 write every N windows on average (0 = never writes)
    addr_min: int
    addr_span: int
    quantity: int
    latency_ms: float


PROFILES = (
    PairProfile("10.0.0.10", "10.0.1.1", 1, 10, 3, 0, 0, 20, 10, 4.0),
    PairProfile("10.0.0.10", "10.0.1.2", 1, 20, 3, 6, 100, 50, 25, 6.0),
    PairProfile("10.0.0.11", "10.0.1.3", 2, 5, 4, 0, 3000, 8, 4, 12.0),
    PairProfile("10.0.0.11", "10.0.1.4", 1, 10, 1, 30, 0, 16, 16, 3.0),
)


def normal_rows(n: int, rng: np.random.Generator, profiles: tuple[PairProfile, ...] = PROFILES) -> np.ndarray:
    """``n`` feature rows cycling over ``profiles`` (row i belongs to ``profiles[i % len(profiles)]``)."""
    X = np.zeros((n, len(PAIR_FEATURES)))
    for i in range(n):
        X[i] = _normal_row(profiles[i % len(profiles)], rng)
    return X


def _normal_row(p: PairProfile, rng: np.random.Generator) -> np.ndarray:
    row = np.zeros(len(PAIR_FEATURES))
    requests = p.polls + int(rng.integers(-1, 2))  # polling timers jitter across the window boundary
    writes = int(p.write_every > 0 and rng.random() < 1.0 / p.write_every)
    reads = requests - writes
    unanswered = int(rng.random() < 0.01)
    set_ = lambda name, value: row.__setitem__(COLUMN[name], value)  # noqa: E731 - local shorthand
    set_("requests", requests)
    set_("responses", requests - unanswered)
    set_("transactions", requests)
    set_(f"fc_{p.read_fc}", reads)
    set_("fc_16", writes)
    set_("fc_distinct", 1 + (writes > 0))
    set_("reads", reads)
    set_("writes", writes)
    set_("write_ratio", writes / requests)
    set_("addr_distinct", max(1, p.addr_span // p.quantity) + writes)
    set_("addr_min", p.addr_min)
    set_("addr_max", p.addr_min + p.addr_span - 1)
    set_("addr_span", p.addr_span)
    if writes:
        set_("write_addr_min", p.addr_min)
        set_("write_addr_max", p.addr_min + 1)
    set_("quantity_mean", p.quantity)
    set_("quantity_max", p.quantity)
    period = WINDOW_S / p.polls
    set_("interarrival_mean_s", period * (1 + rng.normal(0, 0.01)))
    set_("interarrival_std_s", abs(rng.normal(0.02 * period, 0.005 * period)))
    set_("interarrival_cv", row[COLUMN["interarrival_std_s"]] / row[COLUMN["interarrival_mean_s"]])
    latency = rng.lognormal(np.log(p.latency_ms), 0.2, size=requests)
    set_("latency_mean_ms", latency.mean())
    set_("latency_p95_ms", np.quantile(latency, 0.95))
    set_("latency_max_ms", latency.max())
    set_("unanswered", unanswered)
    set_("values_count", reads * p.quantity)
    base = 1000 + rng.normal(0, 30)
    set_("value_min", base - 50 - abs(rng.normal(0, 10)))
    set_("value_max", base + 50 + abs(rng.normal(0, 10)))
    set_("value_range", row[COLUMN["value_max"]] - row[COLUMN["value_min"]])
    set_("value_change_rate", float(np.clip(rng.normal(0.2, 0.05), 0, 1)))
    if writes:
        set_("write_value_min", 0)
        set_("write_value_max", 1)
    set_("tcp_connections", 1)
    return row


def flood_rows(n: int, rng: np.random.Generator, factor: float = 20.0) -> np.ndarray:
    """Query floods: the usual reads, ``factor`` times as many, with tiny inter-arrival times."""
    X = normal_rows(n, rng)
    for name in ("requests", "responses", "transactions", "fc_3", "fc_4", "fc_1", "reads", "values_count"):
        X[:, COLUMN[name]] *= factor
    X[:, COLUMN["interarrival_mean_s"]] /= factor
    X[:, COLUMN["interarrival_std_s"]] /= factor
    return X


def sweep_rows(n: int, rng: np.random.Generator, codes: int = 40) -> np.ndarray:
    """Function-code sweeps: one request per code, most answered with exception 1 (illegal function)."""
    X = normal_rows(n, rng)
    X[:, COLUMN["requests"]] += codes
    X[:, COLUMN["transactions"]] += codes
    X[:, COLUMN["responses"]] += codes
    X[:, COLUMN["fc_distinct"]] = codes
    X[:, COLUMN["fc_other"]] = codes - 12
    for code in (2, 5, 6, 8, 11, 15, 17, 20, 21, 22, 23, 43):
        X[:, COLUMN[f"fc_{code}"]] += 1
    X[:, COLUMN["exceptions"]] = codes - 4
    X[:, COLUMN["exc_1"]] = codes - 4
    return X


def windows_from_rows(X: np.ndarray, start: float = 1_700_000_000.0, kind: str = "pair") -> list[FeatureWindow]:
    """Wrap rows as pair windows, consecutive 10 s windows per profile (row i -> PROFILES[i % 4])."""
    out = []
    for i, row in enumerate(X):
        p = PROFILES[i % len(PROFILES)]
        t0 = start + WINDOW_S * (i // len(PROFILES))
        out.append(
            FeatureWindow(
                window_start=t0,
                window_end=t0 + WINDOW_S,
                kind=kind,
                client_ip=p.client_ip,
                server_ip=p.server_ip,
                unit_id=p.unit_id,
                values=tuple(float(v) for v in row),
                schema=FEATURE_SCHEMA_VERSION,
            )
        )
    return out
