"""Install, start, stop and check the real Elasticsearch node that otsentry's integration tests index alerts into.

Usage: ``python3 -m services.elasticsearch install|start|stop|status`` (standard library only, so it runs before the
virtualenv exists).

Why it looks like this:

- The distribution is Maven Central's ``org.elasticsearch.distribution.integ-test-zip:elasticsearch`` zip: the only
  Elasticsearch build a registry this project can reach carries. It is minimal: no bundled JDK (``ES_JAVA_HOME`` is
  pointed at the system's JDK 17), no ``rest-root`` module (``GET /`` 404s, so readiness is ``_cluster/health``), no
  ILM, data-stream or ingest modules, and possibly no x-pack security (so ``xpack.security.enabled`` is only written
  when the module that owns that setting is there: an unknown setting stops the node).
- Downloads go through ``mvn`` (the ordinary client for Maven Central, honouring the user's Maven mirrors/proxies)
  into a cache outside the clone, so a fresh clone on the same machine (what CI is) starts in seconds.
- Elasticsearch refuses to run as root: as root, a dedicated system user (``otsentry-es``) is created and the node
  runs under ``runuser``. That user must be able to read the distribution, and root's home is private (0700), so as
  root the default cache is ``/var/cache/otsentry`` rather than ``~/.cache/otsentry``. ``OTSENTRY_CACHE`` overrides.
- The node listens on 127.0.0.1 only with single-node discovery, so the production bootstrap checks (e.g.
  ``vm.max_map_count``) are not enforced; the heap is small (512 MiB) and security is off: it is a test node.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from services.common import is_root, locked, rss_mib, services_dir, tail

GROUP_ID = "org.elasticsearch.distribution.integ-test-zip"
ARTIFACT_ID = "elasticsearch"
PREFERRED = (8, 19)  # the newest 8.19 patch first; any other 8.x patch only if no 8.19 zip can be fetched
SERVICE_USER = os.environ.get("OTSENTRY_ES_USER_ACCOUNT", "otsentry-es")
HOST = "127.0.0.1"
PORT = int(os.environ.get("OTSENTRY_ES_PORT", "9200"))
HEAP = os.environ.get("OTSENTRY_ES_HEAP", "512m")
START_TIMEOUT_S = float(os.environ.get("OTSENTRY_ES_START_TIMEOUT", "120"))
STOP_TIMEOUT_S = 60.0


class ServiceError(RuntimeError):
    """A failure the user can act on: printed as one line (plus where to look), exit code 1."""


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def installed_versions() -> list[str]:
    """Versions already unpacked in the cache, newest first (an install marker guards against half-unpacked ones)."""
    found = []
    for marker in services_dir().glob("elasticsearch-8.*/home/.otsentry-installed"):
        version = marker.parent.parent.name.removeprefix("elasticsearch-")
        if re.fullmatch(r"8\.\d+\.\d+", version):
            found.append(version)
    return sorted(found, key=version_key, reverse=True)


def _mvn(args: list[str], repo: Path) -> subprocess.CompletedProcess[str]:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError("mvn (Maven) is needed to download Elasticsearch from Maven Central: apt-get install maven")
    return subprocess.run([mvn, "-B", "-q", "-C", f"-Dmaven.repo.local={repo}", *args],
                          capture_output=True, text=True, check=False)


def available_versions(repo: Path) -> list[str]:
    """Every 8.x version Maven Central lists for the zip, in preference order (8.19.x newest first, then 8.x).

    Maven has no "list versions" command outside a project, so a throw-away pom depends on the range
    ``[8.0.0,9.0.0)``: resolving it makes Maven fetch the artifact's ``maven-metadata.xml``, which is then read.
    """
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "pom.xml").write_text(f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>otsentry.services</groupId><artifactId>es-versions</artifactId><version>0</version>
  <packaging>pom</packaging>
  <dependencies><dependency><groupId>{GROUP_ID}</groupId><artifactId>{ARTIFACT_ID}</artifactId>
    <version>[8.0.0,9.0.0)</version><type>pom</type></dependency></dependencies>
</project>
""")
        proc = _mvn(["-f", str(Path(tmp, "pom.xml")), "dependency:resolve", "-DexcludeTransitive=true"], repo)
    metadata = repo.joinpath(*GROUP_ID.split("."), ARTIFACT_ID)
    versions: set[str] = set()
    for meta in metadata.glob("maven-metadata-*.xml"):
        versions.update(re.findall(r"<version>(8\.\d+\.\d+)</version>", meta.read_text()))
    if not versions:
        raise ServiceError("could not list Elasticsearch versions on Maven Central:\n" + tail(proc.stdout + proc.stderr))
    return sorted(versions, key=lambda v: (version_key(v)[:2] == PREFERRED, version_key(v)), reverse=True)


