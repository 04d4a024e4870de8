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
import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from otsentry.stream.kafka import wire
from services.common import alive, cmdline, legacy_cache_root, locked, rss_mib, services_dir

# The newest Kafka 4.1 patch on Maven Central, and the log4j2 that Kafka 4.1.2's own pom (kafka-server) asks for.
# Kafka's jars use SLF4J 1.7 (slf4j-api 1.7.36), so the binding is log4j-slf4j-impl (the SLF4J 1.x binding, as in
# Kafka's own distribution); without a binding the broker logs nothing at all.
KAFKA_VERSION = os.environ.get("OTSENTRY_KAFKA_VERSION", "4.1.2")
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.25.3"
DEPENDENCY_PLUGIN_VERSION = "3.8.1"

HOST = "127.0.0.1"
PORT = int(os.environ.get("OTSENTRY_KAFKA_PORT", "9092"))
CONTROLLER_PORT = int(os.environ.get("OTSENTRY_KAFKA_CONTROLLER_PORT", "9093"))
# Default: two above the PLAINTEXT port (9094), so a second broker on other ports (OTSENTRY_KAFKA_PORT...) does not
# collide with the first one's SASL listener.
SASL_PORT = int(os.environ.get("OTSENTRY_KAFKA_SASL_PORT") or (PORT + 2 if PORT + 2 != CONTROLLER_PORT else PORT + 3))
HEAP = os.environ.get("OTSENTRY_KAFKA_HEAP", "512m")
NODE_ID = 1

START_TIMEOUT_S = 60.0
SASL_TIMEOUT_S = 30.0

# The SASL_PLAINTEXT listener's one user. TEST-ONLY credentials of a loopback development broker, on purpose in
# this script and nowhere else (tests read them from here): never use them for anything real.
SASL_LISTENER = "SASL_PLAINTEXT"
SASL_USERNAME = "otsentry"
SASL_PASSWORD = "otsentry-test-only-sasl-password"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_MECHANISMS = ("PLAIN", *SCRAM_MECHANISMS)
STOP_TIMEOUT_S = 30.0


SERVICES = services_dir()
HOME = SERVICES / f"kafka-{KAFKA_VERSION}"
JARS = HOME / "jars"
INSTALLED = HOME / ".installed"
MAVEN_REPO = SERVICES / "maven-repo"
RUN = SERVICES / "kafka-run"  # the broker's state: KRaft log dirs, its own logs, the files written at every start
DATA, LOGS = RUN / "data", RUN / "logs"
LOG_FILE, OUT_FILE, PID_FILE = LOGS / "server.log", RUN / "kafka.out", RUN / "kafka.pid"
PROPERTIES, CLUSTER_ID_FILE = RUN / "server.properties", RUN / "cluster.id"
LOG4J_CONFIG, TOOLS_LOG4J_CONFIG = RUN / "log4j2.xml", RUN / "log4j2-tools.xml"


class ServiceError(Exception):
    """A failure with a one-line reason (and where to look)."""


def say(message: str) -> None:
    print(f"kafka: {message}", flush=True)


# --------------------------------------------------------------------------------------------------- install

POM = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by otsentry services/kafka.py: the runtime classpath of an Apache Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>otsentry.services</groupId>
  <artifactId>kafka-broker</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>{plugin}</version>
      </plugin>
    </plugins>
  </build>
