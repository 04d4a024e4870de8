"""The policy baseline: each rule fires on a crafted window, stays quiet on what it learned, explains itself.

Windows are built directly (``pair_window`` / ``flow_window``), not from captures: the rules are about feature
semantics, and this keeps the tests independent of the windowing stage.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from otsentry.detectors.base import NotFittedError, WindowDetector
from otsentry.detectors.policy import AlertSuppressor, PolicyBaseline
from otsentry.detectors.policy_findings import service_label
from otsentry.contracts.schema import ABSENT, FLOW_FEATURES, PAIR_FEATURES, FEATURE_SCHEMA_VERSION
from otsentry.records import Alert, FeatureWindow

HMI, HISTORIAN, ENG, DNS = "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.2"
PLC1, PLC2 = "10.0.0.20", "10.0.0.21"
ATTACKER = "10.0.0.66"
WINDOW_S = 10.0
LEARN_WINDOWS = 60  # ten minutes
AFTER = LEARN_WINDOWS * WINDOW_S + 300.0  # a time well after learning

# Address and register-value features default to ABSENT (the schema's "nothing to compute it from").
_ABSENT_BY_DEFAULT = {n for n in PAIR_FEATURES if n.startswith(("addr_", "write_addr_", "value_", "write_value_"))
                      and n not in ("addr_distinct", "addr_span", "value_change_rate", "value_range")}


def pair_window(t: float, client: str = HMI, server: str = PLC1, unit: int = 1, **values: float) -> FeatureWindow:
    """A pair window with the named features set, zeros elsewhere (ABSENT for address/value features)."""
    unknown = set(values) - set(PAIR_FEATURES)
    assert not unknown, unknown
    vec = tuple(float(values.get(n, ABSENT if n in _ABSENT_BY_DEFAULT else 0.0)) for n in PAIR_FEATURES)
    return FeatureWindow(t, t + WINDOW_S, "pair", client, server, unit, vec, FEATURE_SCHEMA_VERSION)


def flow_window(t: float, orig: str, resp: str, port: int, transport: str = "tcp", **values: float) -> FeatureWindow:
    unknown = set(values) - set(FLOW_FEATURES)
    assert not unknown, unknown
    values = {"packets": 10.0, "connections": 1.0, **values}
    vec = tuple(float(values.get(n, 0.0)) for n in FLOW_FEATURES)
    return FeatureWindow(t, t + WINDOW_S, "flow", orig, resp, -1, vec, FEATURE_SCHEMA_VERSION, port=port, transport=transport)


def hmi_reads(t: float, **extra: float) -> FeatureWindow:
    base = dict(requests=20, fc_3=20, reads=20, addr_distinct=3, addr_min=0, addr_max=119, values_count=200,
                value_min=0, value_max=9000)
    return pair_window(t, HMI, PLC1, 1, **{**base, **extra})


def hmi_writes(t: float, address: float, value: float, fc: int = 6, **extra: float) -> FeatureWindow:
    base = dict(requests=21, fc_3=20, reads=20, writes=1, addr_distinct=4, addr_min=0, addr_max=max(119, address),
                write_addr_min=address, write_addr_max=address, write_value_min=value, write_value_max=value,
                values_count=200, value_min=0, value_max=9000)
    base[f"fc_{fc}"] = 1
    return pair_window(t, HMI, PLC1, 1, **{**base, **extra})


def learning_windows() -> list[FeatureWindow]:
    """Ten minutes of a small plant: the HMI reads and sometimes writes setpoints (450-550) on PLC1 and coils on
    PLC2, the historian reads PLC1, the HMI resolves names, the engineer opens PLC1's web page."""
    out = []
    for i in range(LEARN_WINDOWS):
        t = i * WINDOW_S
        if i % 5 == 0:
            out.append(hmi_writes(t, 100 + (i // 5) % 6, 450 + 50 * ((i // 5) % 3), exceptions=i % 3, exc_2=i % 3))
        else:
            out.append(hmi_reads(t, exceptions=i % 3, exc_2=i % 3))
        out.append(pair_window(t, HISTORIAN, PLC1, 1, requests=4, fc_3=2, fc_4=2, reads=4, addr_distinct=2,
                               addr_min=0, addr_max=124, values_count=189, value_min=0, value_max=65535))
        coil = dict(fc_5=1, writes=1, write_addr_min=2, write_addr_max=2, write_value_min=1, write_value_max=1) \
            if i % 10 == 0 else {}
        out.append(pair_window(t, HMI, PLC2, 1, requests=12 + len(coil) // 6, fc_1=6, fc_3=6, reads=12,
                               addr_distinct=2, addr_min=0, addr_max=15, **coil))
        out += [flow_window(t, HMI, PLC1, 502), flow_window(t, HISTORIAN, PLC1, 502), flow_window(t, HMI, PLC2, 502)]
        if i % 4 == 0:
            out.append(flow_window(t, HMI, DNS, 53, "udp"))
        if i == 3:
            out.append(flow_window(t, ENG, PLC1, 80))
    return out


@pytest.fixture(scope="module")
def baseline() -> PolicyBaseline:
    return PolicyBaseline().fit(learning_windows())


def rules(alerts: list[Alert]) -> list[str]:
    return [a.rule_id for a in alerts]


def only(alerts: list[Alert], rule_id: str) -> Alert:
    found = [a for a in alerts if a.rule_id == rule_id]
    assert len(found) == 1, rules(alerts)
    return found[0]


# -- contract -----------------------------------------------------------------------------------------------------

def test_learning_windows_raise_nothing(baseline: PolicyBaseline) -> None:
    assert baseline.detect(learning_windows()) == []


def test_normal_windows_after_learning_raise_nothing(baseline: PolicyBaseline) -> None:
    later = [hmi_reads(AFTER + i * WINDOW_S, exceptions=2) for i in range(30)]
    later.append(hmi_writes(AFTER, 104, 500))  # a setpoint write like the learned ones
    later.append(hmi_writes(AFTER + 10, 110, 470, fc=16))  # FC 16: same habit as FC 6 for a known writer
    later.append(flow_window(AFTER, ENG, PLC2, 80))  # the engineer's browser, on another PLC
    assert baseline.detect(later) == []


def test_not_fitted_raises() -> None:
    b = PolicyBaseline()
    with pytest.raises(NotFittedError):
        b.detect([hmi_reads(0)])
    with pytest.raises(NotFittedError):
        b.to_state()
    with pytest.raises(NotFittedError):
        b.findings(hmi_reads(0))


def test_is_a_window_detector_with_sklearn_style_params() -> None:
    b = PolicyBaseline(exception_burst_factor=4.0, realert_interval_s=None)
    assert isinstance(b, WindowDetector)
    assert b.get_params()["exception_burst_factor"] == 4.0
    assert "realert_interval_s=None" in repr(b)
    assert not any(name.endswith("_") for name in vars(b))  # __init__ learns nothing


def test_fit_refuses_nothing_and_other_schemas() -> None:
    with pytest.raises(ValueError, match="at least one window"):
        PolicyBaseline().fit([])
    w = hmi_reads(0)
    old = FeatureWindow(w.window_start, w.window_end, "pair", HMI, PLC1, 1, w.values, "pair-flow-v0")
    with pytest.raises(ValueError, match="schema"):
        PolicyBaseline().fit([old])


def test_learned_allow_lists(baseline: PolicyBaseline) -> None:
    assert baseline.talkers_ == {HMI, HISTORIAN, ENG, DNS, PLC1, PLC2}
    assert set(baseline.pairs_) == {(HMI, PLC1, 1), (HISTORIAN, PLC1, 1), (HMI, PLC2, 1)}
    hmi = baseline.pairs_[(HMI, PLC1, 1)]
    assert hmi.function_codes == {3, 6}
    assert hmi.address_range == (0, 119) and hmi.write_address_range == (100, 105)
    assert hmi.write_value_range == (450, 550) and hmi.max_count("exceptions") == 2
    assert baseline.writers_ == {(PLC1, 1): {HMI}, (PLC2, 1): {HMI}}
    assert (PLC1, 80, "tcp") in baseline.services_ and (DNS, 53, "udp") in baseline.services_


# -- one test per rule --------------------------------------------------------------------------------------------

def test_new_talker(baseline: PolicyBaseline) -> None:
    alerts = baseline.detect([pair_window(AFTER, ATTACKER, PLC1, 1, requests=3, fc_3=3, reads=3, addr_distinct=1,
                                          addr_min=100, addr_max=119)])
    alert = only(alerts, "policy.new_talker")
    assert alert.severity == "high" and alert.category == "policy" and alert.detector == "policy"
    assert alert.explanation.startswith(f"{ATTACKER} was never seen on the OT network while learning")
    assert alert.explanation.endswith(f"now sends Modbus requests to {PLC1} unit 1 (FC 3)")
    assert "policy.new_pair" in rules(alerts)


def test_new_pair_between_known_hosts(baseline: PolicyBaseline) -> None:
    alerts = baseline.detect([pair_window(AFTER, HISTORIAN, PLC2, 1, requests=2, fc_3=2, reads=2)])
    assert rules(alerts) == ["policy.new_pair"]
    assert alerts[0].severity == "medium"
    assert alerts[0].explanation == (f"{HISTORIAN} sent Modbus requests (FC 3) to {PLC2} unit 1, a pair never seen "
                                     f"while learning: only {HMI} talked to it while learning")


def test_new_function_code(baseline: PolicyBaseline) -> None:
    alerts = baseline.detect([hmi_reads(AFTER, fc_43=1, requests=21)])
    alert = only(alerts, "policy.new_function_code")
    assert alert.function_codes == (43,) and alert.severity == "medium"
    assert alert.explanation.startswith(f"{HMI} sent FC 43 (ENCAP_INTERFACE_TRANSPORT) to {PLC1} unit 1, never seen")
    assert "(learned: FC 3, 6)" in alert.explanation
    unlisted = only(baseline.detect([hmi_reads(AFTER, fc_other=2)]), "policy.new_function_code")
    assert unlisted.severity == "high" and "unlisted function code" in unlisted.explanation


def test_first_write_from_a_reader(baseline: PolicyBaseline) -> None:
    w = pair_window(AFTER, HISTORIAN, PLC1, 1, requests=5, fc_3=4, fc_16=1, reads=4, writes=1, addr_distinct=2,
                    addr_min=0, addr_max=110, write_addr_min=100, write_addr_max=110, write_value_min=480,
                    write_value_max=520)
    alerts = baseline.detect([w])
    assert rules(alerts) == ["policy.first_write"]  # FC 16 is new for the pair too, but the write says it all
    alert = alerts[0]
    assert alert.severity == "high" and alert.function_codes == (16,)
    assert alert.explanation == (f"{HISTORIAN} wrote to {PLC1} unit 1 (FC 16, addresses 100-110) but only read from "
                                 f"it while learning (only {HMI} wrote to it)")


def test_first_write_from_a_new_host(baseline: PolicyBaseline) -> None:
    w = pair_window(AFTER, ATTACKER, PLC1, 1, requests=1, fc_16=1, writes=1, addr_distinct=1, addr_min=100,
                    addr_max=110, write_addr_min=100, write_addr_max=110, write_value_min=500, write_value_max=500)
    alerts = baseline.detect([w])
    assert only(alerts, "policy.first_write").explanation == (
        f"{ATTACKER} wrote to {PLC1} unit 1 (FC 16, addresses 100-110) but only {HMI} wrote to it while learning")
    assert "policy.write_value_out_of_range" not in rules(alerts)  # a plausible value: only who writes is wrong


def test_a_writer_of_one_gateway_unit_may_write_to_another() -> None:
    """Units behind one IP are one device to whoever may write to it; strict per-unit writers on request."""
    w = pair_window(AFTER, HMI, PLC2, 2, requests=2, fc_3=1, fc_5=1, reads=1, writes=1, addr_distinct=2, addr_min=0,
                    addr_max=15, write_addr_min=3, write_addr_max=3, write_value_min=0, write_value_max=0)
    assert rules(PolicyBaseline().fit(learning_windows()).detect([w])) == ["policy.new_pair"]
    strict = PolicyBaseline(pool_writes_per_client=False).fit(learning_windows())
    assert rules(strict.detect([w])) == ["policy.new_pair", "policy.first_write"]


def test_address_out_of_range(baseline: PolicyBaseline) -> None:
    reads = only(baseline.detect([hmi_reads(AFTER, addr_max=5000)]), "policy.address_out_of_range")
    assert reads.severity == "medium"
    assert reads.explanation == f"{HMI} accessed addresses 0-5000 on {PLC1} unit 1, outside the learned range 0-119"
    assert [e.name for e in reads.evidence if e.contribution] == ["addr_max"]
    assert baseline.detect([hmi_reads(AFTER, addr_max=119 + baseline.address_margin)]) == []
    writes = only(baseline.detect([hmi_writes(AFTER, 300, 500)]), "policy.address_out_of_range")
    assert writes.severity == "high"
    assert writes.explanation == (f"{HMI} wrote address 300 on {PLC1} unit 1, outside the learned write range 2-105; "
                                  f"its requests reached addresses 0-300 (learned 0-119)")


def test_write_addresses_pooled_per_writer_unless_asked_not_to(baseline: PolicyBaseline) -> None:
    """The HMI wrote coil 2 on PLC2 and registers 100-105 on PLC1: pooled, address 60 is inside 2-105."""
    assert baseline.detect([hmi_writes(AFTER, 60, 500)]) == []
    strict = PolicyBaseline(pool_writes_per_client=False).fit(learning_windows())
    alert = only(strict.detect([hmi_writes(AFTER, 60, 500)]), "policy.address_out_of_range")
    assert alert.explanation == f"{HMI} wrote address 60 on {PLC1} unit 1, outside the learned write range 100-105"


def test_write_value_out_of_range_by_the_usual_hmi(baseline: PolicyBaseline) -> None:
    alerts = baseline.detect([hmi_writes(AFTER, 103, 9999)])
    alert = only(alerts, "policy.write_value_out_of_range")
    assert rules(alerts) == ["policy.write_value_out_of_range"]
    assert alert.severity == "high" and alert.function_codes == (6,)
    assert alert.explanation.startswith(f"{HMI} wrote value 9999 to {PLC1} unit 1 (FC 6, address 103), outside the "
                                        f"values {HMI} wrote while learning")
    assert "values read from it: 0-9000" in alert.explanation
    driving = [e for e in alert.evidence if e.contribution == 1.0]
    assert [(e.name, e.value) for e in driving] == [("write_value_max", 9999.0)]


def test_write_value_judged_per_pair_when_not_pooled() -> None:
    strict = PolicyBaseline(pool_writes_per_client=False, value_margin=0.0, value_margin_min=0.0)
    strict.fit(learning_windows())
    alert = only(strict.detect([hmi_writes(AFTER, 103, 600)]), "policy.write_value_out_of_range")
    assert "(450-550; values read from it: 0-9000)" in alert.explanation


def test_absent_write_values_are_not_values(baseline: PolicyBaseline) -> None:
    """A mask write (FC 22) has a write address but no write values: ABSENT must not read as value -1."""
    w = hmi_writes(AFTER, 103, ABSENT, fc=22)
    assert "policy.write_value_out_of_range" not in rules(baseline.detect([w]))


def test_exception_burst_relative_to_learned_max(baseline: PolicyBaseline) -> None:
    # learned max 2 per window -> threshold max(3 * 2, 2 + 5) = 7
    assert baseline.detect([hmi_reads(AFTER, exceptions=7, exc_2=7)]) == []
    alert = only(baseline.detect([hmi_reads(AFTER, exceptions=30, exc_2=25, exc_1=5)]), "policy.exception_burst")
    assert (alert.score, alert.threshold) == (30.0, 7.0)
    assert alert.explanation == (f"{PLC1} unit 1 returned 30 exception responses to {HMI} in this window (mostly "
                                 f"ILLEGAL_DATA_ADDRESS), above the learned maximum of 2 per window")


def test_exception_burst_floor_for_a_quiet_pair(baseline: PolicyBaseline) -> None:
    """The historian learned no exception: the absolute floor (0 + 5) decides when the count is not improbable."""
    busy = dict(requests=40, responses=40, fc_3=20, fc_4=20, reads=40, addr_distinct=2, addr_min=0, addr_max=124)
    # 5 in 40 answers at the 1 % rate floor: p = 6e-5, above exception_tail
    assert baseline.detect([pair_window(AFTER, HISTORIAN, PLC1, 1, exceptions=5, **busy)]) == []
    assert rules(baseline.detect([pair_window(AFTER, HISTORIAN, PLC1, 1, exceptions=6, **busy)])) == \
        ["policy.exception_burst"]


def test_exception_burst_improbable_at_the_learned_rate(baseline: PolicyBaseline) -> None:
    """A slow poller (4 reads per window) in an exception storm: 3 of 4 answers are exceptions, far below the floor
    but p = 4e-6 at the 1 % rate floor; 2 of 4 (p = 6e-4) happen in normal traffic now and then."""
    quiet = dict(requests=4, responses=4, fc_3=2, fc_4=2, reads=4, addr_distinct=2, addr_min=0, addr_max=124)
    assert baseline.detect([pair_window(AFTER, HISTORIAN, PLC1, 1, exceptions=2, exc_4=2, **quiet)]) == []
    alert = only(baseline.detect([pair_window(AFTER, HISTORIAN, PLC1, 1, exceptions=3, exc_4=3, **quiet)]),
                 "policy.exception_burst")
    assert alert.explanation == (f"{PLC1} unit 1 returned 3 exception responses to {HISTORIAN} in this window (mostly "
                                 f"SLAVE_DEVICE_FAILURE), above the learned maximum of 0 per window; 3 of 4 answers, "
                                 f"improbable at the learned rate of 1.0% (p = 4e-06)")
    assert (alert.score, alert.threshold) == (3.0, 0.0)
    # never at or below the pair's learned maximum (the HMI learned up to 2 exceptions per window)
    assert baseline.detect([hmi_reads(AFTER, requests=4, responses=4, exceptions=2, exc_2=2)]) == []
    # never on learning traffic
    assert [a for a in baseline.detect(learning_windows()) if a.rule_id == "policy.exception_burst"] == []


@pytest.mark.parametrize("feature_name, words", [
    ("diag_listen_only", "FC 8 sub-function 4 (force listen-only mode)"),
    ("diag_restart", "FC 8 sub-function 1 (restart communications)"),
])
def test_diagnostics_restart_and_listen_only_are_critical(baseline: PolicyBaseline, feature_name: str,
                                                           words: str) -> None:
    alert = only(baseline.detect([hmi_reads(AFTER, fc_8=1, **{feature_name: 1})]), "policy.diagnostics")
    assert alert.severity == "critical" and alert.risk_score == 99.0 and alert.function_codes == (8,)
    assert alert.explanation.startswith(f"{words} sent to {PLC1} unit 1 by {HMI}: ")
    assert "policy.new_function_code" not in rules(baseline.detect([hmi_reads(AFTER, fc_8=1, **{feature_name: 1})]))


def test_other_diagnostics_only_when_never_seen_for_the_pair() -> None:
    windows = learning_windows() + [pair_window(0, HISTORIAN, PLC1, 1, requests=1, fc_8=1, diag_other=1)]
    b = PolicyBaseline().fit(windows)
    alert = only(b.detect([hmi_reads(AFTER, fc_8=1, diag_other=1)]), "policy.diagnostics")
    assert alert.severity == "high"
    assert alert.explanation == (f"FC 8 (diagnostics) sent to {PLC1} unit 1 by {HMI}, never seen for this pair "
                                 "while learning")
    assert b.detect([pair_window(AFTER, HISTORIAN, PLC1, 1, requests=1, fc_8=1, diag_other=1)]) == []


def test_learned_restart_is_quiet_only_when_asked() -> None:
    windows = learning_windows() + [hmi_reads(0, fc_8=1, diag_restart=1)]
    restart = hmi_reads(AFTER, fc_8=1, diag_restart=1)
    assert rules(PolicyBaseline().fit(windows).detect([restart])) == ["policy.diagnostics"]
    assert PolicyBaseline(always_alert_restart=False).fit(windows).detect([restart]) == []


def test_new_service(baseline: PolicyBaseline) -> None:
    smb = only(baseline.detect([flow_window(AFTER, HMI, PLC1, 445)]), "policy.new_service")
    assert smb.severity == "high" and smb.server_port == 445 and smb.transport == "tcp" and smb.unit_id == -1
    assert smb.explanation == (f"{HMI} connected to {PLC1} on 445/tcp (SMB), a service never seen on that host "
                               f"while learning (it only offered 80/tcp (HTTP), 502/tcp (Modbus))")
    http = only(baseline.detect([flow_window(AFTER, HMI, PLC2, 80)]), "policy.new_service")
    assert http.severity == "medium"  # the HMI never browsed a PLC; the engineer doing it elsewhere is no alert
    known = [flow_window(AFTER, HMI, PLC1, 502), flow_window(AFTER, HMI, DNS, 53, "udp"),
             flow_window(AFTER, ENG, PLC1, 80), flow_window(AFTER, ENG, PLC2, 80)]
    assert baseline.detect(known) == []


def test_new_service_names_what_its_payload_showed(baseline: PolicyBaseline) -> None:
    """Remote Desktop moved onto the PLC's Modbus port, DNP3 on a port of its own: the payload says what it is."""
    rdp = replace(flow_window(AFTER, HMI, PLC2, 503), service="rdp")
    alert = only(baseline.detect([rdp]), "policy.new_service")
    assert alert.explanation.startswith(f"{HMI} connected to {PLC2} on 503/tcp (rdp, by its payload)")
    learned = PolicyBaseline().fit([replace(flow_window(t, HMI, PLC1, 502), service="modbus") for t in (0, 10, 20)])
    [swap] = learned.detect([replace(flow_window(AFTER, HMI, PLC1, 502), service="rdp")])
    assert (swap.rule_id, swap.severity, swap.technique_id) == ("policy.new_service", "high", "T0886")
    assert swap.explanation.endswith("on 502/tcp (rdp by its payload, on Modbus's port): that service spoke modbus "
                                     "while learning, never rdp")
    assert learned.detect([replace(flow_window(AFTER, HMI, PLC1, 502), service="modbus")]) == []
    assert PolicyBaseline.from_state(learned.to_state()).detect([swap_window := replace(
        flow_window(AFTER, HMI, PLC1, 502), service="rdp")])[0].id == swap.id
    accepted = learned.accept([swap])
    assert accepted.detect([swap_window]) == []
    unnamed = PolicyBaseline().fit([flow_window(t, HMI, PLC1, 502) for t in (0, 10, 20)])
    assert unnamed.detect([swap_window]) == []  # learning named nothing there: nothing to compare with
    assert service_label(502, "tcp", "rdp") == "502/tcp (rdp by its payload, on Modbus's port)"
    assert service_label(20001, "tcp", "dnp3") == "20001/tcp (DNP3, by its payload)"
    assert service_label(502, "tcp", "modbus") == service_label(502, "tcp") == "502/tcp (Modbus)"


def test_new_talker_on_a_flow_is_reported_once_with_its_pair_window(baseline: PolicyBaseline) -> None:
    alerts = baseline.detect([flow_window(AFTER, ATTACKER, PLC1, 502),
                              pair_window(AFTER, ATTACKER, PLC1, 1, requests=1, fc_3=1, reads=1)])
    assert rules(alerts) == ["policy.new_talker", "policy.new_pair"]  # pair window first: it says more
    assert alerts[0].unit_id == 1
    rdp = baseline.detect([flow_window(AFTER, ATTACKER, PLC1, 3389)])
    assert rules(rdp) == ["policy.new_talker", "policy.new_service"]
    assert "connects to 10.0.0.20 on 3389/tcp (RDP)" in rdp[0].explanation


# -- responses: silence, frozen and replayed values ---------------------------------------------------------------

def with_features(w: FeatureWindow, **values: float) -> FeatureWindow:
    names = w.feature_names()
    vec = tuple(float(values.get(n, v)) for n, v in zip(names, w.values))
    return FeatureWindow(w.window_start, w.window_end, w.kind, w.client_ip, w.server_ip, w.unit_id, vec, w.schema,
                         port=w.port, transport=w.transport)


def measured_learning_windows() -> list[FeatureWindow]:
    """``learning_windows`` where the HMI's reads of PLC1 compare 200 values a window, 40-50 % of them changed (the
    analog measurements), and the historian's reads compare 180, 3-5 % changed (mostly configuration registers)."""
    out = []
    for i, w in enumerate(learning_windows()):
        if w.kind == "pair" and w.pair == (HMI, PLC1, 1):
            w = with_features(w, values_compared=200, value_change_rate=0.4 + 0.01 * (i % 11))
        elif w.kind == "pair" and w.pair == (HISTORIAN, PLC1, 1):
            w = with_features(w, values_compared=180, value_change_rate=0.03 + 0.002 * (i % 11))
        out.append(w)
    return out


@pytest.fixture(scope="module")
def measured() -> PolicyBaseline:
    return PolicyBaseline().fit(measured_learning_windows())


def historian_reads(t: float, **extra: float) -> FeatureWindow:
    base = dict(requests=4, responses=4, fc_3=2, fc_4=2, reads=4, addr_distinct=2, addr_min=0, addr_max=124,
                values_count=378, value_min=0, value_max=65535)
    return pair_window(t, HISTORIAN, PLC1, 1, **{**base, **extra})


def test_response_rules_stay_quiet_on_learning_and_ordinary_windows(measured: PolicyBaseline) -> None:
    assert measured.detect(measured_learning_windows()) == []
    hmi = measured.pairs_[(HMI, PLC1, 1)]
    assert hmi.change_rate == (0.4, 0.5) and hmi.total("rate_windows") == 60
    ordinary = [hmi_reads(AFTER, values_compared=200, value_change_rate=0.35),  # a bit lower than learned: fine
                hmi_reads(AFTER + 10, values_compared=12, value_change_rate=0.0),  # too few values to judge
                hmi_reads(AFTER + 20, responses=19, unanswered=1),  # one lost answer out of 20
                hmi_reads(AFTER + 30, replayed_reads=2),  # a setpoint block back to an earlier state, twice
                historian_reads(AFTER, values_compared=180, value_change_rate=0.02),
                historian_reads(AFTER + 10, responses=3, unanswered=1)]  # a quarter of a slow poller's requests
    assert measured.detect(ordinary) == []


def test_values_frozen(measured: PolicyBaseline) -> None:
    alert = only(measured.detect([hmi_reads(AFTER, values_compared=220, value_change_rate=0.0)]),
                 "policy.values_frozen")
    assert alert.severity == "high" and alert.category == "policy"
    assert alert.explanation == (f"{PLC1} unit 1 answered {HMI}'s reads with values that did not change at all: 0 of "
                                 f"220 register values differ from the previous read, while at least 40% changed in "
                                 f"every learning window (values frozen: a stuck device, or a man in the middle "
                                 f"answering with old data)")
    assert [(e.name, e.value, e.baseline_low, e.baseline_high) for e in alert.evidence if e.contribution] == \
        [("value_change_rate", 0.0, 0.4, 0.5)]
    # the first window of a freeze still holds a few real changes: "hardly changed" up to 1/4 of the learned minimum
    partly = only(measured.detect([hmi_reads(AFTER, values_compared=200, value_change_rate=0.09)]),
                  "policy.values_frozen")
    assert "hardly changed: 18 of 200" in partly.explanation
    assert measured.detect([hmi_reads(AFTER, values_compared=200, value_change_rate=0.11)]) == []
    # each pair against its own history: the historian's 3 % is normal for it, 0 is not
    assert measured.detect([historian_reads(AFTER, values_compared=180, value_change_rate=0.03)]) == []
    assert rules(measured.detect([historian_reads(AFTER, values_compared=378, value_change_rate=0.0)])) == \
        ["policy.values_frozen"]


def test_values_frozen_needs_a_learned_change_rate(baseline: PolicyBaseline) -> None:
    """No change rate learned (windows without compared values), or too few windows of it: no judgement."""
    assert baseline.detect([hmi_reads(AFTER, values_compared=200, value_change_rate=0.0)]) == []
    few = [w for w in measured_learning_windows() if w.window_start < 5 * WINDOW_S]
    thin = PolicyBaseline().fit(few)
    assert thin.pairs_[(HMI, PLC1, 1)].total("rate_windows") == 5
    assert thin.detect([hmi_reads(AFTER, values_compared=200, value_change_rate=0.0)]) == []


def test_values_replayed(measured: PolicyBaseline) -> None:
    alert = only(measured.detect([hmi_reads(AFTER, values_compared=200, value_change_rate=0.45, replayed_reads=20)]),
                 "policy.values_replayed")
    assert alert.severity == "high" and (alert.score, alert.threshold) == (20.0, 2.0)
    assert alert.explanation.startswith(f"20 reads by {HMI} from {PLC1} unit 1 in this window returned register "
                                        f"blocks that had changed since the previous read yet were identical")
    assert rules(measured.detect([hmi_reads(AFTER, replayed_reads=3)])) == ["policy.values_replayed"]
    # a pair whose blocks came back to earlier states while learning (a setpoint toggled) is judged above that
    toggling = PolicyBaseline().fit(learning_windows() + [hmi_reads(5.0, replayed_reads=4)])
    assert toggling.detect([hmi_reads(AFTER, replayed_reads=8)]) == []
    assert rules(toggling.detect([hmi_reads(AFTER, replayed_reads=9)])) == ["policy.values_replayed"]


def test_no_response(measured: PolicyBaseline) -> None:
    alert = only(measured.detect([hmi_reads(AFTER, requests=10, responses=0, unanswered=10)]), "policy.no_response")
    assert alert.severity == "high"
    assert alert.explanation == (f"{PLC1} unit 1 left 10 of 10 requests from {HMI} unanswered in this window (learned "
                                 f"maximum 0 per window; not one answer): the device stopped answering (listen-only "
                                 f"mode, a crash, overload, or requests dropped on the way)")
    # many unanswered in a busy window, or a good share of a slow poller's requests
    assert rules(measured.detect([hmi_reads(AFTER, requests=20, responses=17, unanswered=3)])) == \
        ["policy.no_response"]
    assert rules(measured.detect([historian_reads(AFTER, requests=3, responses=2, unanswered=1)])) == \
        ["policy.no_response"]
    # the listen-only command itself is diagnostics' to report, not twice
    listen = measured.detect([hmi_reads(AFTER, fc_8=1, diag_listen_only=1, requests=21, unanswered=1)])
    assert rules(listen) == ["policy.diagnostics"]


def test_no_response_relative_to_what_was_learned() -> None:
    lossy = PolicyBaseline().fit(learning_windows() + [hmi_reads(5.0, responses=18, unanswered=2)])
    assert lossy.detect([hmi_reads(AFTER, responses=18, unanswered=2)]) == []
    assert lossy.detect([hmi_reads(AFTER, responses=16, unanswered=4)]) == []  # 2 above, 20 %: not yet
    assert rules(lossy.detect([hmi_reads(AFTER, responses=15, unanswered=5)])) == ["policy.no_response"]


def test_write_margin_shrinks_with_the_writes_learned() -> None:
    """Seventy writes over registers 100-113 (a setpoint block, FC 6 and FC 16): the margin is 1.5 gaps of 14/71
    registers, so register 119 (spare, never written) alerts; with the 18 writes over 2-105 of ``learning_windows``
    the margin stays wide, 1.5 * 104 / 19 = 8.2 (``test_normal_windows_after_learning_raise_nothing``: 110 passes)."""
    windows = [hmi_writes(i * WINDOW_S, 100 + (i // 2) % 14, 500) if i % 2 == 0 else hmi_reads(i * WINDOW_S)
               for i in range(140)]
    b = PolicyBaseline().fit(windows)
    assert b.writer_profiles_[HMI].total("writes") == 70
    assert b.detect([hmi_writes(2000, 113, 500), hmi_writes(2010, 100, 500)]) == []
    alert = only(b.detect([hmi_writes(2000, 119, 500)]), "policy.address_out_of_range")
    assert alert.explanation.startswith(f"{HMI} wrote address 119 on {PLC1} unit 1, outside the learned write range "
                                        f"100-113")
    assert alert.severity == "high"
    # a write to the spare register alongside an ordinary one in the same window: the range ends at 119
    both = dict(write_addr_min=105, write_addr_max=119)
    assert "policy.address_out_of_range" in rules(b.detect([hmi_writes(2000, 119, 500, **both)]))
    few = PolicyBaseline().fit(learning_windows())
    assert few.detect([hmi_writes(AFTER, 113, 500)]) == []
    assert "policy.address_out_of_range" in rules(few.detect([hmi_writes(AFTER, 114, 500)]))
    assert PolicyBaseline(address_margin=10, write_margin_gaps=100.0).fit(windows).detect(
        [hmi_writes(2000, 119, 500)]) == []  # the cap: never more than address_margin


# -- state, ids, determinism --------------------------------------------------------------------------------------

def attack_windows() -> list[FeatureWindow]:
    return [
        hmi_writes(AFTER, 103, 9999), hmi_reads(AFTER + 10, exceptions=40, exc_2=40, fc_8=1, diag_listen_only=1),
        pair_window(AFTER + 20, ATTACKER, PLC1, 1, requests=3, fc_16=1, fc_43=1, fc_other=1, writes=1,
                    write_addr_min=65520, write_addr_max=65520, write_value_min=0, write_value_max=0,
                    addr_distinct=1, addr_min=65520, addr_max=65520),
        flow_window(AFTER + 20, ATTACKER, PLC1, 502), flow_window(AFTER + 30, HMI, PLC1, 445),
    ]


def test_state_round_trip_gives_identical_alerts(baseline: PolicyBaseline) -> None:
    state = baseline.to_state()
    text = json.dumps(state, sort_keys=True, allow_nan=False)
    restored = PolicyBaseline.from_state(json.loads(text))
    assert restored.to_state() == state
    assert json.dumps(restored.to_state(), sort_keys=True) == text
    assert restored.get_params() == baseline.get_params()
    alerts = baseline.detect(attack_windows())
    assert len(alerts) >= 8
    assert restored.detect(attack_windows()) == alerts
    assert restored.detect(learning_windows()) == []


def test_state_is_stable_whatever_the_learning_order() -> None:
    windows = learning_windows()
    shuffled = windows[:]
    random.Random(7).shuffle(shuffled)
    assert PolicyBaseline().fit(shuffled).to_state() == PolicyBaseline().fit(windows).to_state()


def test_from_state_refuses_other_feature_schemas(baseline: PolicyBaseline) -> None:
    state = {**baseline.to_state(), "feature_schema": "pair-flow-v0"}
    with pytest.raises(ValueError, match="relearn"):
        PolicyBaseline.from_state(state)
    with pytest.raises(ValueError, match="policy baseline"):
        PolicyBaseline.from_state({"kind": "something else"})


def test_alerts_are_deterministic_and_ids_unique(baseline: PolicyBaseline) -> None:
    windows = attack_windows()
    first = baseline.detect(windows)
    assert baseline.detect(list(reversed(windows))) == first
    ids = [a.id for a in first]
    assert len(set(ids)) == len(ids)
    two_services = baseline.detect([flow_window(AFTER, HMI, PLC1, 445), flow_window(AFTER, HMI, PLC1, 3389)])
    assert len({a.id for a in two_services}) == 2
    assert all(Alert.from_dict(json.loads(json.dumps(a.to_dict()))) == a for a in first)


# -- rate limiting ------------------------------------------------------------------------------------------------

def test_a_persisting_new_talker_is_reported_once_per_hour(baseline: PolicyBaseline) -> None:
    windows = [flow_window(AFTER + i * WINDOW_S, ATTACKER, PLC1, 502) for i in range(2 * 360 + 1)]  # two hours
    alerts = baseline.detect(windows)
    assert [a.window_start - AFTER for a in alerts] == [0.0, 3600.0, 7200.0]
    assert rules(alerts) == ["policy.new_talker"] * 3


def test_an_attack_action_alerts_in_every_window_that_holds_it(baseline: PolicyBaseline) -> None:
    windows = [hmi_reads(AFTER, fc_43=1), hmi_reads(AFTER + 10, fc_43=1),
               hmi_reads(AFTER + 20, fc_43=1, fc_17=1)]
    alerts = baseline.detect(windows)
    assert [(a.window_start - AFTER, a.function_codes) for a in alerts] == [(0.0, (43,)), (10.0, (43,)),
                                                                           (20.0, (17, 43))]


def test_a_second_force_listen_only_minutes_later_is_not_suppressed(baseline: PolicyBaseline) -> None:
    """The field report: one-hour suppression swallowed the second FC 8/4, seven minutes after the first."""
    windows = [hmi_reads(AFTER, fc_8=1, diag_listen_only=1), hmi_reads(AFTER + 420, fc_8=1, diag_listen_only=1)]
    alerts = baseline.detect(windows)
    assert [(a.window_start - AFTER, a.rule_id, a.technique_id) for a in alerts] == [
        (0.0, "policy.diagnostics", "T0814"), (420.0, "policy.diagnostics", "T0814")]


def test_a_new_fact_of_a_state_alerts_at_once_despite_rate_limiting(baseline: PolicyBaseline) -> None:
    other = baseline.detect([flow_window(AFTER, ATTACKER, PLC1, 502), flow_window(AFTER + 10, ATTACKER, PLC1, 502),
                             flow_window(AFTER + 20, "10.0.0.67", PLC1, 502)])
    assert [(a.window_start - AFTER, a.client_ip) for a in other] == [(0.0, ATTACKER), (20.0, "10.0.0.67")]


def test_rate_limiting_across_detect_calls_needs_a_shared_suppressor(baseline: PolicyBaseline) -> None:
    first, second = [flow_window(AFTER, ATTACKER, PLC1, 502)], [flow_window(AFTER + 60, ATTACKER, PLC1, 502)]
    assert len(baseline.detect(first)) == len(baseline.detect(second)) == 1  # each call starts fresh
    memory = baseline.new_suppressor()
    assert isinstance(memory, AlertSuppressor)
    assert len(baseline.detect(first, memory)) == 1
    assert baseline.detect(second, memory) == []


def test_realert_interval_none_reports_once_and_zero_every_window() -> None:
    windows = [flow_window(AFTER + i * 600, ATTACKER, PLC1, 502) for i in range(20)]
    once = PolicyBaseline(realert_interval_s=None).fit(learning_windows())
    assert len(once.detect(windows)) == 1
    every = PolicyBaseline(realert_interval_s=0).fit(learning_windows())
    assert len(every.detect(windows)) == 20


def test_a_state_that_comes_back_after_a_quiet_spell_alerts_again(baseline: PolicyBaseline) -> None:
    """A scan repeated after the incident gap is a new occurrence, not the same state going on."""
    first = [flow_window(AFTER + 10 * i, ATTACKER, PLC1, 80) for i in range(3)]
    again = [flow_window(AFTER + 20 * 60 + 10 * i, ATTACKER, PLC1, 80) for i in range(3)]  # 20 min later
    alerts = baseline.detect(first + again)
    assert sorted({a.window_start - AFTER for a in alerts}) == [0.0, 1200.0]
    never = PolicyBaseline(reappear_s=None).fit(learning_windows())
    assert sorted({a.window_start - AFTER for a in never.detect(first + again)}) == [0.0]
