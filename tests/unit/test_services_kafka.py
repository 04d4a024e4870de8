"""services/kafka.py without a broker: its configuration, cluster ids, and a probe that a TCP accept does not fool."""

from __future__ import annotations

import re
import socket
import threading
import time

from tests.conftest import kafka_service


def test_server_properties_describe_one_kraft_node_on_loopback():
    service = kafka_service()
    lines = service.server_properties().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert settings["process.roles"] == "broker,controller"
    assert settings["node.id"] == "1"
    listeners = f"PLAINTEXT://127.0.0.1:{service.PORT},CONTROLLER://127.0.0.1:{service.CONTROLLER_PORT}"
    assert settings["listeners"] == listeners
    assert settings["controller.quorum.bootstrap.servers"] == f"127.0.0.1:{service.CONTROLLER_PORT}"
    assert settings["offsets.topic.replication.factor"] == "1"
    assert settings["transaction.state.log.replication.factor"] == "1"
    assert settings["group.initial.rebalance.delay.ms"] == "0"
    assert settings["auto.create.topics.enable"] == "true"
    assert settings["num.partitions"] == "3"
    assert settings["log.dirs"] == str(service.DATA)


def test_cluster_ids_look_like_kafka_uuids():
    ids = {kafka_service().new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", value) for value in ids)


def test_cache_lives_outside_the_clone(monkeypatch, tmp_path):
    service = kafka_service()
    monkeypatch.setenv("OTSENTRY_CACHE", str(tmp_path))
    assert service.cache_root() == tmp_path
    monkeypatch.delenv("OTSENTRY_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert service.cache_root() == tmp_path / "xdg" / "otsentry"


def test_probe_is_not_fooled_by_a_server_that_only_accepts():
    service = kafka_service()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer_garbage():
            connection, _ = listener.accept()
            with connection:
                connection.recv(1024)
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer_garbage, daemon=True)
        thread.start()
        began = time.monotonic()
        assert service.probe("127.0.0.1", port, timeout=2.0) is None
        assert time.monotonic() - began < 3
        thread.join(timeout=2)
    assert service.probe("127.0.0.1", port, timeout=1.0) is None  # nothing listens any more
