"""``otsentry assets``: the asset inventory of captures, or the one a model bundle learned."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from otsentry.cli.alerts import ES_HELP
from otsentry.cli.common import UserError, collector_config, collector_options

__all__ = ["assets_cmd"]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _table(assets, known: set[str] | None) -> None:
    out = sys.stdout
    out.write(f"{'ip':15} {'mac':17} {'vendor':24} {'roles':32} {'units':8} {'first seen (UTC)':19}  identity\n")
    for a in assets:
        roles = ", ".join(r for r, _ in a.roles)
        if known is not None and a.ip not in known:
            roles = "NEW " + roles
        units = ",".join(str(u) for u in a.unit_ids[:4]) + ("..." if len(a.unit_ids) > 4 else "") or "-"
        identity = " ".join(v for _, v in a.identity[:3]) or "-"
        out.write(f"{a.ip:15} {a.mac or '-':17} {(a.vendor or '-')[:24]:24} {roles[:32]:32} {units:8} "
                  f"{_when(a.first_seen):19}  {identity}\n")
        for role, evidence in a.roles:
            out.write(f"{'':15}   {role}: {evidence}\n")


@click.command("assets")
@click.argument("captures", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A bundle from `otsentry train`: without CAPTURES, show the inventory it learned; with them, mark "
                   "hosts it never saw as NEW.")
@click.option("--json", "as_json", is_flag=True, help="One JSON record per host (otsentry.records.Asset).")
@click.option("--variables", is_flag=True,
              help="The process variables instead: per server, unit and register, the learned range, typical change "
                   "per poll, polling period and last value; with --model and CAPTURES, registers read far outside "
                   "the learned range (as policy.process_value_out_of_range judges) are marked OUT, unseen ones NEW.")
@click.option("--es", "es_url", default=None, metavar="URL",
              help="Also index the inventory (with --variables: the variables, into otsentry-variables). " + ES_HELP)
@click.option("--es-index", "es_prefix", default="otsentry-assets", show_default=True,
              help="Alias and daily-index prefix for --es; a host's document is replaced as it changes.")
@collector_options
def assets_cmd(captures, model, as_json, variables, es_url, es_prefix, config_path, ports, pairing_timeout) -> None:
    """The hosts of CAPTURES: IP, MAC and its vendor (Wireshark's manuf database), roles (plc, gateway, hmi,
    historian, engineering_workstation, other) each with its evidence, unit ids, function codes served and used,
    services, peers, first and last seen, and what the device said of itself (FC 43/14 read device identification).
    """
    from otsentry.assets import inventory_from_captures

    if not captures and model is None:
        raise UserError("give capture files, or --model MODEL to show the inventory a bundle learned")
    bundle = None
    if model is not None:
        from otsentry.cli.batch import load_bundle

        bundle = load_bundle(model)
    if variables:
        rows = _variables(captures, bundle, model, as_json, collector_config(config_path, ports, pairing_timeout))
        if es_url:
            from otsentry.alerts.ecs import variable_to_ecs
            from otsentry.alerts.elastic_template import VARIABLE_MAPPINGS, VARIABLE_PREFIX

            prefix = VARIABLE_PREFIX if es_prefix == "otsentry-assets" else es_prefix
            click.echo("otsentry: variables" + _index([variable_to_ecs(v) for v in rows], es_url, prefix,
                                                      VARIABLE_MAPPINGS), err=True)
        return
    if captures:
        assets = inventory_from_captures(list(captures), collector_config(config_path, ports, pairing_timeout))
    else:
        assets = list(bundle.assets)
        if not assets:
            raise UserError(f"{model}: this bundle holds no asset inventory (trained before otsentry learned one): "
                            "retrain with otsentry train")
    known = {a.ip for a in bundle.assets} if bundle is not None and captures else None
    if as_json:
        for a in assets:
            d = a.to_dict()
            if known is not None:
                d["new"] = a.ip not in known
            sys.stdout.write(json.dumps(d, sort_keys=True) + "\n")
    else:
        _table(assets, known)
    summary = f"otsentry: {len(assets)} hosts"
    if known is not None:
        summary += f", {sum(1 for a in assets if a.ip not in known)} not in {model}"
    if es_url:
        from otsentry.alerts.ecs import asset_to_ecs
        from otsentry.alerts.elastic_template import ASSET_MAPPINGS

        summary += _index([asset_to_ecs(a) for a in assets], es_url, es_prefix, ASSET_MAPPINGS)
    click.echo(summary, err=True)


def _index(docs: list[dict], url: str, prefix: str, mappings: dict) -> str:
    """Index (replacing) ECS documents under ``prefix`` with their template; the summary's tail."""
    from otsentry.alerts.elastic import ElasticError, ElasticSink
    from otsentry.cli.alerts import es_client

    client, config = es_client(url)
    sink = ElasticSink(client, prefix, display_url=config.url, mappings=mappings, replace=True)
    try:
        for doc in docs:
            sink.write_document(doc)
        sink.close()
    except ElasticError as exc:
        raise UserError(f"{exc} (documents kept in {sink.spool_path})") from None
    pending = sink.pending_in_spool()
    return f"; {config.url}: {sink.stats.indexed} indexed" + (f", {pending} waiting in {sink.spool_path}"
                                                               if pending else "")