</project>
"""


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise ServiceError("java not found: Kafka 4 needs Java 17 or newer "
                           "(Debian: apt-get install default-jdk-headless)")
    return found


def check_java(java: str) -> None:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        raise ServiceError(f"cannot read the Java version from `{java} -version`: {out.strip()[:200]}")
    major = int(match.group(1))
    if major == 1:  # "1.8.0_x"
        major = int(match.group(2) or 0)
    if major < 17:
        raise ServiceError(f"{java} is Java {major}: a Kafka 4 broker needs Java 17 or newer")


def is_installed() -> bool:
    return INSTALLED.exists() and any(JARS.glob(f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar"))


def install() -> None:
    if is_installed():
        say(f"Kafka {KAFKA_VERSION} already installed in {HOME}")
        return
    with locked("kafka"):
        if is_installed():  # another process installed it while we waited for the lock
            say(f"Kafka {KAFKA_VERSION} already installed in {HOME}")
            return
        mvn = shutil.which("mvn")
        if not mvn:
            raise ServiceError("mvn not found: the Kafka jars are resolved with Maven (Debian: apt-get install maven)")
        check_java(java_binary())
        started = time.monotonic()
        say(f"installing Kafka {KAFKA_VERSION} (Scala {SCALA_VERSION}) from Maven Central into {HOME} ...")
        for stale in SERVICES.glob(".kafka-*.partial-*"):  # left by an install that was interrupted
            shutil.rmtree(stale, ignore_errors=True)
        partial = SERVICES / f".kafka-{KAFKA_VERSION}.partial-{os.getpid()}"
        (partial / "jars").mkdir(parents=True)
        (partial / "pom.xml").write_text(
            POM.format(kafka=KAFKA_VERSION, scala=SCALA_VERSION, log4j=LOG4J_VERSION, plugin=DEPENDENCY_PLUGIN_VERSION)
        )
        command = [
            mvn, "-B", "-q", "-U", "-Dstyle.color=never", "-f", str(partial / "pom.xml"), f"-Dmaven.repo.local={MAVEN_REPO}",
            f"org.apache.maven.plugins:maven-dependency-plugin:{DEPENDENCY_PLUGIN_VERSION}:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={partial / 'jars'}",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)  # Maven's colours
            detail = [line for line in output.strip().splitlines() if line.strip() not in ("", "[ERROR]")][-12:]
            raise ServiceError("Maven could not resolve the Kafka jars:\n  " + "\n  ".join(detail))
        jars = sorted(path.name for path in (partial / "jars").glob("*.jar"))
        for needed in (f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar", f"log4j-slf4j-impl-{LOG4J_VERSION}.jar"):
            if needed not in jars:
                shutil.rmtree(partial, ignore_errors=True)
                raise ServiceError(f"Maven finished but {needed} is not among the {len(jars)} jars")
        (partial / ".installed").write_text("".join(f"{name}\n" for name in jars))
        if HOME.exists():  # a broken earlier install (no marker)
            shutil.rmtree(HOME)
        partial.rename(HOME)
        size = sum(path.stat().st_size for path in JARS.glob("*.jar"))
        say(f"installed {len(jars)} jars ({size / 2**20:.0f} MiB) in {time.monotonic() - started:.1f} s")


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


# ------------------------------------------------------------------------------------------------- configs

LOG4J_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by otsentry services/kafka.py. -->
<Configuration status="WARN">
  <Appenders>
    <RollingFile name="server" fileName="{log}" filePattern="{log}.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <Policies><SizeBasedTriggeringPolicy size="20 MB"/></Policies>
      <DefaultRolloverStrategy max="4"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="server"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN"/>
  </Loggers>
</Configuration>
"""

TOOLS_LOG4J_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders><Console name="stderr" target="SYSTEM_ERR"><PatternLayout pattern="%p %m%n"/></Console></Appenders>
  <Loggers><Root level="WARN"><AppenderRef ref="stderr"/></Root></Loggers>
</Configuration>
"""


def server_properties() -> str:
    settings = {
        # One KRaft node that is its own controller quorum (formatted with --standalone).
        "process.roles": "broker,controller",
        "node.id": NODE_ID,
        "controller.quorum.bootstrap.servers": f"{HOST}:{CONTROLLER_PORT}",
        "listeners": f"PLAINTEXT://{HOST}:{PORT},CONTROLLER://{HOST}:{CONTROLLER_PORT},"
                     f"{SASL_LISTENER}://{HOST}:{SASL_PORT}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{PORT},{SASL_LISTENER}://{HOST}:{SASL_PORT}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,{SASL_LISTENER}:SASL_PLAINTEXT",
        # The SASL listener (test-only user, see SASL_PASSWORD): PLAIN checks the JAAS user_<name> entries, SCRAM
        # the credentials in the KRaft metadata.
        **sasl_listener_settings(),
        "log.dirs": DATA,
        # Topics: 3 partitions unless asked otherwise, so consumer-group tests can split work; one replica.
        "num.partitions": 3,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        # Internal topics on a single node: one replica; fewer offsets partitions than the default 50 so the
        # first consumer group is ready fast.
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        # Tests: a group forms at once instead of waiting 3 s for more members.
        "group.initial.rebalance.delay.ms": 0,
        # A development broker: keep a day of data, at most 1 GiB per partition, small segments.
        "log.retention.hours": 24,
        "log.retention.bytes": 1 << 30,
        "log.segment.bytes": 64 << 20,
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
    }
    lines = ["# Generated by otsentry services/kafka.py at every start: edit the script, not this file."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def sasl_listener_settings() -> dict[str, str]:
    prefix = f"listener.name.{SASL_LISTENER.lower()}"
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    return {
        f"{prefix}.sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
        f"{prefix}.plain.sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule required "
                                            f'user_{SASL_USERNAME}="{SASL_PASSWORD}";',
        **{f"{prefix}.{mechanism.lower()}.sasl.jaas.config": scram for mechanism in SCRAM_MECHANISMS},
    }


def scram_credentials() -> list[str]:
    """``--add-scram`` values of ``kafka-storage format``: ``SCRAM-SHA-256=[name=otsentry,password=...]``..."""
    return [f"{mechanism}=[name={SASL_USERNAME},password={SASL_PASSWORD}]" for mechanism in SCRAM_MECHANISMS]


def new_cluster_id() -> str:
    """A Kafka Uuid as `kafka-storage random-uuid` prints it: 16 random bytes, URL-safe base64, no padding."""
    while True:
        value = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not value.startswith("-"):  # Kafka's Uuid.randomUuid() avoids ids that look like an option
            return value


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
