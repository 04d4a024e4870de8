"""Command-line interface: thin click commands over library code.

User errors (bad files, bad options, missing privileges) are one-line messages with exit code 2, never tracebacks.
Every option can also come from an environment variable ``OTSENTRY_<COMMAND>_<OPTION>``.
"""

from __future__ import annotations

import logging

import click

from otsentry import __version__
from otsentry.cli.alerts import alerts
from otsentry.cli.collect import collect
from otsentry.cli.common import UserError
from otsentry.cli.detect import evaluate_cmd, run_cmd, train_cmd
from otsentry.cli.index import index_cmd
from otsentry.cli.inspect import inspect_cmd
from otsentry.cli.kibana import kibana
from otsentry.cli.replay import replay
from otsentry.cli.stream import detect_cmd


class _Main(click.Group):
    """The root group: errors retrying cannot fix, raised deep in a daemon, end as one line (exit 2)."""

    def invoke(self, ctx: click.Context):
        from otsentry.stream.transport import AuthenticationFailed

        try:
            return super().invoke(ctx)
        except AuthenticationFailed as exc:
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
      otsentry run new.pcap --model plant.otsb alerts, explained
      otsentry detect --kafka HOST:9092 --model plant.otsb   a detector worker over Kafka
      otsentry replay list                     attack scenarios with ground truth, to replay and score
      otsentry alerts search --es URL --since 1h   triage alerts indexed in Elasticsearch
      otsentry kibana import --kibana URL      the SOC dashboard into Kibana
    """


logging.basicConfig(level=logging.WARNING, format="otsentry: %(levelname)s: %(message)s")

main.add_command(inspect_cmd)
main.add_command(collect)
main.add_command(train_cmd)
main.add_command(run_cmd)
main.add_command(evaluate_cmd)
main.add_command(detect_cmd)
main.add_command(index_cmd)
main.add_command(replay)
main.add_command(alerts)
main.add_command(kibana)
