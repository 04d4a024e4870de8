"""The kafka/stream/daemon config sections: typed, unknown keys named, flags and env vars, secrets never shown."""

from __future__ import annotations

import logging
from dataclasses import fields

import click
import pytest
from click.testing import CliRunner

from otsentry.cli import main
from otsentry.cli.streamopts import env_name, stream_settings
from otsentry.config import ConfigError, load_config
from otsentry.stream.kafka.client import client_options, redacted
from otsentry.stream.runtime.settings import KafkaConfig, STREAM_SECTIONS, Secret, with_secrets

SECRET = "s3cr3t-Pa55"


def test_example_config_loads():
    cfg = load_config("configs/kafka.yaml")
    assert cfg["kafka"].features_topic == "otsentry.features" and cfg["daemon"].metrics_port > 0


@pytest.mark.parametrize("text, needle", [
    ("kafka:\n  bootstrp: x\n", "kafka: unknown key 'bootstrp'"),
    ("kafka:\n  sasl_password: hunter2\n", "OTSENTRY_KAFKA_SASL_PASSWORD"),
    ("kafka:\n  partitions: many\n", "kafka.partitions: expected a number"),
    ("kafka:\n  compression: brotli\n", "kafka.compression: expected one of"),
    ("daemon:\n  log_format: xml\n", "daemon.log_format: expected one of"),
    ("stream:\n  source: [a]\n", "stream.source: expected a string"),
])
def test_bad_stream_config_is_one_line(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert needle in str(err.value) and "\n" not in str(err.value)
    assert "hunter2" not in str(err.value)


def test_every_config_key_has_a_flag_and_an_env_var():
    ctx = click.Context(main)
    detect = {p.name for p in main.get_command(ctx, "detect").params}
    collect = {p.name for p in main.get_command(ctx, "collect").commands["pcap"].params}
    correlate = {p.name for p in main.get_command(ctx, "correlate").params}
    for section, cls in STREAM_SECTIONS.items():
        for f in fields(cls):
            if f.metadata.get("secret"):
                continue
            assert f"{section}__{f.name}" in detect | collect | correlate, f"{section}.{f.name} has no flag"


def test_flag_beats_env_beats_file(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  bootstrap: file:1\n  group: from-file\n  client_id: file-client\n")
    monkeypatch.setenv(env_name("kafka", "group"), "from-env")
    s = stream_settings(path, {"kafka__bootstrap": "flag:1", "daemon__stop_timeout_s": "3s"})
    assert s.kafka.bootstrap == "flag:1" and s.kafka.client_id == "file-client" and s.daemon.stop_timeout_s == 3.0
    runner = CliRunner(env={"OTSENTRY_KAFKA_GROUP": "from-env", "OTSENTRY_KAFKA_BOOTSTRAP": ""})
    res = runner.invoke(main, ["detect", "--model", "x.otsb", "--config", str(path), "--security-protocol",
                               "SASL_SSL", "--sasl-mechanism", "PLAIN"])
    assert res.exit_code == 2 and "SASL needs kafka.sasl_username" in res.output


def test_secrets_come_from_the_environment_and_never_show(caplog):
    cfg = with_secrets(KafkaConfig(bootstrap="b:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                                   sasl_username="otsentry"), {"OTSENTRY_KAFKA_SASL_PASSWORD": SECRET})
    assert cfg.sasl_password.reveal() == SECRET
    assert SECRET not in repr(cfg) and SECRET not in str(cfg) and "'***'" in repr(cfg)
    opts = client_options(cfg)
    assert opts["sasl_plain_password"] == SECRET and opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert SECRET not in repr(redacted(opts))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("otsentry.stream").info("config %s %s", cfg, redacted(opts))
    assert SECRET not in caplog.text
    assert repr(Secret("")) == "''" and not Secret("")


def test_tls_options_reach_the_client():
    cfg = KafkaConfig(bootstrap="b:9093", security_protocol="SSL", ssl_cafile="/etc/ca.pem",
                      ssl_certfile="/etc/c.pem", ssl_keyfile="/etc/k.pem", ssl_check_hostname=False)
    opts = client_options(with_secrets(cfg, {"OTSENTRY_KAFKA_SSL_PASSWORD": SECRET}))
    assert opts["ssl_cafile"] == "/etc/ca.pem" and opts["ssl_keyfile"] == "/etc/k.pem"
    assert opts["ssl_password"] == SECRET and opts["ssl_check_hostname"] is False


def test_collect_without_kafka_keeps_printing_events(tmp_path):
    from otsentry.synth.scenarios import generate_scenario

    pcap = tmp_path / "n.pcap"
    generate_scenario(pcap, "normal", 1, learn_s=30, total_s=40)
    res = CliRunner(env={"OTSENTRY_KAFKA_BOOTSTRAP": ""}).invoke(main, ["collect", "pcap", str(pcap)])
    assert res.exit_code == 0, res.output
    assert '"function_code"' in res.output.splitlines()[0]
