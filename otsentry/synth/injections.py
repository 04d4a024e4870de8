"""How each scenario's attack is put into the plant: one function per scenario, registered by name.

A registered function gets the plant, its actors and the attack's own RNG (``Injection``) and returns the
addresses the truth reports: (attacker IP, target IP, target unit). The attacker IP is the address the attack's
frames come from as the capture shows it: a new host, a known host misused (historian, engineering station, HMI),
or None when no host of the attack appears (a man in the middle answering in the PLC's name, a failing PLC). The
target unit is None when the attack is not about one unit (a unit-id sweep, SMB or RDP to the HMI).

The registry's order is the library's order (``normal``, which injects nothing, first). The scenarios' texts,
techniques and timelines are in their YAML specs (``otsentry.synth.specs``), not here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from otsentry.synth.attacks import (AddressSweep, AttackLog, CovertChannel, DiagnosticsRestart, ExceptionStorm,
                                    FreezeResponses, FunctionCodeSweep, ListenOnly, QueryFlood, ReplayOldResponses,
                                    SetpointChange, SilencedPoller, Target, UnitIdSweep, WriteFromNewHost,
                                    attacker_host)
from otsentry.synth.attacks.ot import (CipReset, Dnp3ColdRestart, Dnp3DirectOperate, Dnp3DisableUnsolicited,
                                       Iec104Command, InterrogationFlood, S7BlockDownload, S7PlcStop)
from otsentry.synth.campaign import ListenOnlyPeriods, RepeatedCampaign
from otsentry.synth.ot_plant import OtPlant
from otsentry.synth.plant import Host
from otsentry.synth.polling import Plant, Poller
from otsentry.synth.sessions import RdpSession, SmbLateralMovement
from otsentry.synth.sim import Actor, Sim

__all__ = ["INJECTIONS", "REPLAY_RECORD_BEFORE_S", "REPLAY_S", "SCENARIO_NAMES", "Injection", "inject"]

# How long before the end of learning the man in the middle of ``replay_old_responses`` starts recording, and for
# how long it records (its replay lasts as long as the recording).
REPLAY_RECORD_BEFORE_S = 90.0
REPLAY_S = 60.0

Addresses = tuple[str | None, str | None, int | None]
OT_UNITS = {"rtu1": 10, "rtu2": 7}  # the truth's target unit: DNP3 outstation address, IEC 104 common address


@dataclass
class Injection:
    """What an injection works with; ``poller`` (the HMI poller under attack) and ``taken`` are drawn first."""

    sim: Sim
    plant: Plant
    actors: list[tuple[int, Actor]]
    log: AttackLog
    rng: random.Random
    start_ns: int
    at_ns: int
    learn_end_ns: int
    ot: OtPlant | None = None  # the substation, crane and yard (specs with ``plant: port``)
    poller: Poller = field(init=False)
    taken: list[str] = field(init=False)

    def __post_init__(self) -> None:
        targets = _hmi_pollers(self.plant)
        self.poller = targets[self.rng.randrange(len(targets))]  # every scenario draws this first
        self.taken = [h.ip for h in self.plant.hosts.values()]

    @property
    def target(self) -> Target:
        return Target.of(self.poller)

    def new_host(self) -> Host:
        return attacker_host(self.rng, self.taken)

    def add(self, actor: Actor) -> None:
        self.actors.append((self.at_ns, actor))

    def wrap(self, poller: Poller, wrapper: Actor) -> None:
        """Replace ``poller`` by ``wrapper`` (which steps it) in the plant's actor list, keeping its start time."""
        i = next(i for i, (_, actor) in enumerate(self.actors) if actor is poller)
        self.actors[i] = (self.actors[i][0], wrapper)

    def pollers_of(self, plc: Host) -> list[Poller]:
        """The pollers of a PLC: the HMI's and the historian's."""
        return [p for p in self.plant.pollers if p.plc is plc]

    def ot_attack(self, cls: type, device: str, client: Host, **kwargs: object) -> Addresses:
        """Add an attack session of ``cls`` from ``client`` to an OT device of the port plant."""
        if self.ot is None:
            raise ValueError("this scenario attacks the port's OT systems: its spec needs `plant: port`")
        dev = self.ot.devices[device]
        if kwargs.pop("victim", False):  # the attack changes the device its normal session talks to
            kwargs["victim"] = self.ot.sessions[device]
        self.add(cls(self.sim, self.log, self.rng, client, dev, **kwargs))
        return client.ip, dev.host.ip, OT_UNITS.get(device)

    def ot_host(self, name: str) -> Host:
        """A host of the port plant (OT systems first, then the Modbus plant's control room)."""
        assert self.ot is not None
        return self.ot.hosts.get(name) or self.plant.hosts[name]


