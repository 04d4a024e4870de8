"""``otsentry collect``: decode a live interface (or a capture) as a long-running collector."""

from __future__ import annotations

import click


@click.group()
def collect() -> None:
    """Run the collector on a live interface or a capture file."""
