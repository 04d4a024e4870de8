"""``otsentry kibana export|import``: the shipped data view and SOC dashboard, as NDJSON or straight into Kibana.

Credentials come from environment variables only (OTSENTRY_KIBANA_API_KEY, or OTSENTRY_KIBANA_USER /
OTSENTRY_KIBANA_PASSWORD, falling back to the OTSENTRY_ES_* ones; CA from OTSENTRY_KIBANA_CA or OTSENTRY_ES_CA).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["ASSETS", "INCIDENTS", "PREFIX", "export_cmd", "import_cmd", "kibana"]

PREFIX = click.option("--index", "prefix", default="otsentry-alerts", show_default=True,
                      help="Alias (index prefix) the alerts are indexed under; the data view matches PREFIX-*.")


INCIDENTS = click.option("--incidents-index", "incidents_prefix", default="otsentry-incidents", show_default=True,
                         help="Alias the incidents are indexed under (`run --es-incidents-index`).")
ASSETS = click.option("--assets-index", "assets_prefix", default="otsentry-assets", show_default=True,
                      help="Alias the inventory is indexed under (`assets --es-index`).")


@click.group("kibana")
def kibana() -> None:
    """Kibana saved objects: data views and dashboards for alerts, incidents and assets."""


@kibana.command("export")
@PREFIX
@INCIDENTS
@ASSETS
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the NDJSON here instead of stdout.")
def export_cmd(prefix: str, incidents_prefix: str, assets_prefix: str, output: Path | None) -> None:
    """Write the saved objects as NDJSON (Kibana: Stack Management > Saved objects > Import)."""
    from otsentry.alerts.kibana import soc_objects, to_ndjson

    text = to_ndjson(soc_objects(prefix, incidents_prefix, assets_prefix))
    if output is None:
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    click.echo(f"otsentry: {text.count(chr(10))} saved objects written to {output}", err=True)


@kibana.command("import")
@click.option("--kibana", "kibana_url", required=True, metavar="URL", help="Kibana URL, e.g. http://127.0.0.1:5601.")
@PREFIX
@INCIDENTS
@ASSETS
@click.option("--space", default=None, help="Kibana space id (default: the default space).")
@click.option("--file", "ndjson_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Import this NDJSON instead of the built-in objects (e.g. an edited export).")
def import_cmd(kibana_url: str, prefix: str, incidents_prefix: str, assets_prefix: str, space: str | None,
               ndjson_file: Path | None) -> None:
    """Import (overwrite) the saved objects through Kibana's saved-objects API."""
    from otsentry.alerts.kibana import import_saved_objects, soc_objects, to_ndjson

    text = ndjson_file.read_text() if ndjson_file else to_ndjson(soc_objects(prefix, incidents_prefix, assets_prefix))
    answer = import_saved_objects(kibana_url, text, space=space)
    click.echo(f"otsentry: {answer.get('successCount', 0)} saved objects imported into {kibana_url.rstrip('/')}"
               f"{f' (space {space})' if space else ''}; dashboards: otsentry: Modbus/TCP alerts, otsentry: incidents, "
               "otsentry: assets")
