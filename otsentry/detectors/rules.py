"""Every rule otsentry raises, declared once: id, name, description, kind, ATT&CK for ICS technique and why.

``kind`` decides suppression, and nothing else does:

* ``action`` - something was *done* in the window (a write, a diagnostic command, a new function code, an exception
  burst, an anomalous exchange): every window holding it alerts, never suppressed; repeats fold into the open
  incident instead (``otsentry.correlation``);
* ``state`` - a persistent condition (a new talker that keeps talking, a new pair, a new service, a silent or frozen
  device): reported when it first appears, then at most once per re-alert interval as a reminder;
* ``health`` - what the sensor could not see (drops, a stalled decoder): every window, and no ATT&CK technique (it is
  not an adversary's action).

``technique`` is the ATT&CK for ICS technique the rule's evidence shows; ``variants`` refine it for a finding that
names a variant (FC 43 device identification is discovery, not a command; RDP to a PLC is remote services, not a
scan). ``reason`` says why the mapping holds: it is printed in the README table and is what a reviewer checks.
``step`` is the phrase an incident summary uses for the alerts of this rule, about the alert's client (or, with
``subject="server"``, its server: a device that stopped answering is the news, not its pollers); "{targets}" (the
other side) and "{codes}" are filled in; variants carry their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from otsentry.contracts.attack import Technique, technique

__all__ = ["KINDS", "RISK_SCORES", "RULES", "Rule", "rule", "technique_of"]

KINDS = ("action", "state", "health")
# Elastic's convention for risk scores by severity (detection rules use 21 / 47 / 73 / 99).
RISK_SCORES = {"low": 21.0, "medium": 47.0, "high": 73.0, "critical": 99.0}


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    description: str
    kind: str
    technique: str | None
    reason: str
    step: str
    variants: Mapping[str, tuple[str, str]] = field(default_factory=lambda: MappingProxyType({}))
    subject: str = "client"  # who the step phrase is about: the client, or the server (a device that went silent)

    def __post_init__(self) -> None:
        if self.subject not in ("client", "server"):
            raise ValueError(f"rule {self.id}: subject {self.subject!r} is not client or server")
        if self.kind not in KINDS:
            raise ValueError(f"rule {self.id}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if (self.kind == "health") != (self.technique is None):
            raise ValueError(f"rule {self.id}: health rules and only they carry no ATT&CK technique")
        for tid in (self.technique, *(t for t, _ in self.variants.values())):
            if tid is not None:
                technique(tid)  # raises for an undeclared technique
        techniques = [self.technique, *(t for t, _ in self.variants.values())]
        if len(set(techniques)) != len(techniques):
            raise ValueError(f"rule {self.id}: each variant maps to its own technique (an alert's technique names "
                             "its variant)")
        object.__setattr__(self, "variants", MappingProxyType(dict(self.variants)))

    def technique_for(self, variant: str = "") -> Technique | None:
        tid = self.variants[variant][0] if variant in self.variants else self.technique
        return technique(tid) if tid is not None else None

    def step_for(self, technique_id: str = "") -> str:
        """The summary phrase of an alert of this rule that carries ``technique_id``."""
        for tid, step in self.variants.values():
            if tid == technique_id:
                return step
        return self.step


_DECLARED = (
    Rule("policy.new_talker", "New talker", "An IP address never seen on the OT network while learning.", "state",
         "T0848", "A host nobody saw before that sends Modbus requests acts as a rogue master; one that only opens "
         "connections (variant flow) is looking for systems.", "appeared as a new host",
         {"flow": ("T0846", "scanned {targets}")}),
    Rule("policy.new_pair", "New asset pair",
         "A client talking to a server/unit it never talked to while learning.", "state",
         "T0846", "Addressing servers or unit ids a client never addressed is how a host or unit-id scan looks.",
         "scanned {targets}"),
    Rule("policy.new_function_code", "New function code",
         "A Modbus function code never used by this pair while learning.", "action",
         "T0855", "A function code the pair never used is a command the plant did not authorise; FC 43/14 and FC 17 "
         "(variant identification) ask the device who it is.", "sent new function codes ({codes}) to {targets}",
         {"identification": ("T0888", "read device identification from {targets}")}),
    Rule("policy.first_write", "First write",
         "A client writing to a server/unit it did not write to while learning.", "action",
         "T0855", "A write from a client that only ever read is an unauthorised command message.",
         "wrote to {targets} ({codes})"),
    Rule("policy.address_out_of_range", "Address out of range", "Requests or writes outside the learned address range.",
         "action", "T0861", "Reading registers nobody reads maps the device's points; writing outside the learned "
         "range (variant write) changes parameters nobody changes.", "read registers outside the learned range "
         "from {targets}", {"write": ("T0836", "wrote registers outside the learned range on {targets}")}),
    Rule("policy.write_value_out_of_range", "Written value out of range", "A value written outside the learned range.",
         "action", "T0836", "A setpoint or parameter written outside every value seen is a modified parameter.",
         "wrote out-of-range values to {targets}"),
    Rule("policy.exception_burst", "Exception burst",
         "Far more exception responses than the learned maximum per window.", "action",
         "T0888", "Bursts of exceptions come from probing codes and addresses a device does not serve: what scanners "
         "that enumerate a device's capabilities produce.", "drew exception bursts from {targets}"),
    Rule("policy.diagnostics", "Diagnostics command",
         "FC 8 restart, listen-only, or diagnostics never seen for the pair.", "action",
         "T0814", "Force listen-only takes the device off the bus (denial of service); restart communications "
         "(variant restart) restarts it; other diagnostics (variant query) read its counters.",
         "sent FC 8 force listen-only to {targets}",
         {"restart": ("T0816", "sent FC 8 restart communications to {targets}"),
          "query": ("T0888", "sent FC 8 diagnostics to {targets}")}),
    Rule("policy.no_response", "Device stopped answering",
         "Far more unanswered requests than learned: the device (or the path to it) went silent.", "state",
         "T0814", "A device that stops answering its pollers is what a denial of service leaves behind.",
         "stopped answering {targets}", subject="server"),
    Rule("policy.values_frozen", "Values frozen",
         "Register values that changed in every learning window no longer change.", "state",
         "T0832", "Frozen values hide the real process from the operator: manipulation of view.",
         "answered {targets} with frozen values", subject="server"),
    Rule("policy.values_replayed", "Values replayed",
         "Reads answered with register blocks identical to earlier answers: played back.", "action",
         "T0856", "Recorded answers played back to the poller are spoofed reporting messages.",
         "answered {targets} with played-back values", subject="server"),
    Rule("policy.process_value_out_of_range", "Process value out of range",
         "A register read far outside anything it held while learning.", "state",
         "T0831", "A process value driven outside everything it ever did is the mark of manipulated control (or of "
         "a process that ran away: either way the operator must look).", "held process values outside anything "
         "learned, read by {targets}", subject="server"),
    Rule("policy.new_service", "New service",
         "A connection to a (host, port, transport) never seen while learning.", "state",
         "T0846", "Connections to services nobody used are how a port scan looks; remote access and file sharing "
         "(variant remote_access) are remote services.", "scanned {targets}",
         {"remote_access": ("T0886", "opened remote-access sessions to {targets}")}),
    Rule("policy.evasion", "Evasion attempt",
         "Overlapping TCP segments or IP fragments with different bytes, or tiny IP fragments.", "action",
         "T0820", "Overlaps with different bytes exploit the difference between the sensor's and the device's "
         "reassembly to hide what was sent.", "sent overlapping segments or fragments to {targets}"),
    Rule("policy.ot_restart", "Device restart (DNP3, IEC 104, S7, CIP)",
         "A restart command: DNP3 COLD/WARM_RESTART, IEC 104 C_RP_NA_1 reset process, CIP Reset.", "action",
         "T0816", "A restart takes the device out of the process while it reboots.", "restarted {targets}"),
    Rule("policy.ot_mode_change", "Operating mode change (stop/start)",
         "A PLC or application stopped or started: S7 PLC STOP or PI start, DNP3 STOP/START_APPL, CIP Stop/Start.",
         "action", "T0858", "Stopping a controller halts its program; a start after a download runs new logic.",
         "stopped or started {targets}"),
    Rule("policy.ot_reporting_disabled", "Event reporting disabled",
         "DNP3 DISABLE_UNSOLICITED: the outstation stops reporting events on its own.", "action",
         "T0804", "An outstation that no longer reports events hides alarms and state changes from the master.",
         "disabled event reporting of {targets}"),
    Rule("policy.ot_time_set", "Device clock set",
         "A clock set or synchronisation: DNP3 RECORD_CURRENT_TIME, IEC 104 C_CS_NA_1, S7 SET_CLOCK.", "action",
         "T0836", "The device clock orders events and sequence-of-events records: it is a parameter of the process.",
         "set the clock of {targets}"),
    Rule("policy.ot_program", "Program download, upload or delete",
         "A program or block moved or deleted: S7 download/upload/PI insert/delete, DNP3 file delete, "
         "configuration saved or activated.", "action",
         "T0843", "Downloading a program changes the logic that runs the process; uploading it (variant upload) "
         "copies it for study; deleting (variant delete) destroys it; configuration (variant configuration) changes "
         "the device's parameters.", "downloaded a program to {targets}",
         {"upload": ("T0845", "uploaded a program from {targets}"),
          "delete": ("T0809", "deleted a program or file on {targets}"),
          "configuration": ("T0836", "changed the configuration of {targets}")}),
    Rule("policy.ot_new_operation", "New OT operation for a pair",
         "A client sending a class of DNP3/IEC 104/S7/CIP operation (control, write, program...) it never sent to "
         "that device while learning, or an operation it never sent within a class it used (DIRECT_OPERATE from "
         "a master that always selected before operating).", "action",
         "T0855", "A first control or write from a client that only read is an unauthorised command message; first "
         "reads (variant read) map the device's points; first diagnostics (variant diagnostic) ask who it is.",
         "sent new kinds of operations to {targets}",
         {"read": ("T0861", "read points never read from {targets}"),
          "diagnostic": ("T0888", "queried {targets}")}),
    Rule("policy.ot_new_master", "New OT master",
         "A client speaking DNP3/IEC 104/S7/CIP to a device and station it never spoke to while learning.", "state",
         "T0848", "A new master that sends commands acts as a rogue master; one that only reads (variant reads) is "
         "looking around.", "appeared as a new master of {targets}",
         {"reads": ("T0846", "polled {targets} as a new master")}),
    Rule("policy.ot_error_burst", "OT error burst",
         "Far more error answers (IIN errors, negative confirmations, CIP/S7 errors) than learned.", "action",
         "T0888", "Probing objects and functions a device does not serve draws error answers.",
         "drew error bursts from {targets}"),
    Rule("policy.ot_no_response", "OT device stopped answering",
         "Far more unanswered DNP3/IEC 104/S7/CIP requests than learned.", "state",
         "T0814", "A device that stops answering its masters is what a denial of service leaves behind.",
         "stopped answering {targets}", subject="server"),
    Rule("anomaly.pair_ensemble", "Anomalous Modbus traffic for an asset pair",
         "A window of Modbus traffic that no learned pattern of the pair explains.", "action",
         "T0855", "Modbus exchanges unlike anything the pair did are commands the plant did not expect.",
         "exchanged unusual Modbus traffic with {targets}"),
    Rule("anomaly.flow_ensemble", "Anomalous conversation on the OT network",
         "A conversation whose volume, timing or flags no learned conversation explains.", "action",
         "T0869", "Unusual volume or timing on a known service is how a channel hidden in an application protocol "
         "looks.", "held unusual conversations with {targets}"),
    Rule("anomaly.ot_ensemble", "Anomalous DNP3/IEC 104/S7/CIP traffic for a pair",
         "A window of DNP3, IEC 104, S7 or EtherNet/IP operations that no learned pattern of the pair explains.",
         "action", "T0855", "Operations unlike anything the pair did (mix, rate, errors, latency) are commands the "
         "plant did not expect.", "exchanged unusual OT operations with {targets}"),
    Rule("sensor.packet_loss", "Sensor packet loss",
         "Packets the sensor never saw: kernel or interface drops, or a stream hole never filled.", "health",
         None, "The sensor's own blindness, not an adversary's action.", "lost packets towards {targets}"),
    Rule("sensor.decode_stalled", "Decoder stalled",
         "A stream on a Modbus port sends bytes that cannot be decoded as Modbus/TCP.", "health",
         None, "The sensor's own blindness, not an adversary's action.", "sent undecodable bytes to {targets}"),
)
RULES: Mapping[str, Rule] = MappingProxyType({r.id: r for r in _DECLARED})


def rule(rule_id: str) -> Rule:
    try:
        return RULES[rule_id]
    except KeyError:
        raise KeyError(f"rule {rule_id!r} is not declared in otsentry.detectors.rules") from None


def technique_of(rule_id: str, variant: str = "") -> Technique | None:
    """The ATT&CK for ICS technique of an alert of ``rule_id`` (``None`` for sensor health)."""
    return rule(rule_id).technique_for(variant)