INJECTIONS: dict[str, Callable[[Injection], Addresses] | None] = {"normal": None}


def injection(name: str) -> Callable[[Callable[[Injection], Addresses]], Callable[[Injection], Addresses]]:
    def register(fn: Callable[[Injection], Addresses]) -> Callable[[Injection], Addresses]:
        INJECTIONS[name] = fn
        return fn
    return register


def inject(name: str, ctx: Injection) -> Addresses:
    """Put scenario ``name``'s attack into the plant; the addresses its truth reports."""
    fn = INJECTIONS.get(name)
    if fn is None:
        raise ValueError(f"scenario {name!r} has no attack to inject")
    return fn(ctx)


def _hmi_pollers(plant: Plant) -> list[Poller]:
    """The HMI's pollers of single-unit PLCs: the attack targets (the gateway's slow serial units are not)."""
    pollers = [p for p in plant.pollers if not p.historian]
    return [p for p in pollers if not p.gateway] or pollers


def _new_host_attack(cls: type) -> Callable[[Injection], Addresses]:
    def run(ctx: Injection) -> Addresses:
        target, host = ctx.target, ctx.new_host()
        ctx.add(cls(ctx.sim, ctx.log, ctx.rng, host, target))
        return host.ip, target.plc.ip, target.unit
    return run


injection("write_new_host")(_new_host_attack(WriteFromNewHost))
injection("fc_sweep")(_new_host_attack(FunctionCodeSweep))
injection("query_flood")(_new_host_attack(QueryFlood))


@injection("setpoint_change")
def _setpoint_change(ctx: Injection) -> Addresses:
    target = ctx.target
    ctx.wrap(ctx.poller, SetpointChange(ctx.poller, ctx.log, ctx.rng, ctx.at_ns))
    return ctx.poller.client.ip, target.plc.ip, target.unit


@injection("unit_id_sweep")
def _unit_id_sweep(ctx: Injection) -> Addresses:
    """The serial gateway, whose IP hides several unit ids."""
    gateway = next((p for p in ctx.plant.pollers if p.gateway and not p.historian), ctx.poller)
    host = ctx.new_host()
    ctx.add(UnitIdSweep(ctx.sim, ctx.log, ctx.rng, host, Target.of(gateway), gateway.banks))
    return host.ip, gateway.plc.ip, None


@injection("address_sweep")
def _address_sweep(ctx: Injection) -> Addresses:
    target, host = ctx.target, ctx.plant.hosts["historian"]
    ctx.add(AddressSweep(ctx.sim, ctx.log, ctx.rng, host, target))
    return host.ip, target.plc.ip, target.unit


@injection("replay_old_responses")
def _replay_old_responses(ctx: Injection) -> Addresses:
    target = ctx.target
    record_to = max(ctx.start_ns, ctx.learn_end_ns - int((REPLAY_RECORD_BEFORE_S - REPLAY_S) * 1e9))
    record_from = max(ctx.start_ns, record_to - int(REPLAY_S * 1e9))
    ctx.poller.tamper = ReplayOldResponses(ctx.log, record_from, record_to, ctx.at_ns, REPLAY_S)
    return None, target.plc.ip, target.unit


@injection("spoofed_freeze")
def _spoofed_freeze(ctx: Injection) -> Addresses:
    target = ctx.target
    ctx.poller.tamper = FreezeResponses(ctx.log, ctx.at_ns, 120.0)
    return None, target.plc.ip, target.unit


@injection("diag_restart")
def _diag_restart(ctx: Injection) -> Addresses:
    target, host, state = ctx.target, ctx.plant.hosts["eng"], ListenOnly()
    ctx.add(DiagnosticsRestart(ctx.sim, ctx.log, ctx.rng, host, target, state))
    for p in ctx.pollers_of(target.plc):  # the HMI and the historian: nobody gets an answer in listen-only mode
        ctx.wrap(p, SilencedPoller(p, state, ctx.log, ctx.rng))
    return host.ip, target.plc.ip, target.unit