def download(version: str, repo: Path) -> Path | None:
    """The zip for ``version`` fetched by ``mvn dependency:get`` (checksums enforced), or None when it is missing."""
    proc = _mvn(["dependency:get", f"-Dartifact={GROUP_ID}:{ARTIFACT_ID}:{version}:zip", "-Dtransitive=false"], repo)
    zip_path = repo.joinpath(*GROUP_ID.split("."), ARTIFACT_ID, version, f"{ARTIFACT_ID}-{version}.zip")
    if proc.returncode != 0 or not zip_path.is_file():
        print(f"elasticsearch {version}: not fetched ({tail(proc.stdout + proc.stderr, 1) or 'mvn failed'})")
        return None
    return zip_path


def unpack(zip_path: Path, dest: Path) -> None:
    """Unzip keeping the executable bits (``zipfile`` drops them) and world-readable modes (the service user reads)."""
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            parts = Path(info.filename).parts
            if len(parts) < 2 or ".." in parts:
                continue
            target = tmp.joinpath(*parts[1:])  # drop the top-level elasticsearch-<version>/ directory
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            executable = (info.external_attr >> 16) & 0o111
            target.chmod(0o755 if executable else 0o644)
    for d in [tmp, *(p for p in tmp.rglob("*") if p.is_dir())]:
        d.chmod(0o755)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    (dest / ".otsentry-installed").write_text(zip_path.name + "\n")


def install() -> str:
    """Download and unpack the newest available 8.19 patch (or another 8.x); a cached install returns at once."""
    pinned = os.environ.get("OTSENTRY_ES_VERSION")
    cached = installed_versions()
    if pinned and pinned in cached or not pinned and cached:
        version = pinned or cached[0]
        print(f"elasticsearch {version}: cached in {services_dir() / f'elasticsearch-{version}'}")
        return version
    t0 = time.monotonic()
    services_dir().mkdir(parents=True, exist_ok=True)
    repo = services_dir() / ".m2-repository"  # private Maven repo: the zip is not duplicated in ~/.m2
    candidates = [pinned] if pinned else available_versions(repo)
    for version in candidates:
        print(f"elasticsearch {version}: downloading {GROUP_ID}:{ARTIFACT_ID}:{version}:zip from Maven Central ...")
        zip_path = download(version, repo)
        if zip_path is None:
            continue
        vdir = services_dir() / f"elasticsearch-{version}"
        vdir.mkdir(parents=True, exist_ok=True)
        kept = vdir / zip_path.name
        shutil.move(str(zip_path), kept)
        unpack(kept, vdir / "home")
        shutil.rmtree(repo, ignore_errors=True)
        print(f"elasticsearch {version}: installed in {vdir} ({time.monotonic() - t0:.1f} s)")
        return version
    raise ServiceError(f"no Elasticsearch 8.x zip could be downloaded (tried {', '.join(candidates[:5])})")


def java_home() -> Path:
    """``ES_JAVA_HOME`` if set, else the JDK of the ``java`` on PATH; Elasticsearch 8 needs Java 17 or newer."""
    env = os.environ.get("ES_JAVA_HOME")
    if env:
        home = Path(env)
    else:
        java = shutil.which("java")
        if java is None:
            raise ServiceError("no java on PATH: install a JDK 17 (apt-get install openjdk-17-jdk-headless)")
        home = Path(java).resolve().parent.parent
    release = home / "release"
    match = re.search(r'JAVA_VERSION="(\d+)', release.read_text()) if release.is_file() else None
    if not (home / "bin" / "java").is_file() or (match and int(match.group(1)) < 17):
        raise ServiceError(f"{home} is not a JDK 17+ (set ES_JAVA_HOME to one)")
    return home


