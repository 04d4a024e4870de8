"""AnomalyWindowDetector: windows in, explained alerts out."""

from __future__ import annotations

import dataclasses
from functools import cache

import numpy as np
import pytest

from otsentry.detectors.anomaly import AnomalyWindowDetector, explain_sentence, severity_for
from otsentry.detectors.base import NotFittedError, WindowDetector
from otsentry.contracts.schema import FLOW_FEATURES, FEATURE_SCHEMA_VERSION
from otsentry.records import Alert, FeatureEvidence, FeatureWindow, alert_id
from tests.unit.detector_data import flood_rows, normal_rows, sweep_rows, windows_from_rows


@cache
def detector() -> AnomalyWindowDetector:
    windows = windows_from_rows(normal_rows(720, np.random.default_rng(21)))
    return AnomalyWindowDetector().fit(windows + flow_windows(80, np.random.default_rng(1)))


def flow_windows(n: int, rng: np.random.Generator, port: int = 502, scale: float = 1.0) -> list[FeatureWindow]:
    out = []
    for i in range(n):
        packets = rng.poisson(40) * scale
        values = dict.fromkeys(FLOW_FEATURES, 0.0)
        values.update(packets=packets, bytes=packets * 70, packets_orig=packets / 2, packets_resp=packets / 2,
                      bytes_orig=packets * 30, bytes_resp=packets * 40, connections=1, duration_s=10.0, modbus=1.0)
        out.append(FeatureWindow(1e9 + 10 * i, 1e9 + 10 * i + 10, "flow", "10.0.0.10", "10.0.1.1", -1,
                                 tuple(values[f] for f in FLOW_FEATURES), FEATURE_SCHEMA_VERSION, port=port,
                                 transport="tcp"))
    return out


def test_is_a_window_detector_and_refuses_use_before_fit() -> None:
    assert isinstance(AnomalyWindowDetector(), WindowDetector)
    with pytest.raises(NotFittedError):
        AnomalyWindowDetector().detect(windows_from_rows(normal_rows(4, np.random.default_rng(0))))


def test_learns_only_its_kind() -> None:
    det = detector()
    assert det.n_train_windows_ == 720
    assert det.n_train_pairs_ == 4
    assert det.window_s_ == 10.0
    assert det.rule_id == "anomaly.pair_ensemble"


def test_normal_traffic_raises_no_alerts() -> None:
    fresh = windows_from_rows(normal_rows(1440, np.random.default_rng(22)))  # one hour of four pairs
    assert len(detector().detect(fresh)) <= 1


def test_flood_alert_is_explained_and_deterministic() -> None:
    windows = windows_from_rows(flood_rows(4, np.random.default_rng(23), factor=30.0))
    alerts = detector().detect(windows)
    assert len(alerts) == 4
    alert, window = alerts[0], windows[0]
    assert alert.rule_id == "anomaly.pair_ensemble" and alert.category == "anomaly"
    assert alert.severity == "critical" and 90 <= alert.risk_score <= 100
    assert alert.score > 5 * alert.threshold
    assert alert.id == alert_id(window.window_start, window.window_end, window.client_ip, window.server_ip,
                                window.unit_id, "anomaly.pair_ensemble")
    assert alert.function_codes == (3,)
    assert alert.evidence[0].name in {"requests", "responses", "transactions", "reads", "fc_3", "values_count"}
    assert "in 10 s, learned" in alert.explanation and "\n" not in alert.explanation
    assert Alert.from_dict(alert.to_dict()) == alert
    assert detector().detect(windows) == alerts


def test_function_code_sweep_names_codes_and_distinct_count() -> None:
    alerts = detector().detect(windows_from_rows(sweep_rows(4, np.random.default_rng(24))))
    assert len(alerts) == 4
    assert "fc_distinct 40, learned 1-2" in alerts[0].explanation
    assert {2, 5, 8, 43} <= set(alerts[0].function_codes)


def test_too_few_windows_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"needs at least 60 pair windows to learn from, got 20"):
        AnomalyWindowDetector().fit(windows_from_rows(normal_rows(20, np.random.default_rng(0))))


def test_windows_of_another_schema_are_refused() -> None:
    window = dataclasses.replace(windows_from_rows(normal_rows(1, np.random.default_rng(0)))[0], schema="pair-flow-v0")
    with pytest.raises(ValueError, match="pair-flow-v0"):
        detector().detect([window])


def test_flow_detector_keeps_alerts_of_two_services_apart() -> None:
    det = AnomalyWindowDetector(kind="flow").fit(flow_windows(200, np.random.default_rng(2)))
    burst = flow_windows(1, np.random.default_rng(3), port=502, scale=50) + flow_windows(
        1, np.random.default_rng(3), port=102, scale=50
    )
    alerts = det.detect(burst)
    assert [a.server_port for a in alerts] == [502, 102]
    assert alerts[0].id != alerts[1].id
    assert alerts[0].rule_id == "anomaly.flow_ensemble" and alerts[0].function_codes == ()


@pytest.mark.parametrize(
    "ratio, severity", [(1.01, "medium"), (1.99, "medium"), (2.0, "high"), (4.9, "high"), (5.0, "critical"),
                        (1e6, "critical")]
)
def test_severity_bands(ratio: float, severity: str) -> None:
    got, risk = severity_for(ratio)
    assert got == severity
    assert 0 <= risk <= 100


def test_explanation_sentence_format() -> None:
    evidence = [FeatureEvidence("requests", 4210, 8, 12, 0.7), FeatureEvidence("fc_distinct", 57, 1, 2, 0.3)]
    assert explain_sentence(evidence, 10.0, 9.14) == (
        "requests 4210 in 10 s, learned 8-12; fc_distinct 57, learned 1-2 (score 9.1x threshold)"
    )
