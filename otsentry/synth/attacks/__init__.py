"""Attackers injected into the plant simulation, and the bookkeeping that labels their frames.

Each attacker is one more actor of ``Sim``: it emits frames with the usual ground-truth tags, and every frame it
sends or that answers it is marked in an ``AttackLog``. The frame number is only known when the frame is
written (the simulation writes frames from a time-ordered heap), so ``LabellingWriter`` resolves marked frames by
identity as it writes them: no per-frame state is kept for normal traffic, and memory stays bounded.

Attackers draw from their own RNG, never from the plant's, and answer reads from the register banks without
advancing the process simulation (which draws from the plant's RNG). So a scenario's traffic is byte-identical to
the "normal" scenario of the same seed until the attack starts, and for the attacks that change nothing in the
plant (sweeps, flood) the normal frames stay identical after it too: the difference between the two captures is
exactly the attack.

Besides attackers with their own connection, three other shapes: wrappers of a plant poller that act on its
connection (``SetpointChange``, ``CovertChannel``, ``SilencedPoller`` for a PLC in listen-only mode), and
``polling.ResponseTamper`` implementations that replace a poller's responses on the way (``ReplayOldResponses``
and ``FreezeResponses``, men in the middle; ``ExceptionStorm``, a failing PLC). The men in the middle keep every
response's length, so their captures differ from "normal" only in the forged responses' bytes.
"""

from otsentry.synth.attacks.base import (ATTACKER_OUI, PLC_SUPPORTED, Attacker, Target, attacker_host, peek,
                                         read_response)
from otsentry.synth.attacks.denial import DiagnosticsRestart, ListenOnly, QueryFlood, SilencedPoller
from otsentry.synth.attacks.mitm import ExceptionStorm, FreezeResponses, ReplayOldResponses
from otsentry.synth.attacks.recon import GATEWAY_SERIAL_UNITS, AddressSweep, FunctionCodeSweep, UnitIdSweep, sweep_pdus
from otsentry.synth.attacks.writes import (COVERT_MESSAGE, COVERT_REGISTER, CovertChannel, SetpointChange,
                                           WriteFromNewHost, covert_value)
from otsentry.synth.truth import AttackLog, LabellingWriter

__all__ = ["ATTACKER_OUI", "AddressSweep", "AttackLog", "Attacker", "COVERT_MESSAGE", "COVERT_REGISTER",
           "CovertChannel", "DiagnosticsRestart", "ExceptionStorm", "FreezeResponses", "FunctionCodeSweep",
           "GATEWAY_SERIAL_UNITS", "LabellingWriter", "ListenOnly", "PLC_SUPPORTED", "QueryFlood", "ReplayOldResponses",
           "SetpointChange", "SilencedPoller", "Target", "UnitIdSweep", "WriteFromNewHost", "attacker_host",
           "covert_value", "peek", "read_response", "sweep_pdus"]
