"""`otsentry run --iface`: a live interface scored with a model, on real loopback traffic."""

from __future__ import annotations

import threading

import pytest

from otsentry.collectors.collector import CollectorConfig
from otsentry.pipeline import run_live, train
from otsentry.synth.scenarios import generate_scenario
from tests.integration.test_live_capture import TIMEOUT_S, ModbusServer, exchange, require_capture

pytestmark = pytest.mark.integration


def test_live_modbus_from_an_unknown_host_raises_explained_alerts(tmp_path):
    require_capture()
    pcap = tmp_path / "plant.pcap"
    generate_scenario(pcap, "normal", seed=5, learn_s=120, total_s=130)
    bundle = train([pcap], learn_for_s=120)
    server = ModbusServer()
    config = CollectorConfig(server_ports=frozenset({server.port}))
    result: list = []
    failure: list[BaseException] = []

    def score() -> None:
        try:
            result.append(run_live("lo", bundle, config, duration_s=3.0))
        except BaseException as exc:  # noqa: BLE001
            failure.append(exc)

    worker = threading.Thread(target=score, name="live-scoring", daemon=True)
    worker.start()
    threading.Event().wait(0.5)  # the socket opens at the start of run_live
    server.start()
    client_ip, _ = exchange(server.port, server)
    worker.join(TIMEOUT_S)
    assert not worker.is_alive(), "live scoring did not stop"
    if failure:
        raise failure[0]
    alerts = result[0].alerts
    talkers = [a for a in alerts if a.rule_id == "policy.new_talker"]
    assert talkers, [a.rule_id for a in alerts]
    assert talkers[0].client_ip == client_ip == "127.0.0.1"
    assert "never seen" in talkers[0].explanation
    assert result[0].windows >= 1
