"""The policy rules: each looks at one window against the learned allow-lists and says what deviates, and why.

A rule returns at most one ``Finding`` per window. A finding names the *facts* it reports (the new talker, the
(pair, function code), ...): the baseline uses them to rate-limit, so the same fact is not re-reported every
window while a different fact in the same window still is. Rules never see wall-clock time.

Which history a rule judges a window against (the fallbacks are what keeps a 10-minute learning period from
raising false alerts on normal-but-rare traffic):

* the pair's own profile when the pair was seen while learning;
* for a pair never seen, the asset's profile (every client of that server/unit), so a new client is still checked
  for unknown function codes, addresses and values (``new_pair`` already says that the pair is new);
* for a client that wrote to this asset while learning, write-related checks (write codes, write addresses,
  written values) also accept what that client wrote to its other assets (``pool_writes_per_client``): writes are
  rare, so ten minutes holds only a handful per unit, and units behind one gateway share a register map. With
  pooling, a client that wrote to one unit id of a server is a known writer of its other unit ids too.

Rules do not repeat each other: a write by a client that is not a known writer is ``first_write`` alone (its write
codes are not also "new function codes"), FC 8 is only ever ``diagnostics``, and the silence that follows a
listen-only command in the same window is not also ``no_response``.

Response rules (a man in the middle or a failing device shows in the answers, not in who asks what):
``no_response`` (unanswered requests above the learned maximum), ``values_frozen`` (register values that changed in
every learning window stop changing) and ``values_replayed`` (blocks back to an exact earlier state, see
``otsentry.features.values``); ``exception_burst`` also weighs a window's exceptions against the learned exception
rate, so that a slow poller's few answers count.
"""

from __future__ import annotations

import math
from typing import Hashable

from otsentry.collectors.modbus_names import ZEEK_EXCEPTION_CODES
from otsentry.contracts.schema import TRACKED_EXCEPTION_CODES, WRITE_CODES
from otsentry.detectors.policy_findings import (IDENTIFICATION_CODES, WRITE_FAMILIES, Finding, PolicyView, evidence,
                                                fc_label, fc_list, known_writer, names, num, rng, span, write_detail,
                                                write_history, write_margin)
from otsentry.detectors.policy_profiles import (DIAGNOSTICS, MIN_COMPARED, OTHER_FUNCTION_CODE, Range, answered, count,
                                                function_codes, measured_range, write_codes)
from otsentry.records import FeatureEvidence, FeatureWindow

__all__ = ["PAIR_RULES", "address_out_of_range", "diagnostics", "exception_burst", "exception_tail", "first_write",
    "new_function_code", "new_pair", "new_talker_pair", "no_response", "surely_probable", "values_frozen",
    "values_replayed", "write_value_out_of_range"]


def new_talker_pair(b: PolicyView, w: FeatureWindow) -> Finding | None:
    new = [ip for ip in (w.client_ip, w.server_ip) if ip not in b.talkers_]
    if not new:
        return None
    what = f"Modbus requests to {w.server_ip} unit {w.unit_id} ({fc_list(function_codes(w))})"
    if len(new) == 2:
        text = f"{w.client_ip} and {w.server_ip} were never seen on the OT network while learning; the first " \
               f"sends {what}"
    elif new[0] == w.client_ip:
        text = f"{w.client_ip} was never seen on the OT network while learning and now sends {what}"
    else:
        text = (f"{w.server_ip} was never seen on the OT network while learning and now receives Modbus requests "
                f"from {w.client_ip} (unit {w.unit_id}, {fc_list(function_codes(w))})")
    return Finding("policy.new_talker", "high", text, tuple(("policy.new_talker", ip) for ip in new),
                   (evidence("requests", count(w, "requests")),), tuple(sorted(function_codes(w) - {0})))


def new_pair(b: PolicyView, w: FeatureWindow) -> Finding | None:
    if w.pair in b.pairs_:
        return None
    clients = b.clients_.get((w.server_ip, w.unit_id))
    context = (f"only {names(clients)} talked to it while learning" if clients
               else "nobody talked to this unit while learning")
    text = (f"{w.client_ip} sent Modbus requests ({fc_list(function_codes(w))}) to {w.server_ip} unit {w.unit_id}, "
            f"a pair never seen while learning: {context}")
    return Finding("policy.new_pair", "medium", text, (("policy.new_pair", w.pair),),
                   (evidence("requests", count(w, "requests")),), tuple(sorted(function_codes(w) - {0})))


