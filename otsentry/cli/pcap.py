"""``otsentry pcap extract``: the packets behind an alert, as a pcap Wireshark opens."""

from __future__ import annotations

from pathlib import Path

import click

from otsentry.cli.common import UserError, parse_duration

__all__ = ["extract_cmd", "pcap"]


@click.group("pcap")
def pcap() -> None:
    """Work with the captures behind alerts."""


@pcap.command("extract")
@click.option("--alert", "alert_id", required=True, metavar="ID", help="The alert's id (ECS event.id).")
@click.option("--alerts", "alerts_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="ECS JSON lines holding the alert (`otsentry run --alerts-out`).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The pcap to write.")
@click.option("--capture", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The capture to read (default: the one the alert names, otsentry.capture.path).")
@click.option("--pcap-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="For a live alert: the rolling capture of `run --iface ... --pcap-dir`.")
@click.option("--margin", default=None, metavar="DURATION",
              help="Also take this much before and after the alert's window (e.g. 30s; default: the window only).")
def extract_cmd(alert_id, alerts_path, output, capture, pcap_dir, margin) -> None:
    """Write the packets of the alert's window between its two hosts (on its service, for a conversation alert)."""
    from otsentry.cli.baseline import read_alerts
    from otsentry.collectors.extract import extract_packets

    alert = next((a for a in read_alerts(alerts_path) if a.id == alert_id), None)
    if alert is None:
        raise UserError(f"{alerts_path}: no alert with id {alert_id}")
    if not alert.client_ip and not alert.server_ip:
        raise UserError(f"alert {alert_id} ({alert.rule_id}) is about the whole sensor, not a host pair")
    pad = parse_duration(margin) if margin else 0.0
    if pcap_dir is not None:
        from otsentry.collectors.rolling import files_between

        if not pcap_dir.is_dir():
            raise UserError(f"{pcap_dir}: no such directory")
        source = files_between(pcap_dir, alert.window_start - pad, alert.window_end + pad)
        if not source:
            raise UserError(f"{pcap_dir} holds nothing of {alert_id}'s window (deleted by retention, or recorded "
                            "elsewhere)")
    else:
        source = capture or (Path(alert.capture) if alert.capture else None)
        if source is None:
            raise UserError(f"alert {alert_id} names no capture (a live alert?): give --pcap-dir DIR or --capture FILE")
    port = alert.server_port if alert.unit_id < 0 else 0
    try:
        done = extract_packets(source, output, alert.window_start - pad, alert.window_end + pad,
                               alert.client_ip or alert.server_ip, alert.server_ip if alert.client_ip else "", port)
    except ValueError as exc:  # an address the alert document holds that is not one
        raise UserError(f"alert {alert_id}: {exc}") from None
    where = source if isinstance(source, Path) else f"{len(source)} rolling file(s) in {pcap_dir}"
    frames = f" (frames {done.first_frame}-{done.last_frame} of {where})" if done.packets else ""
    click.echo(f"{done.packets} packets written to {output}{frames}"
               + (f"; {done.skipped_links} on another link type left out" if done.skipped_links else ""))