def ensure_service_user() -> pwd.struct_passwd | None:
    """As root: the dedicated system user Elasticsearch runs as (created once). Otherwise None: run as ourselves."""
    if not is_root():
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", SERVICE_USER], check=True)
        print(f"created system user {SERVICE_USER} (Elasticsearch refuses to run as root)")
        return pwd.getpwnam(SERVICE_USER)


def _check_traversable(path: Path) -> None:
    """The service user needs search permission on every ancestor of the node directory."""
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise ServiceError(f"{parent} is not reachable by user {SERVICE_USER} (mode "
                               f"{oct(parent.stat().st_mode & 0o777)}): set OTSENTRY_CACHE to a directory outside it")


def node_config(home: Path, node: Path) -> str:
    """elasticsearch.yml for the local test node (its data and logs outside the read-only distribution)."""
    lines = [
        "cluster.name: otsentry-test",
        "node.name: otsentry-es",
        f"path.data: {node / 'data'}",
        f"path.logs: {node / 'logs'}",
        f"network.host: {HOST}",
        f"http.port: {PORT}",
        "transport.port: 9300-9399",
        "discovery.type: single-node",
        "action.destructive_requires_name: false",
        "cluster.routing.allocation.disk.threshold_enabled: false",
    ]
    if (home / "modules" / "x-pack-security").is_dir():
        lines.append("xpack.security.enabled: false")
    if (home / "modules" / "x-pack-ml").is_dir():
        lines.append("xpack.ml.enabled: false")
    return "\n".join(lines) + "\n"


def prepare_node(version: str, user: pwd.struct_passwd | None) -> Path:
    """The node's own config/data/logs/tmp directories, owned by the service user; the distribution stays read-only."""
    vdir = services_dir() / f"elasticsearch-{version}"
    home, node = vdir / "home", vdir / "node"
    for sub in ("config", "data", "logs", "tmp"):
        (node / sub).mkdir(parents=True, exist_ok=True)
    config = node / "config"
    for item in (home / "config").iterdir():
        target = config / item.name
        if item.is_dir() and not target.exists():
            shutil.copytree(item, target)
        elif item.is_file() and not target.exists():
            shutil.copy2(item, target)
    (config / "elasticsearch.yml").write_text(node_config(home, node))
    (config / "jvm.options.d").mkdir(exist_ok=True)
    (config / "jvm.options.d" / "otsentry.options").write_text(
        f"-XX:HeapDumpPath={node / 'data'}\n-XX:ErrorFile={node / 'logs'}/hs_err_pid%p.log\n")
    if user is not None:
        _check_traversable(node)
        for p in [node, *node.rglob("*")]:
            os.chown(p, user.pw_uid, user.pw_gid, follow_symlinks=False)
    return node


def _health(timeout_s: float = 2.0, wait_yellow: str | None = None) -> dict | None:
    """``GET /_cluster/health`` (this zip has no ``GET /``), or None when nothing answers."""
    query = f"?wait_for_status=yellow&timeout={wait_yellow}" if wait_yellow else ""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{PORT}/_cluster/health{query}", timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _wait_healthy(deadline: float) -> dict | None:
    """Poll ``_cluster/health?wait_for_status=yellow`` until ``deadline`` (monotonic); None if never yellow/green."""
    while time.monotonic() < deadline:
        health = _health(timeout_s=12, wait_yellow="10s")
        if health is not None and health.get("status") in ("green", "yellow"):
            return health
        time.sleep(0.5)
    return None


