"""``otsentry inspect``: decode captures into Modbus transactions and flows."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import click

from otsentry.cli.common import collector_config, collector_options
from otsentry.cli.output import BatchPrinter, ZeekLogs
from otsentry.collectors.collector import CollectorStats, summary as summary_of
from otsentry.collectors.source import decode_capture

__all__ = ["inspect_cmd"]


@click.command("inspect")
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "fmt", flag_value="json", help="One ModbusEvent or FlowEvent per line (JSON).")
@click.option("--zeek", "fmt", flag_value="zeek", help="Zeek-compatible modbus.log (TSV), one row per ADU.")
@click.option("--table", "fmt", flag_value="table", default=True, help="A readable table (the default).")
@click.option("--zeek-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write Zeek logs into this directory: modbus.log, dnp3.log (one row per DNP3 reply, as Zeek) and "
                   "ICSNPP's logs: dnp3_control, dnp3_objects, enip, cip, cip_identity, cip_io, cotp, s7comm, "
                   "s7comm_read_szl, s7comm_upload_download, s7comm_known_devices and s7comm_plus.")
@click.option("--summary", is_flag=True, help="Only print counts, as one JSON object (fastest).")
@click.option("--decoder", type=click.Choice(["native", "tshark"]), default="native", show_default=True,
              help="native: otsentry's own decoder; tshark: Wireshark's dissectors, for cross-checks (Modbus from "
                   "tshark -T json, about 4,000 ADUs/s; DNP3, IEC 104, S7comm and EtherNet/IP from tshark -T ek).")
@collector_options
@click.option("--no-flows", is_flag=True, help="Leave non-Modbus flows out of --json and the table.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when it is a terminal).")
def inspect_cmd(captures, fmt, zeek_dir, summary, decoder, config_path, ports, pairing_timeout, no_flows,
                progress) -> None:
    """Decode CAPTURES (pcap or pcapng) into Modbus/TCP transactions and connection flows.

    Each transaction pairs a request with its response (latency, values read or written); requests without a
    response, responses without a request and malformed framing are flagged. Several captures are decoded one
    after the other; --summary adds their counts.
    """
    config = collector_config(config_path, ports, pairing_timeout)
    show_progress = sys.stderr.isatty() if progress is None else progress
    total = CollectorStats()
    printer = None if summary else BatchPrinter(sys.stdout, fmt, no_flows)
    logs = ZeekLogs(zeek_dir) if zeek_dir is not None else None
    if logs is not None:
        config = replace(config, keep_messages=True)
    try:
        for path in captures:
            run = decode_capture(path, config, decoder=decoder, progress=show_progress)
            for batch in run:
                if printer is not None:
                    printer.write(batch, run.conns)
                if logs is not None:
                    logs.write(batch, run.conns)
            total.add(run.stats)
            for warning in run.stats.warnings:
                click.echo(f"warning: {path}: {warning}", err=True)
    except BrokenPipeError:
        sys.stderr.close()
        return
    if printer is not None:
        printer.close()
    if logs is not None:
        logs.close()
    if summary:
        click.echo(json.dumps(summary_of(total, len(captures))))
