"""Command-line interface (placeholder, grows below)."""

import click

from otsentry import __version__


@click.group()
@click.version_option(__version__, prog_name="otsentry")
def main() -> None:
    """otsentry: passive security monitoring for Modbus/TCP networks."""
