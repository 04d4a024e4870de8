"""What the service scripts share: one cache location, one lock per service, and process inspection via /proc."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

__all__ = ["alive", "cache_root", "cmdline", "is_root", "legacy_cache_root", "locked", "rss_mib", "services_dir",
           "tail"]


def is_root() -> bool:
    return os.geteuid() == 0


def _user_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "otsentry"


def cache_root() -> Path:
    """Where downloads and service state live, outside the clone so a fresh clone starts in seconds.

    ``OTSENTRY_CACHE`` if set; as root ``/var/cache/otsentry`` (root's home is private, and Elasticsearch runs as
    its own user that must read the distribution); else ``$XDG_CACHE_HOME/otsentry`` or ``~/.cache/otsentry``.
    """
    env = os.environ.get("OTSENTRY_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    return Path("/var/cache/otsentry") if is_root() else _user_cache()


def legacy_cache_root() -> Path | None:
    """Where releases before the shared ``cache_root`` kept Kafka as root (the user cache), if that differs."""
    if os.environ.get("OTSENTRY_CACHE") or not is_root():
        return None
    return _user_cache()


def services_dir() -> Path:
    return cache_root() / "services"


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """One install/start/stop of service ``name`` at a time on this cache (two `make test` at once must not race)."""
    services_dir().mkdir(parents=True, exist_ok=True)
    with open(services_dir() / f"{name}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def alive(pid: int) -> bool:
    """Running and not a zombie (pids get reused: callers also check the command line)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