def new_function_code(b: PolicyView, w: FeatureWindow) -> Finding | None:
    pair = b.pairs_.get(w.pair)
    base = pair or b.assets_.get((w.server_ip, w.unit_id))
    if base is None:
        return None  # nothing learned for this unit: new_pair / new_talker say so
    allowed = set(base.function_codes)
    history = write_history(b, w)
    if history is not None:
        allowed |= history.function_codes
        allowed |= {c for family in WRITE_FAMILIES if family & history.function_codes for c in family}
    owned = {DIAGNOSTICS} | (set() if history is not None else set(WRITE_CODES))  # diagnostics / first_write
    new = sorted(function_codes(w) - allowed - owned)
    if not new:
        return None
    scope = "this pair" if pair is not None else f"{w.server_ip} unit {w.unit_id}"
    listed = ", ".join(fc_label(c) for c in new) if len(new) <= 3 else f"{len(new)} function codes ({fc_list(new)})"
    text = (f"{w.client_ip} sent {listed} to {w.server_ip} unit {w.unit_id}, "
            f"never seen for {scope} while learning (learned: {fc_list(base.function_codes)})")
    severe = any(c in WRITE_CODES or c == OTHER_FUNCTION_CODE for c in new)
    ev = tuple(evidence(f"fc_{c}" if c else "fc_other", count(w, f"fc_{c}" if c else "fc_other")) for c in new)
    variant = "identification" if set(new) <= IDENTIFICATION_CODES else ""
    return Finding("policy.new_function_code", "high" if severe else "medium", text,
                   tuple(("policy.new_function_code", w.pair, c) for c in new), ev, tuple(c for c in new if c),
                   variant=variant)


def first_write(b: PolicyView, w: FeatureWindow) -> Finding | None:
    if count(w, "writes") <= 0 or known_writer(b, w):
        return None
    writers = b.writers_.get((w.server_ip, w.unit_id), frozenset())
    head = f"{w.client_ip} wrote to {w.server_ip} unit {w.unit_id} ({write_detail(w)})"
    if w.pair in b.pairs_:
        others = f" (only {names(writers)} wrote to it)" if writers else ", and no client wrote to it"
        text = f"{head} but only read from it while learning{others}"
    else:
        text = f"{head} but {'only ' + names(writers) if writers else 'no client'} wrote to it while learning"
    return Finding("policy.first_write", "high", text, (("policy.first_write", w.pair),),
                   (evidence("writes", count(w, "writes")),), write_codes(w))


def _outside(observed: Range, learned: Range, margin: float) -> bool:
    return observed[0] < learned[0] - margin or observed[1] > learned[1] + margin


def address_out_of_range(b: PolicyView, w: FeatureWindow) -> Finding | None:
    pair = b.pairs_.get(w.pair)
    base = pair or b.assets_.get((w.server_ip, w.unit_id))
    margin = float(b.address_margin)
    seen = measured_range(w, "addr_min", "addr_max", "addr_distinct")
    learned = base.address_range if base is not None else None
    reads_out = seen is not None and learned is not None and _outside(seen, learned, margin)
    history = write_history(b, w)
    wseen = measured_range(w, "write_addr_min", "write_addr_max", "writes")
    wlearned = history.write_address_range if history is not None else None
    wmargin = write_margin(b, w, wlearned) if wlearned is not None else margin
    writes_out = wseen is not None and wlearned is not None and _outside(wseen, wlearned, wmargin)
    if not (reads_out or writes_out):
        return None
    where = f"{w.server_ip} unit {w.unit_id}"
    ev: list[FeatureEvidence] = []
    facts: list[Hashable] = []
    parts: list[str] = []
    if writes_out:
        assert wseen is not None and wlearned is not None
        parts.append(f"{w.client_ip} wrote {span(wseen)} on {where}, outside the learned write range "
                     f"{rng(wlearned)}")
        ev += [evidence("write_addr_min", wseen[0], wlearned, wseen[0] < wlearned[0] - wmargin),
               evidence("write_addr_max", wseen[1], wlearned, wseen[1] > wlearned[1] + wmargin)]
        facts.append(("policy.address_out_of_range", w.pair, "write"))
    if reads_out:
        assert seen is not None and learned is not None
        if writes_out:
            parts.append(f"its requests reached {span(seen)} (learned {rng(learned)})")
        else:
            parts.append(f"{w.client_ip} accessed {span(seen)} on {where}, outside the learned range "
                         f"{rng(learned)}")
        ev += [evidence("addr_min", seen[0], learned, seen[0] < learned[0] - margin),
               evidence("addr_max", seen[1], learned, seen[1] > learned[1] + margin)]
        facts.append(("policy.address_out_of_range", w.pair, "all"))
    codes = write_codes(w) if writes_out and not reads_out else tuple(sorted(function_codes(w) - {0}))
    return Finding("policy.address_out_of_range", "high" if writes_out else "medium", "; ".join(parts),
                   tuple(facts), tuple(ev), codes, variant="write" if writes_out else "")


