"""Kafka with SASL against the real broker of ``make services`` (its SASL_PLAINTEXT listener, 127.0.0.1:9094).

services/kafka.py gives that listener PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for one test-only user (``otsentry``,
password in the script). No mocks: `otsentry collect pcap --kafka` logs in with the options of
``KafkaConfig`` (YAML, flags or ``OTSENTRY_KAFKA_*``; the password only from ``OTSENTRY_KAFKA_SASL_PASSWORD``), and
a consumer built from otsentry's own ``client_options`` reads the windows back with SCRAM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
import warnings
from dataclasses import replace

import pytest

from otsentry import pipeline
from otsentry.stream.codec import Watermark, decode_feature_record
from otsentry.contracts.windows import window_identity
from otsentry.stream.kafka.client import client_options
from otsentry.stream.runtime.settings import KafkaConfig, Secret
from otsentry.synth.scenarios import generate_scenario
from services import kafka as kafka_service
from tests.helpers import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 3
# A wrong password must end `collect` with an error within this many seconds (the clients bootstrap within 10 s).
WRONG_PASSWORD_BOUND_S = 30.0


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """A 5-minute fc_sweep capture and `otsentry run`'s window count for it."""
    folder = tmp_path_factory.mktemp("kafka-sasl")
    pcap = folder / "fc_sweep.pcap"
    generate_scenario(pcap, "fc_sweep", 11, learn_s=180, attack_at_s=240, total_s=300)
    # detector workers see windows, not reads: the Kafka path has no process-variable watch
    bundle = replace(pipeline.train([pcap], learn_for_s=180), variables=())
    windows = pipeline.run([pcap], bundle=bundle).windows
    assert windows > 100
    return pcap, windows


def _env(**kafka) -> dict[str, str]:
    """The environment without any OTSENTRY_KAFKA_* of the caller's shell, plus ``kafka`` (name: value)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTSENTRY_KAFKA_")}
    env.update({f"OTSENTRY_KAFKA_{name.upper()}": value for name, value in kafka.items()})
    return env


def _collect(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "otsentry", "collect", "pcap", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=timeout)


def _read_windows(sasl: dict, topic: str, mechanism: str, expect: int, timeout: float = 20.0) -> list:
    """The FeatureWindows of ``topic``, read over SASL ``mechanism`` with otsentry's own client options."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaConsumer

    cfg = KafkaConfig(bootstrap=sasl["bootstrap"], client_id="otsentry-sasl-test", security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism=mechanism, sasl_username=sasl["username"], sasl_password=Secret(sasl["password"]))
    consumer = KafkaConsumer(topic, **client_options(cfg), auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=int(timeout * 1000))
    windows = []
    try:
        for record in consumer:
            value = decode_feature_record(record.value)
            if not isinstance(value, Watermark):
                windows.append(value)
                if len(windows) >= expect:
                    break
    finally:
        consumer.close()
    return windows


@pytest.mark.parametrize(("producer", "consumer"), [("PLAIN", "SCRAM-SHA-256"), ("SCRAM-SHA-512", "SCRAM-SHA-256"),
                                                    ("SCRAM-SHA-256", "SCRAM-SHA-512")])
