"""Helpers tests import (conftest.py holds only fixtures and hooks): paths, the public captures, tools, ports."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

__all__ = ["IN_CI", "ROOT", "SHARED", "SHARED_ICS_PCAPS", "SHARED_PCAPS", "capture_params", "free_port",
    "require_tool", "shared_ics_pcaps", "shared_pcaps"]

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SHARED_PCAPS = SHARED / "data" / "pcaps"
SHARED_ICS_PCAPS = SHARED / "data" / "pcaps-ics" / "pcaps"
IN_CI = os.environ.get("CI") == "true"


def free_port() -> int:
    """A TCP port nothing listens on right now (for a daemon's metrics endpoint)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_pcaps() -> list[Path]:
    """Every public capture beside the clone (``../shared/data/pcaps``); CI must have them."""
    files = sorted(SHARED_PCAPS.glob("*.pcap*"))
    if not files and IN_CI:
        raise RuntimeError(f"no captures in {SHARED_PCAPS}: CI needs ../shared beside the clone")
    return files


def shared_ics_pcaps() -> list[Path]:
    """The public captures of the other OT protocols (``../shared/data/pcaps-ics/pcaps``), pcap and pcapng."""
    files = sorted(p for p in SHARED_ICS_PCAPS.glob("*") if p.suffix in (".pcap", ".pcapng"))
    if not files and IN_CI:
        raise RuntimeError(f"no captures in {SHARED_ICS_PCAPS}: CI needs ../shared beside the clone")
    return files


def capture_params(files: list[Path]) -> list:
    """Parameters of a test over captures: without ../shared (outside CI) one visible skip that says why, not an
    empty set that collects nothing and says nothing."""
    if files:
        return [pytest.param(p, id=p.name) for p in files]
    return [pytest.param(None, id="no-shared-captures",
                         marks=pytest.mark.skip(reason=f"no captures in {SHARED_PCAPS}: put ../shared beside the clone"))]


def require_tool(name: str) -> str:
    """Path of an external tool; a missing tool fails in CI and skips elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path
