"""Responses changed on the way (a man in the middle: replayed or frozen values) or by a failing device."""

from __future__ import annotations

import random

from otsentry.synth import modbus as mb
from otsentry.synth.tcp import Frame
from otsentry.synth.truth import AttackLog

__all__ = ["ExceptionStorm", "FreezeResponses", "ReplayOldResponses"]


_READS = frozenset({mb.READ_COILS, mb.READ_DISCRETE_INPUTS, mb.READ_HOLDING_REGISTERS, mb.READ_INPUT_REGISTERS})


class _Tamper:
    """Base of the ``polling.ResponseTamper`` implementations: an active period and the log of forged frames."""

    def __init__(self, log: AttackLog, at_ns: int, duration_s: float) -> None:
        self.log, self.at_ns, self.end_ns = log, at_ns, at_ns + int(duration_s * 1e9)
        self.forged = 0  # responses replaced

    def active(self, t: int) -> bool:
        return self.at_ns <= t < self.end_ns

    def mark(self, frame: Frame) -> None:
        self.log.mark(frame)


class ReplayOldResponses(_Tamper):
    """A man in the middle replays read responses it recorded earlier to the HMI (it answers the real requests,
    transaction ids and all, with old data).

    While recording (``record_from_ns`` to ``record_to_ns``, in the learning part), it keeps every successful read
    response per request (unit, function code, address, quantity); while active, each such request of the HMI gets
    the next recorded response for it, in the recorded order (cycling if the replay outlasts the recording).
    Exceptions from the PLC and requests it never recorded pass through. Same length as the real answers, so
    nothing else in the capture changes.
    """

    def __init__(self, log: AttackLog, record_from_ns: int, record_to_ns: int, at_ns: int,
                 duration_s: float = 60.0) -> None:
        super().__init__(log, at_ns, duration_s)
        self.record_from_ns, self.record_to_ns = record_from_ns, record_to_ns
        self.recorded: dict[tuple[int, int, int, int], list[bytes]] = {}
        self._played: dict[tuple[int, int, int, int], int] = {}

    def response(self, t: int, unit: int, fc: int, address: int, quantity: int, response: bytes,
                 exception_code: int) -> tuple[bytes, int] | None:
        if exception_code or fc not in _READS:
            return None
        key = (unit, fc, address, quantity)
        if self.record_from_ns <= t < self.record_to_ns:
            self.recorded.setdefault(key, []).append(response)
        elif self.active(t) and key in self.recorded:
            old = self.recorded[key]
            i = self._played.get(key, 0)
            self._played[key] = i + 1
            self.forged += 1
            return old[i % len(old)], 0
        return None


class FreezeResponses(_Tamper):
    """A man in the middle freezes what the HMI sees: every read gets the last real answer from before ``at_ns``.

    It watches the HMI's reads (per unit, function code, address, quantity) and, while active, answers each with
    the last response it forwarded before the attack, so the process values on the operator's screen stop
    moving while the real ones keep changing. Exceptions from the PLC pass through.
    """

    def __init__(self, log: AttackLog, at_ns: int, duration_s: float = 120.0) -> None:
        super().__init__(log, at_ns, duration_s)
        self.last: dict[tuple[int, int, int, int], bytes] = {}

    def response(self, t: int, unit: int, fc: int, address: int, quantity: int, response: bytes,
                 exception_code: int) -> tuple[bytes, int] | None:
        if exception_code or fc not in _READS:
            return None
        key = (unit, fc, address, quantity)
        if t < self.at_ns:
            self.last[key] = response
        elif self.active(t) and key in self.last:
            self.forged += 1
            return self.last[key], 0
        return None


class ExceptionStorm(_Tamper):
    """The PLC answers most reads with SERVER_DEVICE_FAILURE (4) or SERVER_DEVICE_BUSY (6) for a while.

    A device fault, or the visible side effect of an attack on the device (an overloaded or tampered CPU): for
    every client (the HMI and the historian). ``rate`` of the reads fail, ramping up over the first seconds.
    """

    def __init__(self, log: AttackLog, rng: random.Random, at_ns: int, duration_s: float = 60.0,
                 rate: float = 0.8) -> None:
        super().__init__(log, at_ns, duration_s)
        self.rng, self.rate = rng, rate

    def response(self, t: int, unit: int, fc: int, address: int, quantity: int, response: bytes,
                 exception_code: int) -> tuple[bytes, int] | None:
        if not self.active(t) or fc not in _READS:
            return None
        ramp = min(1.0, (t - self.at_ns) / 5e9 + 0.2)
        if self.rng.random() >= self.rate * ramp:
            return None
        code = mb.SERVER_DEVICE_FAILURE if self.rng.random() < 0.6 else mb.SERVER_DEVICE_BUSY
        self.forged += 1
        return mb.exception_response(fc, code), code
