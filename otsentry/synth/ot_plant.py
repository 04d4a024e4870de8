"""The port's other OT systems, beside the Modbus plant: a substation and the crane and yard PLCs.

* substation: the SCADA front end (``scada``) polls RTU 1 over DNP3 (outstation 10) and RTU 2 over IEC 104
  (common address 7);
* crane: the crane HMI (``crane_hmi``) reads the crane's S7-300 over S7comm;
* yard: the control room's HMI reads the yard's ControlLogix over EtherNet/IP/CIP.

``build_ot_plant`` draws from its own RNG (seeded from the scenario's seed), so adding it leaves the Modbus
plant's traffic byte-identical, and the OT traffic of two scenarios of one seed is identical until the attack.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from otsentry.synth.crane import S7Hmi, YardHmi
from otsentry.synth.plant import Host
from otsentry.synth.ot_session import Device, OtSession
from otsentry.synth.sim import Actor, Sim
from otsentry.synth.substation import Dnp3Master, Iec104Station
from otsentry.synth.truth import AttackLog

__all__ = ["OtPlant", "build_ot_plant"]

# name -> (address, MAC vendor prefix): Dell front ends and HMIs, SEL and ABB RTUs, Siemens and Rockwell PLCs
_HOSTS = {
    "scada": ("10.10.1.30", "18:66:da"), "crane_hmi": ("10.10.1.40", "18:66:da"),
    "rtu1": ("10.10.3.11", "00:30:a7"), "rtu2": ("10.10.3.12", "00:02:a3"),
    "crane_plc": ("10.10.4.11", "00:1b:1b"), "yard_plc": ("10.10.4.21", "00:00:bc"),
}


@dataclass
class OtPlant:
    """The OT hosts, devices and sessions (by device name), and every session with its start time."""

    hosts: dict[str, Host]
    devices: dict[str, Device]
    sessions: dict[str, OtSession]
    actors: list[tuple[int, Actor]]


def build_ot_plant(sim: Sim, seed: int, hmi: Host, start_ns: int, log: AttackLog) -> OtPlant:
    """The substation, crane and yard sessions; ``hmi`` is the Modbus plant's control-room HMI."""
    rng = random.Random(f"otsentry-ot-plant:{seed}")
    hosts = {name: Host(name, ip, oui + ":" + ":".join(f"{rng.randrange(256):02x}" for _ in range(3)))
             for name, (ip, oui) in _HOSTS.items()}
    devices = {"rtu1": Device(hosts["rtu1"], 20000), "rtu2": Device(hosts["rtu2"], 2404),
               "crane_plc": Device(hosts["crane_plc"], 102), "yard_plc": Device(hosts["yard_plc"], 44818)}
    sessions: dict[str, OtSession] = {
        "rtu1": Dnp3Master(sim, log, random.Random(rng.getrandbits(64)), hosts["scada"], devices["rtu1"]),
        "rtu2": Iec104Station(sim, log, random.Random(rng.getrandbits(64)), hosts["scada"], devices["rtu2"]),
        "crane_plc": S7Hmi(sim, log, random.Random(rng.getrandbits(64)), hosts["crane_hmi"], devices["crane_plc"]),
        "yard_plc": YardHmi(sim, log, random.Random(rng.getrandbits(64)), hmi, devices["yard_plc"]),
    }
    actors: list[tuple[int, Actor]] = [(start_ns + int(rng.uniform(0.5, 5.0) * 1e9), s) for s in sessions.values()]
    return OtPlant(hosts, devices, sessions, actors)
