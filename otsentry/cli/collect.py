"""``otsentry collect``: decode a live interface (or a capture) as a long-running collector."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import click

from otsentry.cli.common import capture_options, collector_config, collector_options, ring_config
from otsentry.cli.inspect import inspect_cmd
from otsentry.cli.output import BatchPrinter
from otsentry.cli.streamopts import (COLLECTOR_SKIP, kafka_requested, setup_logs, stream_options, stream_params,
                                     stream_settings)
from otsentry.collectors.collector import CollectorConfig, summary as summary_of
from otsentry.collectors.live import LiveCapture

__all__ = ["collect", "live_cmd", "pcap_cmd", "publish"]


@click.group()
def collect() -> None:
    """Run the collector on a live interface or a capture file."""


@collect.command("live")
@click.option("--iface", "-i", required=True, help="Interface to capture on (e.g. the SPAN/mirror port).")
@click.option("--filter", "bpf", default=None, metavar="BPF",
              help="BPF capture filter. Default: TCP on the --ports and on the DNP3, IEC 104, S7 and EtherNet/IP "
                   "ports, UDP on DNP3's and EtherNet/IP's. '' captures everything, so other flows on the segment "
                   "are reported too.")
@collector_options
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after this many packets.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop after this many seconds.")
@click.option("--json", "fmt", flag_value="json", default=True, help="One ModbusEvent or FlowEvent per line (default).")
@click.option("--table", "fmt", flag_value="table", help="A readable table.")
@click.option("--summary", is_flag=True,
              help="Print nothing while capturing; when stopped, the counts as one JSON object (inspect --summary's, "
                   "plus kernel_drops and interface_drops).")
@click.option("--no-flows", is_flag=True, help="Leave connection flows out of the output.")
@capture_options
@stream_options(skip=COLLECTOR_SKIP)
def live_cmd(iface, bpf, config_path, ports, count, duration, fmt, summary, pairing_timeout, no_flows, ring_mb,
             snaplen, fanout_group, fanout_workers, capture_user, **kwargs) -> None:
    """Capture IFACE and print Modbus/TCP transactions and flows as they are decoded.

    Runs until Ctrl-C or SIGTERM (or --count / --duration): the transactions still pending are then flushed and
    printed. Output is flushed after every batch (at most about half a second late), so it can be piped into jq.
    Needs CAP_NET_RAW (root, setcap on the Python binary, or AmbientCapabilities in the systemd unit); --user
    drops root once the capture ring is open. Packets come through the kernel's memory-mapped ring (TPACKET_V3);
    packets it had no room for are counted as kernel drops, reported at the end and as sensor.packet_loss.
    For a port too busy for one process, run N collectors with the same --fanout-group and --fanout-workers N:
    the kernel splits the traffic by address pair, so every asset pair's windows stay in one worker.

    With --kafka BOOTSTRAP (or kafka.bootstrap in --config, or OTSENTRY_KAFKA_BOOTSTRAP), FeatureWindows are
    published to the otsentry.features topic instead of printing events: the collector daemon.
    """
    config = collector_config(config_path, ports, pairing_timeout)
    ring = ring_config(ring_mb, snaplen, fanout_group, fanout_workers, capture_user)
    params = stream_params(kwargs)
    if kafka_requested(config_path, params):
        publish(None, config, config_path, params, iface=iface, bpf=bpf, count=count, duration_s=duration, ring=ring)
        return
    capture = LiveCapture(iface, config, bpf=bpf, count=count, duration_s=duration, ring=ring)
    printer = None if summary else BatchPrinter(sys.stdout, fmt, no_flows, flush=True)
    try:
        with capture:
            click.echo(f"otsentry: capturing on {iface} (filter: {capture.bpf or 'none'}); Ctrl-C to stop", err=True)
            for batch in capture:
                if printer is not None:
                    printer.write(batch, capture.conns)
        if printer is not None:
            printer.close()
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        sys.stderr.close()
        return
    s = capture.stats
    for warning in s.warnings:
        click.echo(f"warning: {iface}: {warning}", err=True)
    if summary:
        click.echo(json.dumps({**summary_of(s, 1), "kernel_drops": capture.kernel_drops,
                               "interface_drops": capture.interface_drops}))
    click.echo(f"otsentry: {iface}: {capture.captured} packets, {s.transactions} Modbus transactions, "
               f"{s.flows} flows, {capture.kernel_drops} kernel drops, {capture.interface_drops} interface drops "
               f"({capture.stop_reason or 'end'})", err=True)


@collect.command("pcap")
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@collector_options
@click.option("--no-flows", is_flag=True, help="Leave connection flows out of the output.")
@stream_options(skip=COLLECTOR_SKIP)
@click.pass_context
def pcap_cmd(ctx: click.Context, captures, config_path, ports, pairing_timeout, no_flows, **kwargs) -> None:
    """Run the collector over capture files, printing events as JSON lines (as ``inspect --json`` does).

    With --kafka BOOTSTRAP (or kafka.bootstrap in --config, or OTSENTRY_KAFKA_BOOTSTRAP), the captures' FeatureWindows
    are published to the otsentry.features topic instead (the same decoding and windows as `otsentry run`), for
    `otsentry detect --kafka` workers to score.
    """
    params = stream_params(kwargs)
    if kafka_requested(config_path, params):
        publish(list(captures), collector_config(config_path, ports, pairing_timeout), config_path, params)
        return
    ctx.invoke(inspect_cmd, captures=captures, fmt="json", summary=False, decoder="native", config_path=config_path, ports=ports,
               pairing_timeout=pairing_timeout, no_flows=no_flows, progress=False)


def publish(captures: Sequence[Path] | None, config: CollectorConfig, config_path: Path | None,
            params: dict[str, Any], **live: Any) -> None:
    """The ``--kafka`` mode of ``collect pcap`` (``captures``) and ``collect live`` (``live['iface']``)."""
    from otsentry.stream.publish import run_collector

    settings = stream_settings(config_path, params)
    setup_logs(settings)
    stats, _ = run_collector(captures, settings, config, **live)
    if not stats.finished and stats.stop_reason not in ("SIGTERM", "SIGINT", "stopped"):
        raise SystemExit(1)
