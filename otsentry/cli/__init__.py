"""Command-line interface: thin click commands over library code.

User errors (bad files, bad options, missing privileges) are one-line messages with exit code 2, never tracebacks.
Every option can also come from an environment variable ``OTSENTRY_<COMMAND>_<OPTION>``.
"""

from __future__ import annotations

import importlib
import logging

import click

from otsentry import __version__

__all__ = ["COMMANDS", "main"]

# Subcommand name -> "module:attribute", in the order --help lists them. A command's module (and what it pulls in:
# numpy, the detectors, the Kafka client) is imported only when that command runs, so `otsentry inspect` does not
# pay for `otsentry replay`'s imports.
COMMANDS = {
    "inspect": "otsentry.cli.inspect:inspect_cmd",
    "collect": "otsentry.cli.collect:collect",
    "train": "otsentry.cli.batch:train_cmd",
    "run": "otsentry.cli.batch:run_cmd",
    "evaluate": "otsentry.cli.batch:evaluate_cmd",
    "assets": "otsentry.cli.assets:assets_cmd",
    "baseline": "otsentry.cli.baseline:baseline",
    "pcap": "otsentry.cli.pcap:pcap",
    "detect": "otsentry.cli.detect:detect_cmd",
    "correlate": "otsentry.cli.correlate:correlate_cmd",
    "index": "otsentry.cli.index:index_cmd",
    "replay": "otsentry.cli.replay:replay",
    "alerts": "otsentry.cli.alerts:alerts",
    "kibana": "otsentry.cli.kibana:kibana",
}


class _Main(click.Group):
    """The root group: subcommands imported on first use; every ``OtsentryError`` that reaches it (a bad capture,
    config or model, a service that refused) ends as one line, ``Error: ...``, exit 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS) + [name for name in super().list_commands(ctx) if name not in COMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        if command.name != cmd_name:  # a renamed command would be listed under one name and run under another
            raise RuntimeError(f"otsentry.cli.COMMANDS: {cmd_name!r} points to the command {command.name!r}")
        return command

    def invoke(self, ctx: click.Context):
        from otsentry.cli.common import UserError
        from otsentry.errors import OtsentryError

        try:
            return super().invoke(ctx)
        except OtsentryError as exc:  # the one place library errors become one-line CLI errors
            raise UserError(str(exc)) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "OTSENTRY"})
@click.version_option(__version__, prog_name="otsentry")
def main() -> None:
    """otsentry: passive security monitoring for Modbus/TCP industrial networks.

    \b
    Start with:
      otsentry inspect CAPTURE.pcap            what talks Modbus in a capture
      otsentry inspect --summary CAPTURE.pcap  counts as one JSON object
      otsentry collect live --iface eth1       decode a mirror port live
      otsentry train good.pcap -o plant.otsb   learn how the plant normally talks
      otsentry run new.pcap --model plant.otsb alerts, explained, folded into incidents
      otsentry assets CAPTURE.pcap             the hosts: roles, vendors, device identity
      otsentry detect --kafka HOST:9092 --model plant.otsb   a detector worker over Kafka
      otsentry replay list                     attack scenarios with ground truth, to replay and score
      otsentry alerts search --es URL --since 1h   triage alerts indexed in Elasticsearch
      otsentry kibana import --kibana URL      the SOC dashboard into Kibana
    """


logging.basicConfig(level=logging.WARNING, format="otsentry: %(levelname)s: %(message)s")

