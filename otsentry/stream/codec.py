"""What travels on the topics: JSON records with ``schema_version``, their keys, and watermark records.

``otsentry.features`` carries FeatureWindows (``FeatureWindow.to_dict``), keyed by asset pair so that one pair's
windows stay in order on one partition, and *watermark* records: after each group of windows it publishes, a
collector tells every partition "I will send no more windows ending at or before T" (``final`` when it is done).
A detector worker uses them to score windows in event-time order across partitions; without them the policy
baseline's rate limiting (a new talker seen in a pair window and a flow window of the same 10 s) would depend on
which partition the consumer happened to read first, and the alerts would differ from the in-process run.

``otsentry.alerts`` carries Alerts (``Alert.to_dict``), keyed by alert id. Anything a reader cannot decode raises
``MalformedRecord`` with a one-line reason; the worker counts, logs and dead-letters it instead of crashing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from otsentry.errors import InputError
from otsentry.records import RECORD_SCHEMA_VERSION, Alert, FeatureWindow, Incident, SchemaError

__all__ = ["MalformedRecord", "WATERMARK", "Watermark", "decode_alert", "decode_feature_record", "decode_incident",
    "encode_alert", "encode_incident", "encode_watermark", "encode_window"]

WATERMARK = "watermark"


class MalformedRecord(InputError, ValueError):
    """A record that this version cannot read (not JSON, unknown schema version, missing fields...)."""


@dataclass(frozen=True, slots=True)
class Watermark:
    """From ``source``: no more windows ending at or before ``watermark``; ``final``: no more windows at all."""

    source: str
    watermark: float
    final: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"record": WATERMARK, "schema_version": RECORD_SCHEMA_VERSION, "source": self.source,
                "watermark": self.watermark, "final": self.final}


def _dumps(d: dict[str, Any]) -> bytes:
    return json.dumps(d, separators=(",", ":")).encode()


def encode_window(w: FeatureWindow) -> bytes:
    return _dumps(w.to_dict())


def encode_watermark(m: Watermark) -> bytes:
    return _dumps(m.to_dict())


def encode_alert(a: Alert) -> bytes:
    return _dumps(a.to_dict())


def _load(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise MalformedRecord("empty record (tombstone)")
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedRecord(f"not JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise MalformedRecord(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != RECORD_SCHEMA_VERSION:
        raise MalformedRecord(f"schema_version {version!r} is not supported (this version reads {RECORD_SCHEMA_VERSION})")
    return data


def decode_feature_record(value: bytes | None) -> FeatureWindow | Watermark:
    """A record of the features topic: a FeatureWindow or a Watermark; ``MalformedRecord`` otherwise."""
    data = _load(value)
    kind = data.get("record")
    if kind == WATERMARK:
        try:
            mark = Watermark(str(data["source"]), float(data["watermark"]), bool(data.get("final", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedRecord(f"bad watermark record ({exc!r})") from None
        if not math.isfinite(mark.watermark):
            raise MalformedRecord("bad watermark record (not a finite time)")
        return mark
    if kind != "feature_window":
        raise MalformedRecord(f"not a feature window (record={kind!r})")
    try:
        w = FeatureWindow.from_dict(data)
    except SchemaError as exc:
        raise MalformedRecord(str(exc)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedRecord(f"bad feature window ({type(exc).__name__}: {str(exc)[:80]})") from None
    if w.kind not in ("pair", "flow", "sensor", "ot") or not (isinstance(w.window_start, (int, float))
                                              and isinstance(w.window_end, (int, float))):
        raise MalformedRecord(f"bad feature window (kind {w.kind!r}, window {w.window_start!r})")
    return w


def _decode_record(value: bytes | None, record: str, cls: type) -> Any:
    """A record of kind ``record`` read with ``cls.from_dict``; ``MalformedRecord`` if it cannot be read."""
    data = _load(value)
    if data.get("record") != record:
        raise MalformedRecord(f"not an {record} (record={data.get('record')!r})")
    try:
        return cls.from_dict(data)
    except (SchemaError, KeyError, TypeError, ValueError) as exc:
        raise MalformedRecord(f"bad {record} ({type(exc).__name__}: {str(exc)[:80]})") from None


def decode_alert(value: bytes | None) -> Alert:
    """An alert record; ``MalformedRecord`` if it cannot be read."""
    return _decode_record(value, "alert", Alert)


def encode_incident(i: Incident) -> bytes:
    return _dumps(i.to_dict())


def decode_incident(value: bytes | None) -> Incident:
    """An incident record (``otsentry.incidents``); ``MalformedRecord`` if it cannot be read."""
    return _decode_record(value, "incident", Incident)
