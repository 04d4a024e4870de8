"""The policy baseline of the other OT protocols (DNP3, IEC 104, S7comm, S7comm-plus, EtherNet/IP): what each
(client, server, station, protocol) did while learning, from ``ot`` windows, and the rules that judge a window.

Rules, worded in each protocol's own names (``collectors.ics.effects`` says which operations have which effect):

* an operation with an effect (restart, stop/start, reporting disabled, program download/upload/delete, time set,
  configuration) alerts in every window that holds it, learned or not: it takes the process somewhere;
* the first operation of a class the pair never used (a first control, write or program operation...), and an
  operation it never sent within a class it used (DIRECT_OPERATE from a master that always selected first);
* a new master: a client never seen speaking this protocol to this server and station;
* an error burst (far more error answers than learned) and a device that stopped answering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from otsentry.collectors.ics.effects import operations_with
from otsentry.collectors.ics.ports import PROTOCOL_LABELS
from otsentry.contracts.events import OPERATION_CLASSES, OPERATION_EFFECTS
from otsentry.contracts.schema import OT_FEATURES, OT_SCHEMA_VERSION
from otsentry.detectors.policy_findings import Finding, evidence
from otsentry.features.otwin import ot_protocol
from otsentry.records import FeatureWindow

__all__ = ["OtKey", "OtProfile", "check_ot_window", "ot_findings", "ot_profiles"]

OtKey = tuple[str, str, int, int, str]  # client, server, station, server port, "transport/protocol"
_INDEX = {name: i for i, name in enumerate(OT_FEATURES)}
STATION_LABELS = {"dnp3": "outstation", "iec104": "common address"}
# effect -> (rule, severity, variant)
EFFECT_RULES: Mapping[str, tuple[str, str, str]] = {
    "restart": ("policy.ot_restart", "high", ""),
    "stop": ("policy.ot_mode_change", "critical", ""),
    "start": ("policy.ot_mode_change", "high", ""),
    "reporting_disabled": ("policy.ot_reporting_disabled", "high", ""),
    "time_set": ("policy.ot_time_set", "medium", ""),
    "program_download": ("policy.ot_program", "critical", ""),
    "program_upload": ("policy.ot_program", "high", "upload"),
    "program_delete": ("policy.ot_program", "critical", "delete"),
    "configuration": ("policy.ot_program", "high", "configuration"),
}
CLASS_SEVERITY = {"control": "high", "write": "high", "program": "high", "file": "medium", "time": "medium",
                  "diagnostic": "medium", "read": "low", "other": "low"}
ERROR_BURST_MIN, UNANSWERED_MIN, UNANSWERED_RATIO = 5.0, 3.0, 0.3


def value(w: FeatureWindow, name: str) -> float:
    return float(w.values[_INDEX[name]])


def check_ot_window(w: FeatureWindow) -> None:
    if w.schema != OT_SCHEMA_VERSION or len(w.values) != len(OT_FEATURES):
        raise ValueError(f"ot FeatureWindow of schema {w.schema!r} with {len(w.values)} values: this version reads "
                         f"{OT_SCHEMA_VERSION!r} with {len(OT_FEATURES)}")


@dataclass
class OtProfile:
    """What one (client, server, station, protocol) did while learning."""

    windows: int = 0
    classes: set[str] = field(default_factory=set)
    effects: dict[str, int] = field(default_factory=dict)
    max_errors: float = 0.0
    max_unanswered: float = 0.0
    operations: set[str] = field(default_factory=set)  # "class/name" it sent
    names_learned: bool = True  # False for a bundle made before operations were named: judged by class only

    def learn(self, w: FeatureWindow) -> None:
        self.windows += 1
        self.classes.update(c for c in OPERATION_CLASSES if value(w, c) > 0)
        self.operations.update(w.operations)
        for e in OPERATION_EFFECTS:
            if value(w, e) > 0:
                self.effects[e] = self.effects.get(e, 0) + int(value(w, e))
        self.max_errors = max(self.max_errors, value(w, "errors"))
        self.max_unanswered = max(self.max_unanswered, value(w, "unanswered"))

    def to_state(self) -> dict[str, Any]:
        state = {"windows": self.windows, "classes": sorted(self.classes),
                 "effects": dict(sorted(self.effects.items())), "max_errors": self.max_errors,
                 "max_unanswered": self.max_unanswered}
        return {**state, "operations": sorted(self.operations)} if self.names_learned else state

    @classmethod
    def from_state(cls, s: Mapping[str, Any]) -> "OtProfile":
        return cls(int(s["windows"]), set(s["classes"]), {k: int(v) for k, v in s["effects"].items()},
                   float(s["max_errors"]), float(s["max_unanswered"]), set(s.get("operations", ())),
                   "operations" in s)


def ot_key(w: FeatureWindow) -> OtKey:
    return (w.client_ip, w.server_ip, w.unit_id, w.port, w.transport)


def ot_profiles(windows: list[FeatureWindow]) -> dict[OtKey, OtProfile]:
    out: dict[OtKey, OtProfile] = {}
    for w in windows:
        check_ot_window(w)
        out.setdefault(ot_key(w), OtProfile()).learn(w)
    return dict(sorted(out.items()))


def _where(w: FeatureWindow) -> tuple[str, str]:
    """("DNP3", "outstation 4 at 10.0.0.3") for the wording."""
    protocol = ot_protocol(w.transport)[1]
    label = PROTOCOL_LABELS.get(protocol, protocol)
    station = STATION_LABELS.get(protocol, "station")
    target = f"{station} {w.unit_id} at {w.server_ip}" if w.unit_id >= 0 else w.server_ip
    return label, target


def effect_findings(profiles: Mapping[OtKey, OtProfile], w: FeatureWindow) -> list[Finding]:
    label, target = _where(w)
    protocol = ot_protocol(w.transport)[1]
    learned = profiles.get(ot_key(w))
    out = []
    for effect, (rule_id, severity, variant) in EFFECT_RULES.items():
        n = value(w, effect)
        if n <= 0:
            continue
        names = "/".join(operations_with(protocol, effect)) or effect
        seen = learned.effects.get(effect, 0) if learned else 0
        history = f" (seen {seen} time{'s' if seen > 1 else ''} while learning)" if seen else \
            " (never seen while learning)"
        text = f"{w.client_ip} sent {int(n)} {label} {effect.replace('_', ' ')} operation(s) ({names}) to " \
               f"{target}{history}"
        # the variant names the effect when the rule has no variant for it: stop and start are two alerts
        out.append(Finding(rule_id, severity, text, ((rule_id, *ot_key(w), effect),),
                           (evidence(effect, n, (0.0, float(seen))),), variant=variant or effect))
    return out


def new_class(profiles: Mapping[OtKey, OtProfile], w: FeatureWindow) -> Finding | None:
    learned = profiles.get(ot_key(w))
    if learned is None:
        return None  # a new master: its own rule
    new = [c for c in OPERATION_CLASSES if value(w, c) > 0 and c not in learned.classes and c != "other"]
    # operations never sent, in a class the pair did use (a class new to it is said as a class)
    names = sorted(op for op in w.operations if op not in learned.operations
                   and op.partition("/")[0] in learned.classes and not op.startswith("other/")) \
        if learned.names_learned else []
    if not new and not names:
        return None
    label, target = _where(w)
    worst = min(new + [op.partition("/")[0] for op in names],
                key=lambda c: ["critical", "high", "medium", "low"].index(CLASS_SEVERITY[c]))
    said = []
    if new:
        said.append(f"{label} {', '.join(new)} operations to {target}, which it never did while learning "
                    f"(it only sent {', '.join(sorted(learned.classes)) or 'nothing'})")
    if names:
        sent = sorted({op.partition('/')[2] for op in learned.operations}) or ["nothing by name"]
        listed = ", ".join(f"{op.partition('/')[2]} ({op.partition('/')[0]})" for op in names)
        said.append(f"{label} {listed} to {target}, operation(s) it never sent while learning "
                    f"(it sent {', '.join(sent)})" if not new else
                    f"and {listed}, never sent while learning either")
    text = f"{w.client_ip} sent " + "; ".join(said)
    variant = worst if worst in ("read", "diagnostic") else ""
    return Finding("policy.ot_new_operation", CLASS_SEVERITY[worst], text,
                   tuple(("policy.ot_new_operation", *ot_key(w), c) for c in new + names),
                   tuple(evidence(c, value(w, c)) for c in new) +
                   tuple(evidence(op, 1.0) for op in names), variant=variant)


def new_master(masters: Mapping[tuple, frozenset[str]], profiles: Mapping[OtKey, OtProfile],
               w: FeatureWindow) -> Finding | None:
    if ot_key(w) in profiles:
        return None
    label, target = _where(w)
    known = masters.get((w.server_ip, w.unit_id, w.port, w.transport), frozenset())
    acting = [c for c in ("control", "write", "program", "file", "time") if value(w, c) > 0]
    context = f"; its known masters are {', '.join(sorted(known))}" if known else \
        "; nobody spoke it to this device while learning"
    what = f" and sent {', '.join(acting)} operations" if acting else ""
    text = f"{w.client_ip} is a new {label} master of {target}{what}{context}"
    return Finding("policy.ot_new_master", "high" if acting else "medium", text,
                   (("policy.ot_new_master", *ot_key(w)),), (evidence("operations", value(w, "operations")),),
                   variant="" if acting else "reads")


def bursts(profiles: Mapping[OtKey, OtProfile], w: FeatureWindow) -> list[Finding]:
    learned = profiles.get(ot_key(w)) or OtProfile()
    label, target = _where(w)
    out = []
    errors, unanswered, ops = value(w, "errors"), value(w, "unanswered"), value(w, "operations")
    limit = max(3 * learned.max_errors, learned.max_errors + ERROR_BURST_MIN)
    if errors > limit:
        out.append(Finding("policy.ot_error_burst", "medium",
                           f"{target} answered {int(errors)} of {int(ops)} {label} operations from {w.client_ip} "
                           f"with errors (at most {int(learned.max_errors)} per window while learning)",
                           (("policy.ot_error_burst", *ot_key(w)),),
                           (evidence("errors", errors, (0.0, learned.max_errors)),), score=errors, threshold=limit))
    if unanswered > learned.max_unanswered + UNANSWERED_MIN and unanswered >= UNANSWERED_RATIO * ops:
        out.append(Finding("policy.ot_no_response", "high",
                           f"{target} left {int(unanswered)} of {int(ops)} {label} requests from {w.client_ip} "
                           f"unanswered (at most {int(learned.max_unanswered)} per window while learning)",
                           (("policy.ot_no_response", *ot_key(w)),),
                           (evidence("unanswered", unanswered, (0.0, learned.max_unanswered)),)))
    return out


def ot_findings(profiles: Mapping[OtKey, OtProfile], masters: Mapping[tuple, frozenset[str]],
                w: FeatureWindow) -> list[Finding]:
    """Every OT rule's verdict on one ``ot`` window."""
    check_ot_window(w)
    found = effect_findings(profiles, w)
    for f in (new_master(masters, profiles, w), new_class(profiles, w)):
        if f is not None:
            found.append(f)
    return found + bursts(profiles, w)