def _pid(node: Path) -> int | None:
    """The node's pid if that process still runs Elasticsearch (a stale pid file may name a reused pid)."""
    try:
        pid = int((node / "elasticsearch.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"org.elasticsearch" in cmdline and str(node.parent).encode() in cmdline else None


def _current_node() -> tuple[str, Path]:
    versions = installed_versions()
    if not versions:
        raise ServiceError("Elasticsearch is not installed: python3 -m services.elasticsearch install")
    version = os.environ.get("OTSENTRY_ES_VERSION") or versions[0]
    return version, services_dir() / f"elasticsearch-{version}" / "node"


def start() -> None:
    """Start the node (installing first if needed) and wait until the cluster is yellow; a running node is left be."""
    version = install()
    node = services_dir() / f"elasticsearch-{version}" / "node"
    pid = _pid(node)
    if pid is not None:
        if _wait_healthy(time.monotonic() + START_TIMEOUT_S) is None:
            raise ServiceError(f"pid {pid} runs elasticsearch {version} but it is not healthy after "
                               f"{START_TIMEOUT_S:.0f} s: see {node / 'logs'}, or stop it and start again")
        print(f"elasticsearch {version}: already running (pid {pid}) on http://{HOST}:{PORT}")
        return
    if _health():
        raise ServiceError(f"something else already answers on {HOST}:{PORT}: stop it first")
    user = ensure_service_user()
    node = prepare_node(version, user)
    home = node.parent / "home"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ES_JAVA_HOME": str(java_home()),
           "ES_PATH_CONF": str(node / "config"), "ES_TMPDIR": str(node / "tmp"),
           "ES_JAVA_OPTS": f"-Xms{HEAP} -Xmx{HEAP}", "LANG": "C.UTF-8"}
    cmd = [str(home / "bin" / "elasticsearch"), "-d", "-p", str(node / "elasticsearch.pid")]
    if user is not None:
        cmd = ["runuser", "-u", user.pw_name, "--", "env", *(f"{k}={v}" for k, v in env.items()), *cmd]
    startup_log = node / "logs" / "startup.log"
    server_log = node / "logs" / "otsentry-test.log"
    t0 = time.monotonic()
    deadline = t0 + START_TIMEOUT_S
    with open(startup_log, "w") as out:
        # -d: the launcher returns once the server JVM reports it has started (or failed), then only the server stays.
        proc = subprocess.Popen(cmd, cwd=node, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        rc = proc.wait(timeout=START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        rc = None
    if rc != 0:
        _stop_pid(_pid(node))
        why = "did not start" if rc is None else f"exited with code {rc}"
        raise ServiceError(f"elasticsearch {version} {why} within {START_TIMEOUT_S:.0f} s; see {startup_log} and "
                           f"{server_log}\n{tail(startup_log.read_text())}")
    health = _wait_healthy(deadline)
    pid = _pid(node)
    if health is None or pid is None:
        raise ServiceError(f"elasticsearch {version} is not healthy after {START_TIMEOUT_S:.0f} s; see {server_log}")
    who = f" as user {user.pw_name}" if user else ""
    print(f"elasticsearch {version}: started{who} (pid {pid}) on http://{HOST}:{PORT} in {time.monotonic() - t0:.1f} s, "
          f"status {health['status']}, RSS {rss_mib(pid) or 0.0:.0f} MiB, heap {HEAP}; logs in {node / 'logs'}")


def _stop_pid(pid: int | None) -> bool:
    """SIGTERM (Elasticsearch flushes and closes cleanly), a bounded wait, then SIGKILL. True if it was running."""
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        time.sleep(0.2)
    print(f"pid {pid} still running after {STOP_TIMEOUT_S:.0f} s: SIGKILL")
    os.kill(pid, signal.SIGKILL)
    return True


def stop() -> None:
    version, node = _current_node()
    t0 = time.monotonic()
    if _stop_pid(_pid(node)):
        print(f"elasticsearch {version}: stopped in {time.monotonic() - t0:.1f} s")
    else:
        print(f"elasticsearch {version}: not running")


def status() -> int:
    """Exit code 0 when the node runs and is yellow/green, 3 otherwise (like an init script)."""
    try:
        version, node = _current_node()
    except ServiceError as exc:
        print(exc)
        return 3
    pid, health = _pid(node), _health()
    if pid is None:
        print(f"elasticsearch {version}: not running")
        return 3
    if not health:
        print(f"elasticsearch {version}: pid {pid} is up but http://{HOST}:{PORT}/_cluster/health does not answer")
        return 3
    print(f"elasticsearch {version}: running (pid {pid}, RSS {rss_mib(pid) or 0.0:.0f} MiB) on http://{HOST}:{PORT}, "
          f"cluster {health.get('cluster_name')} {health.get('status')}")
    return 0 if health.get("status") in ("green", "yellow") else 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["install", "start", "stop", "status"])
    args = parser.parse_args(argv)
    try:
        if args.command == "status":
            return status()
        with locked("elasticsearch"):
            {"install": install, "start": start, "stop": stop}[args.command]()
    except ServiceError as exc:
        print(f"services.elasticsearch {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