def _variables(captures, bundle, model, as_json: bool, config) -> list:
    from otsentry.assets import inventory_from_captures
    from otsentry.assets.variables import VariableBook

    learned = {v.key: v for v in bundle.variables} if bundle is not None else {}
    if captures:
        book = VariableBook()
        inventory_from_captures(list(captures), config, variables=book)
        rows = book.variables()
    else:
        rows = list(bundle.variables)
        if not rows:
            raise UserError(f"{model}: this bundle holds no process variables (trained before otsentry learned "
                            "them): retrain with otsentry train")
    compare = bool(captures) and bundle is not None
    out_of_range = 0
    if not as_json:
        sys.stdout.write(f"{'server':15} {'unit':>4} {'table':16} {'address':>7} {'reads':>6} {'range':>17} "
                         f"{'change/poll':>11} {'period':>8} {'last':>8}\n")
    for v in rows:
        ref = learned.get(v.key)
        flag = ""
        if compare:
            flag = "NEW" if ref is None else ("OUT" if _outside(v, ref) else "")
            out_of_range += flag == "OUT"
        if as_json:
            d = v.to_dict()
            if compare:
                d["status"] = flag.lower() or "within"
                if ref is not None:
                    d["learned_low"], d["learned_high"] = ref.low, ref.high
            sys.stdout.write(json.dumps(d, sort_keys=True) + "\n")
            continue
        rng = f"{v.low:g}-{v.high:g}" if v.low != v.high else f"{v.low:g}"
        learned_text = f" (learned {ref.low:g}-{ref.high:g})" if flag == "OUT" and ref is not None else ""
        if v.counter or v.written:
            flag = (flag + (" counter" if v.counter else " setpoint")).strip()
        sys.stdout.write(f"{v.server:15} {v.unit:>4} {v.table:16} {v.address:>7} {v.reads:>6} {rng:>17} "
                         f"{v.typical_change:>11g} {v.period_s:>7.2f}s {v.last_value:>8g} {flag}{learned_text}\n")
    summary = f"otsentry: {len(rows)} process variables"
    if compare:
        summary += f", {out_of_range} read outside their learned range"
    click.echo(summary, err=True)
    return rows


def _outside(seen, learned) -> bool:
    """What ``policy.process_value_out_of_range`` would call far outside (registers that are not counters)."""
    from otsentry.detectors.variables import TABLE_CODES, allowed_range

    if learned.table not in TABLE_CODES or learned.counter or learned.written:
        return False
    lo, hi = allowed_range(learned)
    return seen.low < lo or seen.high > hi
