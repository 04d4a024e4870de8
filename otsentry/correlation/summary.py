"""The sentence an analyst reads first: who did what to whom, in order.

"192.168.0.1 scanned 6 hosts on 80 and 502/tcp, read device identification from .31, then sent FC 8 force
listen-only to .31 (2 windows)". Steps come from the rules' declared phrases (``otsentry.detectors.rules``), with the
alert's client as the subject; steps of one actor with the same phrase (a scan seen as new pairs, new services and
new talkers) are told once. Targets in the actor's /24 are shortened to their last octet.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Sequence

from otsentry.detectors.rules import rule
from otsentry.records import IncidentStep

__all__ = ["summarise"]

MAX_STEPS = 5  # per actor; the rest is counted
MAX_ACTORS = 3
MAX_NAMED_TARGETS = 3


@dataclass
class _Phrase:
    template: str
    windows: int = 0
    targets: dict[str, None] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)
    units: int = 0
    codes: set[int] = field(default_factory=set)
    repeats: bool = False
    anomaly: bool = False


def _short(target: str, actor: str) -> str:
    try:
        t, a = ipaddress.ip_address(target), ipaddress.ip_address(actor)
    except ValueError:
        return target
    if t.version == 4 and a.version == 4 and t.packed[:3] == a.packed[:3]:
        return "." + target.rsplit(".", 1)[1]
    return target


def _targets(p: _Phrase, actor: str) -> str:
    names = list(p.targets)
    if not names:
        return ""
    if len(names) > MAX_NAMED_TARGETS:
        return f"{len(names)} hosts"
    shown = [_short(t, actor) for t in names]
    text = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    if len(names) == 1 and p.units > 1:
        text += f" ({p.units} unit ids)"
    return text


def _services(services: set[str]) -> str:
    by_transport: dict[str, list[int]] = {}
    for s in services:
        port, transport = s.split("/", 1)
        by_transport.setdefault(transport, []).append(int(port))
    parts = []
    for transport, ports in sorted(by_transport.items()):
        listed = [str(p) for p in sorted(ports) if p]
        if not listed:
            parts.append(transport.upper())
            continue
        text = listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " and " + listed[-1]
        parts.append(f"{text}/{transport}")
    return " and ".join(parts)


def _codes(codes: set[int]) -> str:
    return "FC " + ", ".join(str(c) for c in sorted(codes)) if codes else ""


def _render(p: _Phrase, actor: str, previous: str = "") -> str:
    """The phrase; ``previous`` is the last target named in the sentence ("it" when this one is the same host)."""
    text = p.template
    targets = _targets(p, actor)
    if targets and targets == previous and len(p.targets) == 1:
        targets = "it"
    if not targets:
        text = re.sub(r"\s+(to|from|with|on|towards)\s+\{targets\}", "", text).replace("{targets}", "hosts")
    text = text.replace("{targets}", targets)
    codes = _codes(p.codes)
    text = text.replace(" ({codes})", f" ({codes})" if codes else "").replace("{codes}", codes or "codes")
    if p.services:
        text += f" on {_services(p.services)}"
    if p.repeats and p.windows > 1:
        text += f" ({p.windows} windows)"
    return text


def summarise(steps: Sequence[IncidentStep]) -> str:
    """One sentence per actor (in order of first step), steps in the order given (time, then matrix order).

    Anomaly-model steps are told only for an actor no policy rule described: "exchanged unusual Modbus traffic" adds
    nothing to "wrote to .12".
    """
    actors: dict[str, dict[str, _Phrase]] = {}
    for s in steps:
        declared = rule(s.rule_id)
        template = declared.step_for(s.technique_id)
        phrase = actors.setdefault(s.actor, {}).setdefault(template, _Phrase(template))
        phrase.windows += s.alerts
        phrase.targets.update(dict.fromkeys(s.targets))
        phrase.services.update(s.services)
        phrase.units = max(phrase.units, s.units)
        phrase.codes.update(s.function_codes)
        phrase.repeats = phrase.repeats or declared.kind == "action"
        phrase.anomaly = s.rule_id.startswith("anomaly.")
    sentences = []
    for actor, phrases in list(actors.items())[:MAX_ACTORS]:
        told = [p for p in phrases.values() if not p.anomaly] or list(phrases.values())
        rendered, previous = [], ""
        for p in told:
            rendered.append(_render(p, actor, previous))
            if "{targets}" in p.template:
                previous = _targets(p, actor) or previous
        more = len(rendered) - MAX_STEPS
        rendered = rendered[:MAX_STEPS] + ([f"and {more} other kinds of action"] if more > 0 else [])
        if len(rendered) > 1 and more <= 0:
            body = ", ".join(rendered[:-1]) + ", then " + rendered[-1]
        else:
            body = ", ".join(rendered)
        sentences.append(f"{actor or 'the sensor'} {body}")
    if len(actors) > MAX_ACTORS:
        sentences.append(f"and {len(actors) - MAX_ACTORS} more hosts acted")
    text = "; ".join(sentences)
    return text[:1].upper() + text[1:] if text.startswith("the sensor") else text
