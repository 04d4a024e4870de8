"""Flow rules: who talks to whom on the OT segment, whatever the protocol (new talkers, new services)."""

from __future__ import annotations

from otsentry.detectors.discovery import is_discovery, is_group, is_provisional
from otsentry.detectors.policy_findings import (REMOTE_ACCESS_PORTS, REMOTE_ACCESS_SERVICES, Finding, PolicyView,
                                                evidence, service_label)
from otsentry.detectors.policy_profiles import count
from otsentry.records import FeatureWindow

__all__ = ["FLOW_RULES", "new_service", "new_talker_flow"]


def new_talker_flow(b: PolicyView, w: FeatureWindow) -> Finding | None:
    """A host never seen; group addresses are not hosts, and discovery from a provisional address (DHCP's 0.0.0.0,
    an fe80:: address) is not a stranger either (see ``otsentry.detectors.discovery``)."""
    discovery = is_discovery(w)
    new = [ip for ip in (w.client_ip, w.server_ip) if ip not in b.talkers_ and not is_group(ip)
           and not (discovery and (ip == w.server_ip or is_provisional(ip)))]
    if not new:
        return None
    svc = service_label(w.port, w.transport, w.service)
    if len(new) == 2:
        text = f"{w.client_ip} and {w.server_ip} were never seen on the OT network while learning; the first " \
               f"connects to the second on {svc}"
    elif new[0] == w.client_ip:
        text = f"{w.client_ip} was never seen on the OT network while learning and now connects to {w.server_ip} " \
               f"on {svc}"
    else:
        text = f"{w.server_ip} was never seen on the OT network while learning and is now contacted by " \
               f"{w.client_ip} on {svc}"
    return Finding("policy.new_talker", "high", text, tuple(("policy.new_talker", ip) for ip in new),
                   (evidence("packets", count(w, "packets")),), variant="flow")


def new_service(b: PolicyView, w: FeatureWindow) -> Finding | None:
    """A (responder, port, transport) never seen, unless this originator used that service type elsewhere, or the
    responder is a group address (discovery chatter: no service was opened).

    The exception keeps an engineering station that browses one PLC's web page after another from alerting on
    each PLC it had not reached during learning, while RDP or SMB that nobody used still alerts.
    """
    if is_discovery(w):
        return None
    if (w.server_ip, w.port, w.transport) in b.services_:
        return _new_protocol(b, w)
    if (w.port, w.transport) in b.client_services_.get(w.client_ip, frozenset()):
        return None
    svc = service_label(w.port, w.transport, w.service)
    offered = sorted((p, t) for ip, p, t in b.services_ if ip == w.server_ip)
    context = (f" (it only offered {', '.join(service_label(p, t) for p, t in offered)})" if offered else "")
    text = f"{w.client_ip} connected to {w.server_ip} on {svc}, a service never seen on that host while learning" \
           f"{context}"
    remote = w.port in REMOTE_ACCESS_PORTS or w.service in REMOTE_ACCESS_SERVICES
    return Finding("policy.new_service", "high" if remote else "medium", text,
                   (("policy.new_service", w.client_ip, w.server_ip, w.port, w.transport),),
                   (evidence("packets", count(w, "packets")), evidence("connections", count(w, "connections"))),
                   variant="remote_access" if remote else "")


def _new_protocol(b: PolicyView, w: FeatureWindow) -> Finding | None:
    """A learned service whose payload now shows another protocol than every one it showed while learning (Remote
    Desktop tunnelled through a PLC's Modbus port). Judged only where learning named it."""
    learned = b.service_names_.get((w.server_ip, w.port, w.transport))
    if not w.service or not learned or w.service in learned:
        return None
    text = f"{w.client_ip} connected to {w.server_ip} on {service_label(w.port, w.transport, w.service)}: that " \
           f"service spoke {', '.join(sorted(learned))} while learning, never {w.service}"
    remote = w.service in REMOTE_ACCESS_SERVICES
    return Finding("policy.new_service", "high", text,
                   (("policy.new_service", w.client_ip, w.server_ip, w.port, w.transport),),
                   (evidence("packets", count(w, "packets")), evidence("connections", count(w, "connections"))),
                   variant="remote_access" if remote else "")


FLOW_RULES = (new_talker_flow, new_service)
