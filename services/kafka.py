#!/usr/bin/env python3
"""A real Apache Kafka broker for otsentry's tests and development: one KRaft node (broker + controller) on 127.0.0.1.

    python3 -m services.kafka install   # resolve Kafka's jars from Maven Central with Maven (once; cached)
    python3 -m services.kafka start     # install if needed, format storage once, start, wait until it answers
    python3 -m services.kafka stop      # SIGTERM, bounded wait, then SIGKILL
    python3 -m services.kafka status    # running or not (exit code 0 or 3), pid, port, memory, log file
    python3 -m services.kafka restart

``make services`` runs ``start`` and ``make services-stop`` runs ``stop``. Nothing here needs the project's
virtualenv: it is the standard library, ``java`` (17 or newer) and ``mvn``.

Where things live (outside the clone, so a fresh clone on the same machine starts in seconds):

* ``$OTSENTRY_CACHE/services/kafka-<version>/jars/``: the broker's jars (default cache ``~/.cache/otsentry``, or
  ``$XDG_CACHE_HOME/otsentry``); ``.../services/maven-repo/`` is Maven's local repository for them;
* ``$OTSENTRY_CACHE/services/kafka-run/``: ``server.properties``, ``log4j2.xml``, ``data/`` (the KRaft log dirs:
  topics and offsets survive a restart), ``logs/server.log`` (the broker's log), ``kafka.out`` (the JVM's own
  stdout/stderr), ``kafka.pid``.

Listeners: ``PLAINTEXT`` on 127.0.0.1:9092 (what the tests and development use) and ``SASL_PLAINTEXT`` on
127.0.0.1:9094 with the mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for one user, ``otsentry`` with the
password ``SASL_PASSWORD`` below. That user and password are for tests only (a loopback broker; they are written
in clear into ``server.properties``): never reuse them. The PLAIN user is in the listener's JAAS config; the SCRAM
credentials are stored in the KRaft metadata, added by ``kafka-storage format --add-scram`` on a fresh format and,
for storage formatted before the SASL listener existed, through the admin API on the PLAINTEXT listener (once: every
start checks a SCRAM login on the SASL listener before it says ready).

Environment: ``OTSENTRY_KAFKA_VERSION`` (default below), ``OTSENTRY_KAFKA_PORT`` (9092),
``OTSENTRY_KAFKA_CONTROLLER_PORT`` (9093), ``OTSENTRY_KAFKA_SASL_PORT`` (the PLAINTEXT port + 2: 9094),
``OTSENTRY_KAFKA_HEAP`` (``512m``), ``JAVA_HOME``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from otsentry.stream.kafka import wire
from services.common import alive, cmdline, legacy_cache_root, locked, rss_mib
from services.kafka_config import (CLUSTER_ID_FILE, CONTROLLER_PORT, DATA, HEAP, HOME, HOST, JARS, KAFKA_VERSION,
                                   LOG4J_CONFIG, LOG4J_XML, LOGS, LOG_FILE, NODE_ID, OUT_FILE, PID_FILE, PORT,
                                   PROPERTIES, RUN, SASL_MECHANISMS, SASL_PASSWORD, SASL_PORT, SASL_TIMEOUT_S,
                                   SASL_USERNAME, SERVICES, START_TIMEOUT_S, STOP_TIMEOUT_S, TOOLS_LOG4J_CONFIG,
                                   TOOLS_LOG4J_XML, ServiceError, new_cluster_id, say, scram_credentials,
                                   server_properties)
from services.kafka_install import check_java, install, is_installed, java_binary

# ------------------------------------------------------------------------------------------- wire protocol


def probe(host: str = HOST, port: int = PORT, timeout: float = 2.0) -> dict | None:
    """Ask a Kafka broker for its API versions and its cluster metadata (raw protocol, no client library).

    Returns ``{"brokers": [...], "controller_id": N, "cluster_id": ...}`` when it answers as a Kafka broker that
    lists at least one live broker, ``None`` when nothing (or not yet a ready broker) answers. A TCP connect alone
    proves nothing: the broker accepts connections before it can serve requests.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return wire.metadata(sock)
    except (OSError, struct.error, UnicodeDecodeError):
        return None