def write_value_out_of_range(b: PolicyView, w: FeatureWindow) -> Finding | None:
    seen = measured_range(w, "write_value_min", "write_value_max", "writes")
    if seen is None:
        return None
    history = write_history(b, w)
    asset = b.assets_.get((w.server_ip, w.unit_id))
    if history is not None:
        learned, basis = history.write_value_range, f"the values {w.client_ip} wrote"
    else:  # a new writer: judge against everything written to this unit
        learned, basis = (asset.write_value_range if asset else None), "the values written to it"
    if learned is None:
        return None
    margin = max(b.value_margin * (learned[1] - learned[0]), b.value_margin_min)
    if not _outside(seen, learned, margin):
        return None
    pair = b.pairs_.get(w.pair)
    read = (pair or asset).read_value_range if (pair or asset) is not None else None
    context = f"; values read from it: {rng(read)}" if read is not None else ""
    word = "value" if seen[0] == seen[1] else "values"
    text = (f"{w.client_ip} wrote {word} {rng(seen)} to {w.server_ip} unit {w.unit_id} ({write_detail(w)}), "
            f"outside {basis} while learning ({rng(learned)}{context})")
    ev = [evidence("write_value_min", seen[0], learned, seen[0] < learned[0] - margin),
          evidence("write_value_max", seen[1], learned, seen[1] > learned[1] + margin)]
    if read is not None:
        ev += [evidence("value_min", count(w, "value_min"), read, False),
               evidence("value_max", count(w, "value_max"), read, False)]
    return Finding("policy.write_value_out_of_range", "high", text, (("policy.write_value_out_of_range", w.pair),),
                   tuple(ev), write_codes(w))


def exception_tail(exceptions: float, responses: float, rate: float) -> float:
    """P(at least ``exceptions`` exception responses among ``responses``) when each is one with probability ``rate``."""
    k, n = int(exceptions), int(responses)
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    from scipy.special import bdtrc  # lazily: importing SciPy costs ~0.3 s, and most windows never get here

    return float(bdtrc(k - 1, n, rate))


def surely_probable(exceptions: float, responses: float, rate: float, limit: float) -> bool:
    """True when ``exception_tail`` is certainly >= ``limit``: the binomial probability of exactly ``exceptions``
    (a lower bound of the tail) is already above it, with a margin far wider than the rounding of ``lgamma``.

    A cheap pre-check (why: ``exception_tail`` needs SciPy, ~0.3 s to import, and most windows with a few more
    exceptions than learned are nowhere near improbable). False means "compute the tail".
    """
    k, n = int(exceptions), int(responses)
    if not (1 <= k <= n and 0.0 < rate < 1.0 and limit > 0.0):
        return False
    log_pmf = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
               + k * math.log(rate) + (n - k) * math.log1p(-rate))
    return log_pmf > math.log(limit) + 1e-3


