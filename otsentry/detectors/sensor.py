"""Alerts from sensor windows: what the sensor could not see, or saw being forged. No learning, no suppression.

Why not the policy baseline: these are facts about the sensor and the wire, not deviations from a learned normal,
and every one of them matters for an analyst judging the other alerts of that window. So each sensor window with
a non-zero value yields its alerts, every window, with deterministic ids like every other alert:

* ``policy.evasion`` (high): TCP segments or IP fragments overlapping earlier bytes with *different* content, or
  tiny IP fragments: what the PLC decoded may differ from what otsentry decoded (Ptacek & Newsham; Suricata's
  ``STREAM_REASSEMBLY_OVERLAP_DIFFERENT_DATA``);
* ``sensor.packet_loss`` (medium): packets dropped by the capture ring or the interface (an address-less window),
  or a hole in one stream the capture never filled: alerts of that window may be missing;
* ``sensor.decode_stalled`` (medium): a stream on a Modbus port keeps sending bytes that are not Modbus/TCP, with
  no ADU decoded: the decoder is blind to it (another protocol on the port, or a desynchronised stream).
"""

from __future__ import annotations

from typing import Iterable

from otsentry.contracts.schema import SENSOR_FEATURES
from otsentry.detectors.rules import RISK_SCORES, rule
from otsentry.records import Alert, FeatureEvidence, FeatureWindow, alert_id

__all__ = ["SEVERITIES", "sensor_alerts"]

# Severity per rule (names, descriptions and ATT&CK mapping are declared in otsentry.detectors.rules).
SEVERITIES = {"policy.evasion": "high", "sensor.packet_loss": "medium", "sensor.decode_stalled": "medium"}
_I = {name: i for i, name in enumerate(SENSOR_FEATURES)}


def _n(x: float) -> str:
    return f"{int(x):,}"


def _endpoint(w: FeatureWindow) -> str:
    return f"{w.server_ip}:{w.port}" if w.port else w.server_ip


def _evasion(w: FeatureWindow) -> str | None:
    v = w.values
    parts = []
    if v[_I["overlap_conflicts"]]:
        parts.append(f"{_n(v[_I['overlap_conflicts']])} TCP segment(s) overlapping earlier bytes with different content")
    if v[_I["fragment_overlap_conflicts"]]:
        parts.append(f"{_n(v[_I['fragment_overlap_conflicts']])} IP fragment(s) overlapping earlier ones with "
                     "different content")
    if v[_I["tiny_fragments"]]:
        parts.append(f"{_n(v[_I['tiny_fragments']])} tiny IP fragment(s)")
    if not parts:
        return None
    return (f"{w.client_ip} -> {_endpoint(w)}: " + "; ".join(parts) + ": a target may reassemble other bytes than "
            "the sensor decoded (evasion by overlap or fragmentation); the sensor kept the bytes seen first")


def _loss(w: FeatureWindow) -> str | None:
    v = w.values
    if not w.client_ip and (v[_I["kernel_drops"]] or v[_I["interface_drops"]]):
        return (f"the sensor lost {_n(v[_I['kernel_drops']])} packet(s) in the capture ring and "
                f"{_n(v[_I['interface_drops']])} at the interface in this window: transactions and alerts of this "
                "window may be missing (give the capture more ring, CPU or fan-out workers)")
    if v[_I["gap_bytes"]]:
        return (f"{_n(v[_I['gap_bytes']])} byte(s) of the stream {w.client_ip} -> {_endpoint(w)} were never seen "
                "(a segment the capture lost): decoding resumed at the next Modbus/TCP header")
    return None


def _stalled(w: FeatureWindow) -> str | None:
    b = w.values[_I["undecoded_bytes"]]
    if not b:
        return None
    return (f"{_n(b)} byte(s) from {w.client_ip} to {_endpoint(w)} on a Modbus port could not be decoded as "
            "Modbus/TCP, with no transaction decoded meanwhile: the decoder is blind to this stream")


_CHECKS = (("policy.evasion", _evasion), ("sensor.packet_loss", _loss), ("sensor.decode_stalled", _stalled))


def sensor_alerts(windows: Iterable[FeatureWindow]) -> list[Alert]:
    """The alerts of the sensor windows among ``windows`` (other kinds are ignored), in window order."""
    out = []
    for w in windows:
        if w.kind != "sensor":
            continue
        for rule_id, check in _CHECKS:
            text = check(w)
            if text is None:
                continue
            declared, severity = rule(rule_id), SEVERITIES[rule_id]
            tech = declared.technique_for()
            evidence = tuple(FeatureEvidence(n, float(w.values[i]), 0.0, 0.0, 1.0)
                             for n, i in _I.items() if w.values[i])
            out.append(Alert(
                id=alert_id(w.window_start, w.window_end, w.client_ip, w.server_ip, -1,
                            f"{rule_id}@{w.port}/{w.transport}"),
                rule_id=rule_id, rule_name=declared.name, category="policy" if rule_id.startswith("policy.") else "sensor",
                detector="sensor", severity=severity, risk_score=RISK_SCORES[severity], score=1.0, threshold=0.5,
                window_start=w.window_start, window_end=w.window_end, client_ip=w.client_ip, server_ip=w.server_ip,
                unit_id=-1, explanation=text, evidence=evidence, server_port=w.port, transport=w.transport or "tcp",
                technique_id=tech.id if tech is not None else "",
                first_frame=w.first_frame, last_frame=w.last_frame,
            ))
    return out