def sasl_login(mechanism: str, username: str = SASL_USERNAME, password: str = SASL_PASSWORD, host: str = HOST,
               port: int = SASL_PORT, timeout: float = 5.0) -> str | None:
    """Log in to a SASL_PLAINTEXT listener with ``mechanism`` (raw protocol); None on success, else why not.

    Raises OSError when nothing (or not yet a broker) answers on ``host:port``.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        return wire.sasl_login(sock, mechanism, username, password)


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


# ----------------------------------------------------------------------------------------------- processes


def _ours(pid: int) -> bool:
    args = cmdline(pid)
    return alive(pid) and "kafka.Kafka" in args and str(PROPERTIES) in args


def running_pid() -> int | None:
    """The pid of the broker this script started, if it is still that process (pids get reused).

    Without a pid file (deleted by hand), the broker is looked for among the processes: a java running kafka.Kafka
    with this cache's server.properties.
    """
    try:
        pid = int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        pid = None
    if pid is not None:
        return pid if _ours(pid) else None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _ours(int(entry.name)):
            return int(entry.name)
    return None


def log_tail(lines: int = 25) -> str:
    chunks = []
    for path in (LOG_FILE, OUT_FILE):
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            if text:
                chunks.append(f"--- last lines of {path}:\n" + "\n".join(text))
    return "\n".join(chunks)


def jvm_command(java: str, main: str, log4j: Path) -> list[str]:
    return [
        java, "-cp", str(JARS / "*"), "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={LOGS}", main,
    ]  # fmt: skip


def format_storage(java: str) -> None:
    if (DATA / "meta.properties").exists():
        return
    if not CLUSTER_ID_FILE.exists():
        CLUSTER_ID_FILE.write_text(new_cluster_id() + "\n")
    cluster_id = CLUSTER_ID_FILE.read_text().strip()
    command = jvm_command(java, "kafka.tools.StorageTool", TOOLS_LOG4J_CONFIG)
    command += ["format", "--standalone", "-t", cluster_id, "-c", str(PROPERTIES)]
    for credential in scram_credentials():
        command += ["--add-scram", credential]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"formatting the KRaft storage in {DATA} failed:\n{(result.stdout + result.stderr).strip()}")
    say(f"formatted KRaft storage in {DATA} (cluster id {cluster_id})")


# -------------------------------------------------------------------------------------------------- start


def ensure_sasl_users(java: str, pid: int, timeout: float = SASL_TIMEOUT_S) -> None:
    """Wait until the test user logs in on the SASL listener with every mechanism; add the SCRAM credentials
    through the admin API of the PLAINTEXT listener when the storage was formatted without them (once)."""
    deadline = time.monotonic() + timeout
    added = False
    while True:
        try:
            failed = {mechanism: sasl_login(mechanism) for mechanism in SASL_MECHANISMS}
        except OSError as error:
            failed = {"listener": f"no answer on {HOST}:{SASL_PORT} ({error})"}
        failed = {mechanism: reason for mechanism, reason in failed.items() if reason}
        if not failed:
            return
        if not alive(pid):
            raise ServiceError(f"the broker (pid {pid}) exited; see {LOG_FILE} and {OUT_FILE}\n{log_tail()}")
        if not added and "listener" not in failed and "PLAIN" not in failed:
            for mechanism in failed:  # one request may not alter a user's credentials twice
                add_scram_credentials(java, mechanism)
            added = True
        if time.monotonic() > deadline:
            reasons = "; ".join(f"{mechanism}: {reason}" for mechanism, reason in failed.items())
            raise ServiceError(
                f"the SASL listener {HOST}:{SASL_PORT} does not accept user {SASL_USERNAME} within {timeout:.0f} s "
                f"({reasons}); the broker is left running, see {LOG_FILE}"
            )
        time.sleep(0.25)


def add_scram_credentials(java: str, mechanism: str) -> None:
    """A SCRAM credential for storage formatted before the SASL listener existed (kafka-configs --alter)."""
    command = jvm_command(java, "kafka.admin.ConfigCommand", TOOLS_LOG4J_CONFIG)
    command += ["--bootstrap-server", f"{HOST}:{PORT}", "--alter", "--entity-type", "users", "--entity-name",
                SASL_USERNAME, "--add-config", f"{mechanism}=[password={SASL_PASSWORD}]"]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=SASL_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise ServiceError(f"adding the {mechanism} credential of {SASL_USERNAME} took over "
                           f"{SASL_TIMEOUT_S:.0f} s") from error
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().replace(SASL_PASSWORD, "***")
        raise ServiceError(f"adding the {mechanism} credential of {SASL_USERNAME} failed:\n{output}")
    say(f"added the {mechanism} credential of the test user {SASL_USERNAME} (storage formatted without it)")


def wait_until_ready(pid: int, started: float, timeout: float = START_TIMEOUT_S) -> dict:
    deadline = started + timeout
    while time.monotonic() < deadline:
        answer = probe()
        if answer and any(broker["node_id"] == NODE_ID for broker in answer["brokers"]):
            return answer
        if not alive(pid):
            raise ServiceError(f"the broker (pid {pid}) exited while starting; see {LOG_FILE} and {OUT_FILE}\n{log_tail()}")
        time.sleep(0.25)
    raise ServiceError(
        f"the broker (pid {pid}) did not answer on {HOST}:{PORT} within {timeout:.0f} s; it is left running, "
        f"see {LOG_FILE} (and {OUT_FILE}); `python3 -m services.kafka stop` stops it\n{log_tail()}"
    )


def migrate_legacy_cache() -> None:
    """As root, releases before the shared cache kept Kafka in ~/.cache/otsentry (Elasticsearch in /var/cache):
    move its install and data (topics, offsets) to the one cache, stopping a broker that still runs from there."""
    legacy = legacy_cache_root()
    if legacy is None or RUN.exists() or HOME.exists():
        return
    old = legacy / "services"
    moved = [p for p in (old / HOME.name, old / RUN.name) if p.exists()]
    if not moved:
        return
    old_properties = str(old / RUN.name / PROPERTIES.name)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and "kafka.Kafka" in cmdline(int(entry.name)) and old_properties in cmdline(int(entry.name)):
            pid = int(entry.name)
            say(f"stopping the broker (pid {pid}) that runs from the old cache {old} ...")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    SERVICES.mkdir(parents=True, exist_ok=True)
    for path in moved:
        shutil.move(str(path), str(SERVICES / path.name))
    (SERVICES / RUN.name / PID_FILE.name).unlink(missing_ok=True)
    say(f"moved {', '.join(p.name for p in moved)} from {old} to {SERVICES} (one cache for every service)")


def start() -> int:
    with locked("kafka"):
        migrate_legacy_cache()
    install()
    with locked("kafka"):
        pid = running_pid()
        if pid is not None:
            PID_FILE.write_text(f"{pid}\n")
            answer = wait_until_ready(pid, time.monotonic())
            say(f"already running (pid {pid}) on {HOST}:{PORT}, cluster {answer['cluster_id']}; log: {LOG_FILE}")
            with contextlib.suppress(OSError):
                if PROPERTIES.read_text() != server_properties():
                    say("it runs with an older server.properties than this script writes "
                        "(e.g. no SASL listener): `python3 -m services.kafka restart` applies the new one")
            return 0
        answer = probe()
        if answer is not None:
            say(f"a Kafka broker not started by this script already answers on {HOST}:{PORT} "
                f"(cluster {answer['cluster_id']}): using it")  # fmt: skip
            return 0
        for port in (PORT, CONTROLLER_PORT, SASL_PORT):
            if port_open(HOST, port):
                raise ServiceError(
                    f"{HOST}:{port} is taken by something that is not a Kafka broker (set OTSENTRY_KAFKA_PORT / "
                    "OTSENTRY_KAFKA_CONTROLLER_PORT / OTSENTRY_KAFKA_SASL_PORT to use other ports)"
                )
        java = java_binary()
        check_java(java)
        for folder in (RUN, DATA, LOGS):
            folder.mkdir(parents=True, exist_ok=True)
        PROPERTIES.write_text(server_properties())
        LOG4J_CONFIG.write_text(LOG4J_XML.format(log=LOG_FILE))
        TOOLS_LOG4J_CONFIG.write_text(TOOLS_LOG4J_XML)
        format_storage(java)
        command = jvm_command(java, "kafka.Kafka", LOG4J_CONFIG)
        main_at = command.index("kafka.Kafka")
        command[main_at:main_at] = [
            f"-Xms{min(HEAP, '256m', key=_heap_bytes)}", f"-Xmx{HEAP}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent", "-XX:+ExitOnOutOfMemoryError",
            "-Dotsentry.service=kafka",
        ]  # fmt: skip
        command.append(str(PROPERTIES))
        started = time.monotonic()
        with open(OUT_FILE, "ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting Kafka {KAFKA_VERSION}\n".encode())
            out.flush()
            # Its own session, no inherited descriptors: the broker outlives this script and holds no pipe of
            # make's or CI's open (a runner waiting for its output to close would otherwise hang).
            process = subprocess.Popen(
                command, cwd=RUN, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
        PID_FILE.write_text(f"{process.pid}\n")
        say(f"starting Kafka {KAFKA_VERSION} (pid {process.pid}) on {HOST}:{PORT} ...")
        answer = wait_until_ready(process.pid, started)
        ensure_sasl_users(java, process.pid)
        rss = rss_mib(process.pid)
        say(f"ready in {time.monotonic() - started:.1f} s (cluster {answer['cluster_id']}, "
            f"{rss:.0f} MiB resident; SASL {'/'.join(SASL_MECHANISMS)} on {HOST}:{SASL_PORT}); log: {LOG_FILE}")
        return 0


def _heap_bytes(size: str) -> int:
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    size = size.strip().lower()
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


# --------------------------------------------------------------------------------------------- stop/status


def stop() -> int:
    with locked("kafka"):
        pid = running_pid()
        if pid is None:
            PID_FILE.unlink(missing_ok=True)
            say("not running")
            return 0
        started = time.monotonic()
        say(f"stopping (pid {pid}) ...")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        while alive(pid) and time.monotonic() - started < STOP_TIMEOUT_S:
            time.sleep(0.1)
        if alive(pid):
            say(f"still running after {STOP_TIMEOUT_S:.0f} s: SIGKILL (see {LOG_FILE})")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while alive(pid) and time.monotonic() - started < STOP_TIMEOUT_S + 10:
                time.sleep(0.1)
        PID_FILE.unlink(missing_ok=True)
        say(f"stopped in {time.monotonic() - started:.1f} s")
        return 0


def status() -> int:
    pid = running_pid()
    if pid is None:
        foreign = probe()
        if foreign:
            say(f"not started by this script, but a broker answers on {HOST}:{PORT} (cluster {foreign['cluster_id']})")
        else:
            say(f"not running (Kafka {KAFKA_VERSION} {'installed' if is_installed() else 'not installed'}"
                f" in {HOME})")  # fmt: skip
        return 3
    answer = probe()
    rss = rss_mib(pid)
    state = f"answering, cluster {answer['cluster_id']}" if answer else "NOT answering yet"
    try:
        failed = [mechanism for mechanism in SASL_MECHANISMS if sasl_login(mechanism, timeout=2.0)]
        sasl = f"SASL on {HOST}:{SASL_PORT} " + (f"REFUSES {'/'.join(failed)}" if failed else "accepts the test user")
    except OSError:
        sasl = f"no SASL listener answering on {HOST}:{SASL_PORT} (`restart` adds it)"
    say(f"running (pid {pid}, {rss:.0f} MiB resident) on {HOST}:{PORT}, {state}; {sasl}; Kafka {KAFKA_VERSION}; "
        f"data {DATA}; log {LOG_FILE}")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["install", "start", "stop", "status", "restart"])
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            install()
            return 0
        if args.command == "start":
            return start()
        if args.command == "stop":
            return stop()
        if args.command == "restart":
            stop()
            return start()
        return status()
    except ServiceError as error:
        print(f"kafka: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