def exception_burst(b: PolicyView, w: FeatureWindow) -> Finding | None:
    """Exceptions far above the learned maximum, or above it and improbable at the learned exception rate.

    The second test is what sees a storm at a slow poller: 3 exceptions in 4 answers are below any sensible
    absolute floor, but at a 1 % rate they happen once in 250,000 windows.
    """
    exceptions = count(w, "exceptions")
    base = b.pairs_.get(w.pair) or b.assets_.get((w.server_ip, w.unit_id))
    learned = base.max_count("exceptions") if base is not None else 0.0
    threshold = max(b.exception_burst_factor * learned, learned + b.exception_burst_min)
    responses = answered(w)
    rate = b.exception_rate_floor
    if base is not None and base.total("answered") > 0:
        rate = max(rate, base.total("exceptions") / base.total("answered"))
    # The tail decides (and is reported) only between the learned maximum and the burst threshold, and only when
    # it can be small: elsewhere the verdict is known without it, which spares most runs importing SciPy.
    tail = 1.0
    if learned < exceptions <= threshold and not surely_probable(exceptions, responses, rate, b.exception_tail):
        tail = exception_tail(exceptions, responses, rate)
    improbable = exceptions > learned and tail < b.exception_tail
    if exceptions <= threshold and not improbable:
        return None
    by_code = [(count(w, f"exc_{c}"), ZEEK_EXCEPTION_CODES.get(c, f"exception {c}")) for c in TRACKED_EXCEPTION_CODES]
    by_code.append((count(w, "exc_other"), "other exception codes"))
    top_n, top_name = max(by_code, key=lambda t: t[0])
    mostly = f" (mostly {top_name})" if top_n > 0 else ""
    text = (f"{w.server_ip} unit {w.unit_id} returned {num(exceptions)} exception responses to {w.client_ip} in "
            f"this window{mostly}, above the learned maximum of {num(learned)} per window")
    if exceptions <= threshold:  # only the rate test fired: say why a small count matters
        text += (f"; {num(exceptions)} of {num(responses)} answers, improbable at the learned rate of "
                 f"{rate:.1%} (p = {tail:.1g})")
    low = base.counts.get("exceptions", (0.0, 0.0))[0] if base is not None else 0.0
    return Finding("policy.exception_burst", "medium", text, (("policy.exception_burst", w.pair),),
                   (evidence("exceptions", exceptions, (low, learned)),), tuple(sorted(function_codes(w) - {0})),
                   exceptions, threshold if exceptions > threshold else learned)


def no_response(b: PolicyView, w: FeatureWindow) -> Finding | None:
    """Unanswered requests above the learned maximum, for a good share of the window's requests or many at once.

    A window carrying FC 8 restart or listen-only is left to ``diagnostics`` (silence is what those commands do).
    """
    unanswered, requests = count(w, "unanswered"), count(w, "requests")
    if unanswered <= 0 or count(w, "diag_listen_only") > 0 or count(w, "diag_restart") > 0:
        return None
    base = b.pairs_.get(w.pair) or b.assets_.get((w.server_ip, w.unit_id))
    learned = base.max_count("unanswered") if base is not None else 0.0
    if unanswered <= learned:
        return None
    share = unanswered / max(requests, unanswered)
    if share < b.unanswered_ratio and unanswered < learned + b.unanswered_burst_min:
        return None
    silent = count(w, "responses") == 0
    text = (f"{w.server_ip} unit {w.unit_id} left {num(unanswered)} of {num(requests)} requests from {w.client_ip} "
            f"unanswered in this window (learned maximum {num(learned)} per window"
            f"{'; not one answer' if silent else ''}): the device stopped answering (listen-only mode, a crash, "
            f"overload, or requests dropped on the way)")
    return Finding("policy.no_response", "high", text, (("policy.no_response", w.pair),),
                   (evidence("unanswered", unanswered, (0.0, learned)),
                    evidence("requests", requests, base.counts.get("requests") if base is not None else None, False)),
                   tuple(sorted(function_codes(w) - {0})), unanswered, learned)


