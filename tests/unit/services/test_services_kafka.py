"""services/kafka.py without a broker: its configuration, cluster ids, and a probe that a TCP accept does not fool."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

from otsentry.stream.kafka import wire
from services import common
from services import kafka as service


def test_server_properties_describe_one_kraft_node_on_loopback():
    lines = service.server_properties().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert settings["process.roles"] == "broker,controller"
    assert settings["node.id"] == "1"
    listeners = (f"PLAINTEXT://127.0.0.1:{service.PORT},CONTROLLER://127.0.0.1:{service.CONTROLLER_PORT},"
                 f"SASL_PLAINTEXT://127.0.0.1:{service.SASL_PORT}")
    assert settings["listeners"] == listeners
    assert settings["controller.quorum.bootstrap.servers"] == f"127.0.0.1:{service.CONTROLLER_PORT}"
    assert settings["offsets.topic.replication.factor"] == "1"
    assert settings["transaction.state.log.replication.factor"] == "1"
    assert settings["group.initial.rebalance.delay.ms"] == "0"
    assert settings["auto.create.topics.enable"] == "true"
    assert settings["num.partitions"] == "3"
    assert settings["log.dirs"] == str(service.DATA)


def test_cluster_ids_look_like_kafka_uuids():
    ids = {service.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", value) for value in ids)


def test_cache_lives_outside_the_clone(monkeypatch, tmp_path):
    monkeypatch.setenv("OTSENTRY_CACHE", str(tmp_path))
    assert common.cache_root() == tmp_path
    monkeypatch.delenv("OTSENTRY_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(common.os, "geteuid", lambda: 1000)
    assert common.cache_root() == tmp_path / "xdg" / "otsentry"
    assert common.legacy_cache_root() is None


def test_as_root_every_service_caches_in_one_place(monkeypatch, tmp_path):
    """Kafka once cached in ~/.cache as root while Elasticsearch used /var/cache: one function decides for both."""
    from services import elasticsearch

    monkeypatch.delenv("OTSENTRY_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(common.os, "geteuid", lambda: 0)
    assert common.cache_root() == Path("/var/cache/otsentry")
    assert elasticsearch.services_dir() == common.services_dir() == Path("/var/cache/otsentry/services")
    assert common.legacy_cache_root() == tmp_path / "xdg" / "otsentry"


def test_a_root_install_in_the_old_cache_moves_to_the_shared_one(monkeypatch, tmp_path):
    """Install and data (topics, offsets) move; nothing is downloaded again and no topic is lost."""
    legacy = tmp_path / "legacy"
    (legacy / "services" / service.HOME.name / "jars").mkdir(parents=True)
    (legacy / "services" / service.HOME.name / ".installed").write_text("")
    (legacy / "services" / service.RUN.name / "data").mkdir(parents=True)
    (legacy / "services" / service.RUN.name / "data" / "meta.properties").write_text("cluster.id=x\n")
    (legacy / "services" / service.RUN.name / "kafka.pid").write_text("999999999\n")
    new = tmp_path / "new" / "services"
    monkeypatch.setattr(service, "legacy_cache_root", lambda: legacy)
    monkeypatch.setattr(service, "SERVICES", new)
    monkeypatch.setattr(service, "HOME", new / service.HOME.name)
    monkeypatch.setattr(service, "RUN", new / service.RUN.name)
    service.migrate_legacy_cache()
    assert (new / service.HOME.name / ".installed").exists()
    assert (new / service.RUN.name / "data" / "meta.properties").read_text() == "cluster.id=x\n"
    assert not (new / service.RUN.name / "kafka.pid").exists() and not (legacy / "services" / service.RUN.name).exists()
    service.migrate_legacy_cache()  # done once: a second call finds the shared cache in place
    assert (new / service.HOME.name / ".installed").exists()


def test_probe_is_not_fooled_by_a_server_that_only_accepts():
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


def test_the_sasl_listener_has_plain_and_scram_for_the_test_user_and_plaintext_is_unchanged():
    lines = service.server_properties().splitlines()
    settings = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    advertised = f"PLAINTEXT://127.0.0.1:{service.PORT},SASL_PLAINTEXT://127.0.0.1:{service.SASL_PORT}"
    assert settings["advertised.listeners"] == advertised
    assert settings["inter.broker.listener.name"] == "PLAINTEXT"
    protocols = dict(pair.split(":") for pair in settings["listener.security.protocol.map"].split(","))
    assert protocols == {"CONTROLLER": "PLAINTEXT", "PLAINTEXT": "PLAINTEXT", "SASL_PLAINTEXT": "SASL_PLAINTEXT"}
    prefix = "listener.name.sasl_plaintext."
    assert settings[prefix + "sasl.enabled.mechanisms"] == "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
    plain = settings[prefix + "plain.sasl.jaas.config"]
    assert plain.startswith("org.apache.kafka.common.security.plain.PlainLoginModule required ")
    assert f'user_{service.SASL_USERNAME}="{service.SASL_PASSWORD}";' in plain
    for mechanism in ("scram-sha-256", "scram-sha-512"):
        assert settings[f"{prefix}{mechanism}.sasl.jaas.config"] == (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;")
    # kafka-storage format --add-scram / kafka-configs split their values on ',' '[' ']' '='
    assert not set(service.SASL_USERNAME + service.SASL_PASSWORD) & set(",[]=\"\\ ")
    assert service.scram_credentials() == [
        f"SCRAM-SHA-256=[name=otsentry,password={service.SASL_PASSWORD}]",
        f"SCRAM-SHA-512=[name=otsentry,password={service.SASL_PASSWORD}]",
    ]


# RFC 7677's SCRAM-SHA-256 example exchange (user "user", password "pencil").
RFC7677 = {
    "client_first": b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
    "server_first": b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    "client_final": b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    "server_final": b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
}


def _fake_sasl_broker(listener: socket.socket, replies: list[bytes], seen: list[bytes]) -> None:
    """Answer SaslHandshake v1, then one SaslAuthenticate v1 per entry of ``replies`` (bytes, or an error)."""
    import struct

    def read(connection, size):
        data = b""
        while len(data) < size:
            chunk = connection.recv(size - len(data))
            if not chunk:
                raise OSError("closed")
            data += chunk
        return data

    connection, _ = listener.accept()
    with connection:
        for step in range(1 + len(replies)):
            request = read(connection, struct.unpack(">i", read(connection, 4))[0])
            api_key, _, correlation, client_length = struct.unpack_from(">hhih", request)
            body = request[10 + client_length :]
            if step == 0:
                assert api_key == 17
                answer = struct.pack(">hi", 0, 2) + b"\x00\x05PLAIN" + b"\x00\x0dSCRAM-SHA-256"
            else:
                assert api_key == 36
                seen.append(body[4 : 4 + struct.unpack_from(">i", body)[0]])
                reply = replies[step - 1]
                if isinstance(reply, int):
                    answer = struct.pack(">hh", reply, 6) + b"denied" + struct.pack(">iq", 0, 0)
                else:
                    answer = struct.pack(">hhi", 0, -1, len(reply)) + reply + struct.pack(">q", 0)
            message = struct.pack(">i", correlation) + answer
            connection.sendall(struct.pack(">i", len(message)) + message)


def _login_against_fake(monkeypatch, replies, mechanism="SCRAM-SHA-256", password="pencil"):
    monkeypatch.setattr(wire, "scram_nonce", lambda: "rOprNGfwEbeRWgbNEkqO")
    seen: list[bytes] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        thread = threading.Thread(target=_fake_sasl_broker, args=(listener, replies, seen), daemon=True)
        thread.start()
        result = service.sasl_login(mechanism, "user", password, port=listener.getsockname()[1], timeout=5.0)
        thread.join(timeout=5)
    return result, seen


def test_the_scram_client_computes_rfc_7677s_proof_and_checks_the_server(monkeypatch):
    result, seen = _login_against_fake(monkeypatch, [RFC7677["server_first"], RFC7677["server_final"]])
    assert result is None
    assert seen == [RFC7677["client_first"], RFC7677["client_final"]]
    forged = b"v=" + b"A" * 43 + b"="
    result, _ = _login_against_fake(monkeypatch, [RFC7677["server_first"], forged])
    assert result == "the server's SCRAM signature is wrong"


def test_a_refused_login_is_a_reason_not_an_exception(monkeypatch):
    result, seen = _login_against_fake(monkeypatch, [58], mechanism="PLAIN", password="wrong")
    assert result == "denied (error 58)"
    assert seen == [b"\0user\0wrong"]
