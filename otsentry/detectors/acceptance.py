""""Learn this as normal": what an analyst accepted, as facts the policy baseline then leaves alone.

An accepted alert allows exactly what it reported, no more: the new talker, the pair, the (pair, function code),
the service, the diagnostics kind, and, for the rules that measure something, the measured value as the alert
showed it (an address or written-value range, an exception or unanswered count). A later finding is dropped only
when *every* fact it reports is accepted and its measurements lie within what was accepted: a write to the accepted
registers passes, one register further still alerts; the same exception count passes, a larger one alerts. A
finding that holds an accepted fact and a new one alerts whole (its text names both).

Facts are the tuples the rules name (``Finding.facts``), rebuilt here from the alert itself (rule, hosts, unit,
function codes and the evidence values it carries), so an ECS document read back from ``--alerts-out`` is enough.
Anomaly-model and sensor alerts cannot be accepted this way: a model learns from windows (retrain on traffic that
holds the change), and what the sensor could not see is never normal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Mapping

from otsentry.detectors.policy_findings import Finding
from otsentry.detectors.policy_profiles import OTHER_FUNCTION_CODE, count, measured_range
from otsentry.errors import InputError
from otsentry.records import Alert, FeatureWindow

__all__ = ["ACCEPTABLE_RULES", "Accepted", "NotAcceptable", "facts_of"]

Range = tuple[float, float]
Bound = None | float | Range  # identity only | a count ceiling | a range

# rule -> how a window's measurement is read for a fact's last element (None: the fact is an identity)
_COUNTS = {"policy.exception_burst": "exceptions", "policy.no_response": "unanswered",
           "policy.values_replayed": "replayed_reads"}
_RANGES = {("policy.address_out_of_range", "write"): ("write_addr_min", "write_addr_max", "writes"),
           ("policy.address_out_of_range", "all"): ("addr_min", "addr_max", "addr_distinct"),
           ("policy.write_value_out_of_range", None): ("write_value_min", "write_value_max", "writes")}
_DIAG_KINDS = {"diag_listen_only": "listen_only", "diag_restart": "restart", "diag_other": "other"}
ACCEPTABLE_RULES = frozenset({"policy.new_talker", "policy.new_pair", "policy.new_function_code", "policy.first_write",
                              "policy.address_out_of_range", "policy.write_value_out_of_range",
                              "policy.exception_burst", "policy.diagnostics", "policy.no_response",
                              "policy.values_frozen", "policy.values_replayed", "policy.new_service"})


class NotAcceptable(InputError, ValueError):
    """An alert whose rule cannot be accepted as normal (anomaly models, the sensor, evasion)."""


def _evidence(alert: Alert) -> dict[str, float]:
    return {e.name: float(e.value) for e in alert.evidence}


def facts_of(alert: Alert) -> list[tuple[tuple[Hashable, ...], Bound]]:
    """The facts an alert reported, each with the bound it showed (see the module docstring)."""
    r = alert.rule_id
    if r not in ACCEPTABLE_RULES:
        if r.startswith("anomaly."):
            why = "anomaly models learn from windows: retrain (otsentry train) on traffic that holds the change"
        elif r == "policy.process_value_out_of_range":
            why = "it widens the bundle's process variables (ModelBundle.with_accepted), not the policy's facts"
        else:
            why = "the sensor's evidence is never normal"
        raise NotAcceptable(f"alert {alert.id} ({r}) cannot be accepted as normal: {why}")
    pair = (alert.client_ip, alert.server_ip, alert.unit_id)
    ev = _evidence(alert)
    if r == "policy.new_talker":
        return [((r, ip), None) for ip in (alert.client_ip, alert.server_ip) if ip]
    if r == "policy.new_service":
        return [((r, alert.client_ip, alert.server_ip, alert.server_port, alert.transport), None)]
    if r in ("policy.new_pair", "policy.first_write", "policy.values_frozen"):
        return [((r, pair), None)]
    if r == "policy.new_function_code":
        codes = set(alert.function_codes) | ({OTHER_FUNCTION_CODE} if "fc_other" in ev else set())
        return [((r, pair, c), None) for c in sorted(codes)]
    if r == "policy.diagnostics":
        return [((r, pair, kind), None) for name, kind in _DIAG_KINDS.items() if name in ev]
    if r in _COUNTS:
        return [((r, pair), ev.get(_COUNTS[r], 0.0))]
    out: list[tuple[tuple[Hashable, ...], Bound]] = []
    for (rule_id, part), (low, high, _) in _RANGES.items():
        if rule_id == r and low in ev and high in ev:
            out.append((((r, pair, part) if part else (r, pair)), (ev[low], ev[high])))
    return out


def _measure(fact: tuple[Hashable, ...], w: FeatureWindow) -> float | Range | None:
    r = fact[0]
    if r in _COUNTS:
        return count(w, _COUNTS[r])
    part = fact[2] if r == "policy.address_out_of_range" else None
    names = _RANGES.get((r, part))
    return measured_range(w, *names) if names else None


@dataclass(frozen=True)
class Accepted:
    """Accepted facts and their bounds; ``covers`` says whether a finding on a window is entirely accepted."""

    identities: frozenset[tuple[Hashable, ...]] = frozenset()
    ceilings: Mapping[tuple[Hashable, ...], float] = field(default_factory=dict)
    ranges: Mapping[tuple[Hashable, ...], tuple[Range, ...]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.identities or self.ceilings or self.ranges)

    def with_alerts(self, alerts: Iterable[Alert]) -> "Accepted":
        """A new value that also accepts ``alerts`` (raises ``NotAcceptable`` naming the first one that cannot)."""
        identities, ceilings = set(self.identities), dict(self.ceilings)
        ranges = {k: list(v) for k, v in self.ranges.items()}
        for alert in alerts:
            for fact, bound in facts_of(alert):
                if bound is None:
                    identities.add(fact)
                elif isinstance(bound, tuple):
                    if bound not in ranges.setdefault(fact, []):
                        ranges[fact].append(bound)
                else:
                    ceilings[fact] = max(ceilings.get(fact, bound), bound)
        return Accepted(frozenset(identities), ceilings, {k: tuple(sorted(v)) for k, v in ranges.items()})

    def covers(self, finding: Finding, w: FeatureWindow) -> bool:
        if not finding.facts:
            return False
        for fact in finding.facts:
            if fact in self.identities:
                continue
            measured = _measure(fact, w)
            if fact in self.ceilings:
                if not (isinstance(measured, float) and measured <= self.ceilings[fact]):
                    return False
            elif fact in self.ranges:
                if not (isinstance(measured, tuple) and any(lo <= measured[0] and measured[1] <= hi
                                                            for lo, hi in self.ranges[fact])):
                    return False
            else:
                return False
        return True

    # -- persistence (inside the policy baseline's JSON state) ------------------------------------------------

    def to_state(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = [{"fact": _jsonable(f)} for f in self.identities]
        rows += [{"fact": _jsonable(f), "max": v} for f, v in self.ceilings.items()]
        rows += [{"fact": _jsonable(f), "ranges": [list(r) for r in rs]} for f, rs in self.ranges.items()]
        return sorted(rows, key=lambda row: repr(row["fact"]))

    @classmethod
    def from_state(cls, rows: Iterable[Mapping[str, Any]]) -> "Accepted":
        identities, ceilings, ranges = set(), {}, {}
        for row in rows:
            fact = _tupled(row["fact"])
            if "max" in row:
                ceilings[fact] = float(row["max"])
            elif "ranges" in row:
                ranges[fact] = tuple((float(lo), float(hi)) for lo, hi in row["ranges"])
            else:
                identities.add(fact)
        return cls(frozenset(identities), ceilings, ranges)


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, tuple) else value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value
