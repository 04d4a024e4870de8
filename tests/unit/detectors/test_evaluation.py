"""Evaluation metrics: labels parsing, window truth, precision/recall/F1, ROC-AUC, time to detect, false alerts/h."""

from __future__ import annotations

import numpy as np
import pytest

from otsentry.detectors.evaluation import AttackFrame, LabelError, Labels, evaluate, load_labels, roc_auc
from otsentry.contracts.windows import score_key
from otsentry.contracts.schema import PAIR_FEATURES, FEATURE_SCHEMA_VERSION
from otsentry.records import Alert, FeatureWindow, alert_id


def _w(start: float, client: str = "10.0.0.5", server: str = "10.0.0.20") -> FeatureWindow:
    return FeatureWindow(start, start + 10, "pair", client, server, 1, (0.0,) * len(PAIR_FEATURES), FEATURE_SCHEMA_VERSION)


def _alert(w: FeatureWindow, rule: str = "policy.new_talker") -> Alert:
    return Alert(alert_id(w.window_start, w.window_end, w.client_ip, w.server_ip, 1, rule), rule, rule, "policy",
                 "policy", "high", 73, 1, 0.5, w.window_start, w.window_end, w.client_ip, w.server_ip, 1, "x")


def test_load_frame_labels_and_intervals(tmp_path):
    f = tmp_path / "frames.csv"
    f.write_text("frame;label\n1;0\n2;1\n3;1\n4;0\n")
    assert load_labels(f) == Labels(frames=frozenset({2, 3}))
    i = tmp_path / "intervals.csv"
    i.write_text("start;end\n100.5;110\n2024-03-01T08:00:00Z;2024-03-01T08:00:10Z\n")
    labels = load_labels(i)
    assert labels.kind == "intervals" and labels.intervals[0] == (100.5, 110.0)
    assert labels.intervals[1][1] - labels.intervals[1][0] == 10


@pytest.mark.parametrize("text", ["", "frame;label\n", "1\n", "1;x\n", "20;10\n"])
def test_bad_labels_are_one_line_errors(tmp_path, text):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(LabelError) as err:
        load_labels(f)
    assert "bad.csv" in str(err.value) and "\n" not in str(err.value)


def test_metrics_on_a_small_run():
    windows = [_w(t) for t in range(0, 100, 10)] + [_w(50, client="10.0.0.66")]
    attack = [AttackFrame(55.0, frozenset({"10.0.0.66", "10.0.0.20"})), AttackFrame(57.0, frozenset({"10.0.0.66", "10.0.0.20"}))]
    labels = Labels(frames=frozenset({100, 101}))
    alerts = [_alert(windows[-1]), _alert(windows[2])]  # one true, one false alert
    scores = {score_key(w): 0.1 for w in windows}
    ev = evaluate(windows, alerts, scores, labels, attack)
    assert ev.attack_windows == 1 and ev.true_positives == 1 and ev.false_positives == 1 and ev.false_negatives == 0
    assert ev.precision == 0.5 and ev.recall == 1.0 and abs(ev.f1 - 2 / 3) < 1e-9
    assert ev.detected and ev.time_to_detect_s == 5.0  # alert at window end 60, attack from 55
    assert ev.normal_hours == pytest.approx(100 / 3600, abs=1e-4)
    assert ev.false_alerts_per_hour == pytest.approx(1 / (100 / 3600), rel=1e-3)
    # The attack window ties with the one falsely alerted window and beats the other 9: (9 + 0.5) / 10.
    assert ev.roc_auc == pytest.approx(0.95)


def test_roc_auc_matches_definition():
    rng = np.random.default_rng(0)
    s = rng.normal(size=200)
    t = rng.random(200) < 0.3
    pos, neg = s[t], s[~t]
    expected = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert roc_auc(s, t) == pytest.approx(expected)
    assert roc_auc(s, np.zeros(200, dtype=bool)) is None
