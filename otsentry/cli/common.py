"""Shared CLI plumbing: user errors as one line, exit code 2."""

from __future__ import annotations

import click


class UserError(click.ClickException):
    """A problem the user can fix; printed as ``Error: ...`` with exit code 2."""

    exit_code = 2


def parse_ports(value: str) -> frozenset[int]:
    try:
        ports = frozenset(int(p) for p in value.split(",") if p.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated port numbers, e.g. 502,5020") from None
    if not ports or any(not 0 < p < 65536 for p in ports):
        raise click.BadParameter(f"{value!r}: ports must be between 1 and 65535")
    return ports
