"""Typed configuration: YAML files whose unknown keys are rejected by name, merged with CLI options.

A typo in a config left to a daemon running for months must fail at start, loudly, with the key's name.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Mapping

from otsentry.collectors.collector import CollectorConfig
from otsentry.errors import InputError
from otsentry.stream.runtime.settings import SECRET_ENV, STREAM_SECTIONS, secret_fields

__all__ = ["ConfigError", "SECTIONS", "build_section", "load_config"]


class ConfigError(InputError, ValueError):
    """A config that cannot be used; the message names the file and key."""


SECTIONS: dict[str, type] = {"collector": CollectorConfig, **STREAM_SECTIONS}


def _coerce(section: str, name: str, expected: Any, value: Any) -> Any:
    default = expected
    if isinstance(default, frozenset):
        items = value if isinstance(value, (list, tuple)) else [value]
        try:
            return frozenset(int(v) for v in items)
        except (TypeError, ValueError):
            raise ConfigError(f"{section}.{name}: expected a list of integers, got {value!r}") from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{section}.{name}: expected true or false, got {value!r}")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{section}.{name}: expected a number, got {value!r}")
        return type(default)(value)
    if isinstance(default, str):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{section}.{name}: expected a string, got {value!r}")
        return str(value)
    return value


def build_section(section: str, cls: type, data: Mapping[str, Any] | None) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    assert is_dataclass(cls)
    data = data or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section}: expected a mapping, got {type(data).__name__}")
    defaults = cls()
    secrets = set(secret_fields(cls))
    for key in sorted(secrets & set(data)):
        var = SECRET_ENV.get(key, key.upper())
        raise ConfigError(f"{section}.{key}: secrets are not read from config files; set {var} in the environment")
    known = {f.name for f in fields(cls)} - secrets
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{section}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    kwargs = {k: _coerce(section, k, getattr(defaults, k), v) for k, v in data.items()}
    choices = {f.name: f.metadata.get("choices") for f in fields(cls)}
    for k, v in kwargs.items():
        if choices.get(k) and v not in choices[k]:
            listed = ", ".join(c or "''" for c in choices[k])
            raise ConfigError(f"{section}.{k}: expected one of {listed}, got {v!r}")
    return cls(**kwargs)


def load_config(path: str | Path | None) -> dict[str, Any]:
    """Load a YAML config into typed sections; a missing path gives the defaults."""
    raw: Any = {}
    if path is not None:
        import yaml  # here, not at module level: most commands run without a config file and start faster

        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" at line {where.line + 1}" if where else ""
            raise ConfigError(f"{path}: not valid YAML{line}") from None
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
        unknown = sorted(set(raw) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"{path}: unknown section {unknown[0]!r} (known: {', '.join(SECTIONS)})")
    try:
        return {name: build_section(name, cls, raw.get(name)) for name, cls in SECTIONS.items()}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None