def test_collector_publishes_over_sasl_and_a_scram_consumer_reads_every_window(kafka_sasl, capture, tmp_path,
                                                                               producer, consumer):
    pcap, windows = capture
    topic = f"test.sasl.{producer.lower()}.{uuid.uuid4().hex[:10]}"
    env = _env(sasl_password=kafka_sasl["password"])
    if producer == "PLAIN":  # the YAML config (as configs/kafka.yaml), the password from the environment only
        config = tmp_path / "kafka.yaml"
        config.write_text(f"kafka:\n  bootstrap: \"{kafka_sasl['bootstrap']}\"\n  features_topic: {topic}\n"
                          f"  partitions: {PARTITIONS}\n  security_protocol: SASL_PLAINTEXT\n"
                          f"  sasl_mechanism: {producer}\n  sasl_username: {kafka_sasl['username']}\n")
        args = ["--config", str(config)]
    elif producer == "SCRAM-SHA-512":  # flags
        args = ["--kafka", kafka_sasl["bootstrap"], "--features-topic", topic, "--partitions", str(PARTITIONS),
                "--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", producer,
                "--sasl-username", kafka_sasl["username"]]
    else:  # the environment (as a systemd EnvironmentFile)
        env = _env(bootstrap=kafka_sasl["bootstrap"], features_topic=topic, partitions=str(PARTITIONS),
                   security_protocol="SASL_PLAINTEXT", sasl_mechanism=producer, sasl_username=kafka_sasl["username"],
                   sasl_password=kafka_sasl["password"])
        args = []
    result = _collect([str(pcap), "--window", "10s", *args], env)
    assert result.returncode == 0, result.stderr
    assert f"{windows} windows published" in result.stderr
    assert kafka_sasl["password"] not in result.stdout + result.stderr
    read = _read_windows(kafka_sasl, topic, consumer, expect=windows)
    assert len(read) == windows
    assert len({window_identity(w) for w in read}) == windows


@pytest.fixture(scope="module")
def wrong_password_run(kafka_sasl, capture, tmp_path_factory):
    """`collect pcap --kafka` on the SASL listener with a wrong password, stopped (SIGTERM) if it runs too long.

    Returns (exit code, seconds, stdout, stderr, the wrong password, whether it had to be stopped, the broker log
    written meanwhile or None when the broker's log is not on this machine).
    """
    pcap, _ = capture
    wrong = f"wrong-{uuid.uuid4().hex}"
    log_file = kafka_service.LOG_FILE
    log_at = log_file.stat().st_size if log_file.exists() else None
    env = _env(sasl_password=wrong)
    topic = f"test.sasl.wrong.{uuid.uuid4().hex[:10]}"
    args = [str(pcap), "--kafka", kafka_sasl["bootstrap"], "--features-topic", topic, "--security-protocol",
            "SASL_PLAINTEXT", "--sasl-mechanism", "PLAIN", "--sasl-username", kafka_sasl["username"]]
    out = tmp_path_factory.mktemp("kafka-sasl-wrong") / "collect"
    began = time.monotonic()
    with open(out.with_suffix(".stdout"), "w+") as stdout, open(out.with_suffix(".stderr"), "w+") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "otsentry", "collect", "pcap", *args], stdout=stdout,
                                stderr=stderr, cwd=ROOT, env=env)
        stopped = False
        try:
            proc.wait(WRONG_PASSWORD_BOUND_S)
        except subprocess.TimeoutExpired:
            stopped = True
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        took = time.monotonic() - began
        stdout.seek(0)
        stderr.seek(0)
        text_out, err = stdout.read(), stderr.read()
    broker_log = None
    if log_at is not None:
        with open(log_file, "rb") as handle:
            handle.seek(log_at if log_file.stat().st_size >= log_at else 0)  # rolled over meanwhile: all of it
            broker_log = handle.read().decode(errors="replace")
    return proc.returncode, took, text_out, err, wrong, stopped, broker_log


def test_a_wrong_password_is_never_printed_or_logged(wrong_password_run):
    _, _, stdout, stderr, wrong, _, broker_log = wrong_password_run
    assert wrong not in stdout + stderr
    if broker_log is not None:
        assert wrong not in broker_log


def test_a_wrong_password_ends_the_collector_at_once_with_one_clear_line(wrong_password_run):
    code, took, _, stderr, _, stopped, _ = wrong_password_run
    assert not stopped, f"still running after {WRONG_PASSWORD_BOUND_S:.0f} s:\n{stderr[-2000:]}"
    assert code not in (0, None) and took < WRONG_PASSWORD_BOUND_S
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if re.search(r"authenticat", line, re.IGNORECASE)], stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "login as 'otsentry'" in errors[0] and "OTSENTRY_KAFKA_SASL_PASSWORD" in errors[0]
    assert code == 2, stderr