def values_frozen(b: PolicyView, w: FeatureWindow) -> Finding | None:
    """Register values of a learned pair that changed in every learning window, (almost) unchanged now.

    Only the pair's own history counts (a historian reading mostly configuration registers changes far less than an
    HMI reading measurements), learned over at least ``frozen_min_windows`` windows comparing enough values.
    """
    pair = b.pairs_.get(w.pair)
    if pair is None or pair.change_rate is None or pair.total("rate_windows") < b.frozen_min_windows:
        return None
    lowest = pair.change_rate[0]
    compared = count(w, "values_compared")
    if lowest <= 0 or compared < MIN_COMPARED:
        return None
    rate = count(w, "value_change_rate")
    limit = b.frozen_rate_factor * lowest
    if rate > limit:
        return None
    changed = round(rate * compared)
    text = (f"{w.server_ip} unit {w.unit_id} answered {w.client_ip}'s reads with values that "
            f"{'did not change at all' if changed == 0 else 'hardly changed'}: {num(changed)} of {num(compared)} "
            f"register values differ from the previous read, while at least {lowest:.0%} changed in every learning "
            f"window (values frozen: a stuck device, or a man in the middle answering with old data)")
    return Finding("policy.values_frozen", "high", text, (("policy.values_frozen", w.pair),),
                   (evidence("value_change_rate", rate, pair.change_rate),
                    evidence("values_compared", compared, None, False)),
                   tuple(sorted(function_codes(w) - {0})), rate, limit)


def values_replayed(b: PolicyView, w: FeatureWindow) -> Finding | None:
    """Reads whose register blocks changed, but back to an exact earlier state, above the learned maximum."""
    replayed = count(w, "replayed_reads")
    if replayed <= 0:
        return None
    base = b.pairs_.get(w.pair) or b.assets_.get((w.server_ip, w.unit_id))
    learned = base.max_count("replayed_reads") if base is not None else 0.0
    threshold = max(2.0 * learned, learned + b.replay_burst_min)
    if replayed <= threshold:
        return None
    text = (f"{num(replayed)} reads by {w.client_ip} from {w.server_ip} unit {w.unit_id} in this window returned "
            f"register blocks that had changed since the previous read yet were identical, value for value, to "
            f"earlier answers (learned maximum {num(learned)} per window): recorded responses played back, as a man "
            f"in the middle hiding the real process does")
    return Finding("policy.values_replayed", "high", text, (("policy.values_replayed", w.pair),),
                   (evidence("replayed_reads", replayed, (0.0, learned)),),
                   tuple(sorted(function_codes(w) - {0})), replayed, threshold)


_DIAG_WORDS = {
    "listen_only": "FC 8 sub-function 4 (force listen-only mode)",
    "restart": "FC 8 sub-function 1 (restart communications)",
    "other": "FC 8 (diagnostics)",
}


def diagnostics(b: PolicyView, w: FeatureWindow) -> Finding | None:
    pair = b.pairs_.get(w.pair)
    restart, listen = count(w, "diag_restart"), count(w, "diag_listen_only")
    other = max(count(w, "diag_other"), count(w, "fc_8") - restart - listen)

    def learned(name: str) -> bool:
        return not b.always_alert_restart and pair is not None and pair.max_count(name) > 0

    kinds = []
    if listen > 0 and not learned("diag_listen_only"):
        kinds.append("listen_only")
    if restart > 0 and not learned("diag_restart"):
        kinds.append("restart")
    if other > 0 and (pair is None or DIAGNOSTICS not in pair.function_codes):
        kinds.append("other")
    if not kinds:
        return None
    critical = "listen_only" in kinds or "restart" in kinds
    text = f"{' and '.join(_DIAG_WORDS[k] for k in kinds)} sent to {w.server_ip} unit {w.unit_id} by {w.client_ip}"
    if "listen_only" in kinds:
        text += ": the device stops answering Modbus until its communications are restarted"
    elif "restart" in kinds:
        text += ": the device restarts its communications port and may drop connections"
    else:
        text += ", never seen for this pair while learning"
    features = {"listen_only": ("diag_listen_only", listen), "restart": ("diag_restart", restart),
                "other": ("diag_other", other)}
    ev = []
    for k in kinds:
        name, value = features[k]
        ev.append(evidence(name, value, (0.0, pair.max_count(name) if pair else 0.0)))
    variant = "" if "listen_only" in kinds else "restart" if "restart" in kinds else "query"
    return Finding("policy.diagnostics", "critical" if critical else "high", text,
                   tuple(("policy.diagnostics", w.pair, k) for k in kinds), tuple(ev), (DIAGNOSTICS,), variant=variant)


PAIR_RULES = (new_talker_pair, new_pair, new_function_code, first_write, address_out_of_range,
              write_value_out_of_range, exception_burst, diagnostics, no_response, values_frozen, values_replayed)
