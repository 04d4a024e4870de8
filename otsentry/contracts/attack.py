"""MITRE ATT&CK for ICS: the tactics and techniques otsentry's rules map to, declared once as data.

A contract at the bottom of the package (records level): detectors name a technique id on each alert, the ECS
mapping and the incident builder look its name and tactic up here, so the spelling of an ATT&CK name lives in one
place. Ids and names are those of the ATT&CK for ICS matrix (https://attack.mitre.org/matrices/ics/); a technique
that belongs to several tactics is listed under the one its otsentry evidence shows.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACTING_TACTICS", "FRAMEWORK", "PREPARING_TACTICS", "TACTICS", "TECHNIQUES", "Tactic", "Technique", "tactic_rank", "technique"]

FRAMEWORK = "MITRE ATT&CK for ICS"


@dataclass(frozen=True, slots=True)
class Tactic:
    id: str
    name: str

    @property
    def reference(self) -> str:
        return f"https://attack.mitre.org/tactics/{self.id}/"


@dataclass(frozen=True, slots=True)
class Technique:
    id: str
    name: str
    tactic: Tactic

    @property
    def reference(self) -> str:
        return f"https://attack.mitre.org/techniques/{self.id}/"


# In the order of the ATT&CK for ICS matrix, which is roughly the order of an attack: incidents sort tactics by time
# first and use this order only to break ties.
_TACTICS = (
    Tactic("TA0108", "Initial Access"),
    Tactic("TA0104", "Execution"),
    Tactic("TA0110", "Persistence"),
    Tactic("TA0111", "Privilege Escalation"),
    Tactic("TA0103", "Evasion"),
    Tactic("TA0102", "Discovery"),
    Tactic("TA0109", "Lateral Movement"),
    Tactic("TA0100", "Collection"),
    Tactic("TA0101", "Command and Control"),
    Tactic("TA0107", "Inhibit Response Function"),
    Tactic("TA0106", "Impair Process Control"),
    Tactic("TA0105", "Impact"),
)
TACTICS: dict[str, Tactic] = {t.id: t for t in _TACTICS}
_T = TACTICS

TECHNIQUES: dict[str, Technique] = {t.id: t for t in (
    Technique("T0848", "Rogue Master", _T["TA0108"]),
    Technique("T0886", "Remote Services", _T["TA0109"]),
    Technique("T0846", "Remote System Discovery", _T["TA0102"]),
    Technique("T0888", "Remote System Information Discovery", _T["TA0102"]),
    Technique("T0845", "Program Upload", _T["TA0100"]),
    Technique("T0843", "Program Download", _T["TA0109"]),
    Technique("T0858", "Change Operating Mode", _T["TA0104"]),
    Technique("T0861", "Point & Tag Identification", _T["TA0100"]),
    Technique("T0869", "Standard Application Layer Protocol", _T["TA0101"]),
    Technique("T0820", "Exploitation for Evasion", _T["TA0103"]),
    Technique("T0856", "Spoof Reporting Message", _T["TA0103"]),
    Technique("T0814", "Denial of Service", _T["TA0107"]),
    Technique("T0816", "Device Restart/Shutdown", _T["TA0107"]),
    Technique("T0804", "Block Reporting Message", _T["TA0107"]),
    Technique("T0809", "Data Destruction", _T["TA0107"]),
    Technique("T0855", "Unauthorized Command Message", _T["TA0106"]),
    Technique("T0836", "Modify Parameter", _T["TA0106"]),
    Technique("T0832", "Manipulation of View", _T["TA0105"]),
    Technique("T0831", "Manipulation of Control", _T["TA0105"]),
)}

# Tactics after which an incident is no longer reconnaissance: the attacker acts on the process.
ACTING_TACTICS = frozenset({"TA0107", "TA0106", "TA0105"})
# Tactics that prepare an action (looking around, gathering what to write).
PREPARING_TACTICS = frozenset({"TA0102", "TA0100", "TA0108"})


def technique(technique_id: str) -> Technique:
    """The technique of an id; a KeyError names the id (a rule table mapping to an undeclared technique is a bug)."""
    try:
        return TECHNIQUES[technique_id]
    except KeyError:
        raise KeyError(f"ATT&CK for ICS technique {technique_id!r} is not declared in otsentry.contracts.attack") from None


def tactic_rank(tactic_id: str) -> int:
    """Position of a tactic in the matrix (ties between alerts of the same time are broken by it)."""
    return [t.id for t in _TACTICS].index(tactic_id)