@injection("exception_storm")
def _exception_storm(ctx: Injection) -> Addresses:
    target = ctx.target
    storm = ExceptionStorm(ctx.log, ctx.rng, ctx.at_ns, 60.0)
    for p in ctx.pollers_of(target.plc):
        p.tamper = storm
    return None, target.plc.ip, target.unit


@injection("new_service_smb")
def _new_service_smb(ctx: Injection) -> Addresses:
    eng, hmi = ctx.plant.hosts["eng"], ctx.plant.hosts["hmi"]
    ctx.add(SmbLateralMovement(ctx.sim, ctx.log, ctx.rng, eng, hmi))
    return eng.ip, hmi.ip, None


@injection("new_service_rdp")
def _new_service_rdp(ctx: Injection) -> Addresses:
    hmi = ctx.plant.hosts["hmi"]
    host = ctx.new_host()
    ctx.add(RdpSession(ctx.sim, ctx.log, ctx.rng, host, hmi))
    return host.ip, hmi.ip, None


@injection("covert_channel")
def _covert_channel(ctx: Injection) -> Addresses:
    target = ctx.target
    ctx.wrap(ctx.poller, CovertChannel(ctx.poller, ctx.log, ctx.rng, ctx.at_ns, 600.0))
    return ctx.poller.client.ip, target.plc.ip, target.unit


@injection("repeat_campaign")
def _repeat_campaign(ctx: Injection) -> Addresses:
    target, host, state = ctx.target, ctx.new_host(), ListenOnlyPeriods()
    plcs = list(dict.fromkeys(p.plc for p in ctx.plant.pollers))
    ctx.add(RepeatedCampaign(ctx.sim, ctx.log, ctx.rng, host, target, plcs, state))
    for p in ctx.pollers_of(target.plc):
        ctx.wrap(p, SilencedPoller(p, state, ctx.log, ctx.rng))
    return host.ip, target.plc.ip, target.unit


# -- the port's OT systems (specs with ``plant: port``) ----------------------------------------------------------

@injection("dnp3_cold_restart")
def _dnp3_cold_restart(ctx: Injection) -> Addresses:
    return ctx.ot_attack(Dnp3ColdRestart, "rtu1", ctx.ot_host("eng"), victim=True)


@injection("dnp3_disable_unsolicited")
def _dnp3_disable_unsolicited(ctx: Injection) -> Addresses:
    return ctx.ot_attack(Dnp3DisableUnsolicited, "rtu1", ctx.ot_host("scada"))


@injection("dnp3_direct_operate")
def _dnp3_direct_operate(ctx: Injection) -> Addresses:
    return ctx.ot_attack(Dnp3DirectOperate, "rtu1", ctx.new_host())


@injection("dnp3_master_direct_operate")
def _dnp3_master_direct_operate(ctx: Injection) -> Addresses:
    return ctx.ot_attack(Dnp3DirectOperate, "rtu1", ctx.ot_host("scada"))


@injection("iec104_new_station_command")
def _iec104_new_station_command(ctx: Injection) -> Addresses:
    return ctx.ot_attack(Iec104Command, "rtu2", ctx.new_host())


@injection("iec104_interrogation_flood")
def _iec104_interrogation_flood(ctx: Injection) -> Addresses:
    return ctx.ot_attack(InterrogationFlood, "rtu2", ctx.ot_host("scada"))


@injection("s7_plc_stop")
def _s7_plc_stop(ctx: Injection) -> Addresses:
    return ctx.ot_attack(S7PlcStop, "crane_plc", ctx.ot_host("eng"))


@injection("s7_block_download")
def _s7_block_download(ctx: Injection) -> Addresses:
    return ctx.ot_attack(S7BlockDownload, "crane_plc", ctx.ot_host("eng"))


@injection("cip_reset")
def _cip_reset(ctx: Injection) -> Addresses:
    return ctx.ot_attack(CipReset, "yard_plc", ctx.new_host(), victim=True)


SCENARIO_NAMES: tuple[str, ...] = tuple(INJECTIONS)
