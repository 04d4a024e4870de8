"""``otsentry baseline accept`` and ``baseline show``: an analyst's "this was a legitimate change", with its audit
trail."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import click

from otsentry.cli.common import UserError

__all__ = ["MODEL", "accept_cmd", "baseline", "read_alerts", "show_cmd"]

MODEL = click.option("--model", "-m", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="The bundle the alerts were raised with.")


@click.group("baseline")
def baseline() -> None:
    """Teach the baseline what analysts accepted as legitimate, and show what it holds."""


def read_alerts(path: Path) -> list:
    """The alerts of an ECS JSONL file (``run --alerts-out``, a Kibana export); a bad line is a one-line error."""
    from otsentry.alerts.ecs import alert_from_ecs

    alerts = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UserError(f"{path}: cannot read alerts ({exc.strerror})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            alerts.append(alert_from_ecs(json.loads(line)))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise UserError(f"{path}:{n}: not an otsentry alert document ({type(exc).__name__}: {exc})") from None
    return alerts


@baseline.command("accept")
@MODEL
@click.option("--alerts", "alerts_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="ECS JSON lines the alerts came in (`otsentry run --alerts-out`, or exported from Kibana).")
@click.option("--id", "ids", multiple=True, metavar="ALERT_ID", help="An alert to accept (repeatable).")
@click.option("--incident", default=None, metavar="ID",
              help="Accept the policy alerts of this incident (anomaly and sensor alerts in it are listed, not taken).")
@click.option("--reason", required=True, help="Why this is legitimate: kept in the audit trail.")
@click.option("--by", default=None, help="Who accepts (default: the login name).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the new bundle (the old one is left as it is).")
def accept_cmd(model, alerts_path, ids, incident, reason, by, output) -> None:
    """Write a new bundle in which exactly what the chosen alerts reported is allowed (the talker, the pair, the
    function code, the service, the address or value range, the count), with an audit entry in its manifest.

    Running the same traffic with the new bundle no longer raises those alerts and still raises every other one.
    Anomaly-model alerts cannot be accepted (retrain on traffic that holds the change), nor sensor alerts.
    """
    from otsentry.cli.batch import load_bundle
    from otsentry.detectors.acceptance import ACCEPTABLE_RULES, NotAcceptable

    if bool(ids) == bool(incident):
        raise UserError("give --id ALERT_ID (one or more) or --incident ID")
    alerts = read_alerts(alerts_path)
    if ids:
        by_id = {a.id: a for a in alerts}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise UserError(f"{alerts_path}: no alert with id {', '.join(missing)}")
        chosen = [by_id[i] for i in dict.fromkeys(ids)]
        skipped = []
    else:
        members = [a for a in alerts if a.incident_id == incident]
        if not members:
            raise UserError(f"{alerts_path}: no alert of incident {incident}")
        acceptable = ACCEPTABLE_RULES | {"policy.process_value_out_of_range"}
        chosen = [a for a in members if a.rule_id in acceptable]
        skipped = [a for a in members if a.rule_id not in acceptable]
        if not chosen:
            raise UserError(f"incident {incident} holds no policy alert that can be accepted")
    bundle = load_bundle(model)
    try:
        new = bundle.with_accepted(chosen, reason, by or getpass.getuser(), incident or "")
    except (NotAcceptable, ValueError) as exc:
        raise UserError(str(exc)) from None
    path = new.save(output)
    click.echo(f"accepted {len(chosen)} alert(s) ({', '.join(f'{n} {r}' for r, n in new.audit[-1]['rules'].items())})"
               f"; new bundle {path}")
    if skipped:
        click.echo(f"not accepted: {len(skipped)} alert(s) no policy fact can allow "
                   f"({', '.join(sorted({a.rule_id for a in skipped}))}): retrain to learn them", err=True)


@baseline.command("show")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The training facts and the audit trail as one JSON object.")
def show_cmd(model, as_json) -> None:
    """What a bundle learned from, and every acceptance since (when, who, why, which alerts)."""
    from otsentry.cli.batch import load_bundle

    bundle = load_bundle(model)
    accepted = bundle.policy.accepted_.to_state() if hasattr(bundle.policy, "accepted_") else []
    if as_json:
        click.echo(json.dumps({"training": {"windows": bundle.training.windows, "pairs": bundle.training.pairs,
                                            "duration_s": bundle.training.duration_s,
                                            "captures": list(bundle.training.captures)},
                               "created": bundle.created, "assets": len(bundle.assets),
                               "audit": [dict(e) for e in bundle.audit], "accepted_facts": accepted},
                              sort_keys=True))
        return
    t = bundle.training
    click.echo(f"{model}: learned {bundle.created} from {t.windows} windows ({t.duration_s / 60:.1f} min, "
               f"{', '.join(t.captures) or 'no capture named'}); {len(bundle.assets)} assets")
    if not bundle.audit:
        click.echo("no acceptance since training")
    for entry in bundle.audit:
        rules = ", ".join(f"{n} {r}" for r, n in entry.get("rules", {}).items())
        scope = f" (incident {entry['incident']})" if entry.get("incident") else ""
        click.echo(f"{entry['accepted_at']} by {entry['by']}: {rules}{scope}: {entry['reason']}")
        for alert_id in entry.get("alerts", ()):
            click.echo(f"    {alert_id}")
    click.echo(f"{len(accepted)} accepted fact(s)")
