"""Alerts into Elasticsearch without losing or duplicating one: bulk indexing, retries, a spool and a dead-letter file.

The guarantees and why they hold:

- **No duplicates.** Every document's ``_id`` is the alert id (a hash of window, asset pair and rule) and its index
  is the daily index of its own ``@timestamp``, and documents are sent with ``op_type=create``: indexing the same
  alert again (a replay, a retry after a timeout whose first attempt did land, a drained spool) is answered 409,
  which counts as "already there".
- **No losses while Elasticsearch is away.** Requests are retried with exponential backoff; what still cannot be
  delivered is appended (fsync'ed) to a local JSONL spool, and every later flush first drains the spool, in order,
  before sending anything new. While the spool is non-empty, a flush probes once instead of backing off again, so a
  live pipeline is not stalled by a dead cluster.
- **Partial failures.** Documents a bulk answers 429 or 5xx are retried one by one (only those); documents it
  rejects (a mapping error: 4xx other than 409/429) cannot succeed by retrying and go to a dead-letter JSONL file
  with Elasticsearch's reason, while the rest of the batch is indexed.
- **Credentials.** API key, user/password and CA come from ``OTSENTRY_ES_API_KEY``, ``OTSENTRY_ES_USER`` /
  ``OTSENTRY_ES_PASSWORD`` and ``OTSENTRY_ES_CA``; a ``user:password@`` in the URL is moved to basic auth. Only the
  URL without credentials is ever logged or printed. TLS certificates are always verified.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import unquote, urlsplit, urlunsplit

from otsentry.alerts.ecs import to_ecs
from otsentry.alerts.elastic_template import DEFAULT_PREFIX, index_for, index_template, template_name
from otsentry.errors import ServiceError
from otsentry.records import Alert

__all__ = ["Action", "ElasticConfig", "ElasticError", "ElasticSink", "ElasticUnavailable", "SinkStats",
    "cluster_health", "default_state_dir", "ensure_template", "make_client", "redact"]

log = logging.getLogger(__name__)

Action = tuple[str, str, dict[str, Any]]  # (index, _id, document)


class ElasticError(ServiceError, RuntimeError):
    """Elasticsearch refused in a way retrying cannot fix (bad credentials, bad URL): a one-line message."""


class ElasticUnavailable(ElasticError):
    """Elasticsearch could not be reached (or kept answering 429/5xx) after the retries."""


@dataclass(frozen=True)
class ElasticConfig:
    """Where and how to connect. ``repr`` never shows the secrets."""

    url: str
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    timeout_s: float = 30.0

    @classmethod
    def from_env(cls, url: str, env: Mapping[str, str] = os.environ, timeout_s: float = 30.0) -> "ElasticConfig":
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ElasticError(f"not an Elasticsearch URL: {redact(url)} (expected http[s]://HOST:PORT)")
        user, password = env.get("OTSENTRY_ES_USER"), env.get("OTSENTRY_ES_PASSWORD")
        if parts.username is not None:  # credentials in the URL: use them, but never keep them in the URL
            user, password = unquote(parts.username), unquote(parts.password or "")
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        return cls(clean, env.get("OTSENTRY_ES_API_KEY") or None, user or None, password,
                   env.get("OTSENTRY_ES_CA") or None, timeout_s)


def redact(url: str) -> str:
    """``url`` without any ``user:password@`` part: what may be logged."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit((parts.scheme, parts.netloc.rsplit("@", 1)[-1], parts.path, parts.query, parts.fragment))


def make_client(config: ElasticConfig):
    """An ``elasticsearch.Elasticsearch`` client; its own retries are off because the sink retries with backoff."""
    from elasticsearch import Elasticsearch

    kwargs: dict[str, Any] = {"request_timeout": config.timeout_s, "max_retries": 0, "retry_on_timeout": False}
    if config.url.startswith("https://"):
        kwargs["verify_certs"] = True
        if config.ca_certs:
            if not Path(config.ca_certs).is_file():
                raise ElasticError(f"OTSENTRY_ES_CA: {config.ca_certs} is not a file")
            kwargs["ca_certs"] = config.ca_certs
    if config.api_key:
        kwargs["api_key"] = config.api_key
    elif config.username:
        kwargs["basic_auth"] = (config.username, config.password or "")
    return Elasticsearch(config.url, **kwargs)


def cluster_health(client, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """``_cluster/health`` or None: the readiness probe (the test node's zip answers no ``GET /``, so no ``ping()``)."""
    from elasticsearch import ApiError, TransportError

    try:
        return dict(client.options(request_timeout=timeout_s).cluster.health())
    except (ApiError, TransportError):
        return None


def ensure_template(client, prefix: str = DEFAULT_PREFIX, mappings: dict[str, Any] | None = None) -> None:
    """Install (or update) the index template: PUT is idempotent, so every sink start does it."""
    client.indices.put_index_template(name=template_name(prefix), **index_template(prefix, mappings=mappings))


def default_state_dir() -> Path:
    """Spool and dead-letter files: ``$OTSENTRY_STATE_DIR`` or ``~/.local/state/otsentry`` (they outlive a run)."""
    env = os.environ.get("OTSENTRY_STATE_DIR")
    return Path(env) if env else Path.home() / ".local" / "state" / "otsentry"


@dataclass
class SinkStats:
    indexed: int = 0  # acknowledged as created
    duplicates: int = 0  # already in the index (409 on create): not an error
    dead_lettered: int = 0
    spooled: int = 0  # appended to the spool (may be delivered later)
    retried: int = 0  # documents sent again after a 429/5xx or a failed request


class ElasticSink:
    """Buffers ECS documents and bulk-indexes them; see the module docstring for the guarantees.

    ``flush()`` returns True when every document given so far is acknowledged by Elasticsearch (indexed, already
    there, or dead-lettered), False when some wait in the spool. With ``spool=False`` (a Kafka consumer that
    commits offsets only on acknowledgement) an unreachable cluster raises ``ElasticUnavailable`` instead and the
    documents stay buffered.
    """

    def __init__(self, client, prefix: str = DEFAULT_PREFIX, *, state_dir: Path | None = None,
                 spool_path: Path | None = None, dead_letter_path: Path | None = None,
                 observer_name: str | None = None, batch_size: int = 500, flush_interval_s: float | None = None,
                 retries: int = 4, backoff_s: float = 0.5, max_backoff_s: float = 8.0, spool: bool = True,
                 display_url: str = "Elasticsearch", mappings: dict[str, Any] | None = None,
                 replace: bool = False) -> None:
        state = state_dir or default_state_dir()
        self.client, self.prefix, self.observer_name = client, prefix, observer_name
        self.spool_path = Path(spool_path or state / f"{prefix}.spool.jsonl")
        self.dead_letter_path = Path(dead_letter_path or state / f"{prefix}.dead-letter.jsonl")
        self.batch_size, self.retries, self.use_spool = batch_size, retries, spool
        self.backoff_s, self.max_backoff_s, self.display_url = backoff_s, max_backoff_s, display_url
        self.stats = SinkStats()
        # replace=True (incidents): a document of the same id overwrites the older version (an open incident grows);
        # alerts never change, so they are created once and a second copy is a counted duplicate.
        self.mappings, self.op = mappings, "index" if replace else "create"
        self._buffer: list[Action] = []
        self._lock = threading.RLock()
        self._template_ready = False
        self._known_indices: set[str] = set()
        self._unreachable = False
        self._closed = threading.Event()
        self._timer: threading.Thread | None = None
        if flush_interval_s:
            self._timer = threading.Thread(target=self._flush_periodically, args=(flush_interval_s,), daemon=True,
                                           name="otsentry-es-flush")
            self._timer.start()

    # -- input -------------------------------------------------------------------------------------------------

    def write(self, alert: Alert) -> None:
        self.write_document(to_ecs(alert, self.observer_name))

    def write_document(self, doc: dict[str, Any]) -> None:
        """Queue one ECS document (e.g. read back from Kafka or a JSONL file); flushes when the batch is full."""
        try:
            action = (index_for(doc["@timestamp"], self.prefix), str(doc["event"]["id"]), doc)
        except (KeyError, TypeError, ValueError) as exc:
            self._dead_letter(("", "", doc), 0, {"type": "otsentry_invalid_document", "reason": f"missing or bad {exc}"})
            return
        with self._lock:
            self._buffer.append(action)
            full = len(self._buffer) >= self.batch_size
        if full:
            self.flush()

    def extend(self, alerts: Iterable[Alert]) -> None:
        for alert in alerts:
            self.write(alert)

    # -- output ------------------------------------------------------------------------------------------------

    def flush(self) -> bool:
        with self._lock:
            batch, self._buffer = self._buffer, []
            try:
                remaining = self._deliver(batch) if self._drain_spool() else batch
            except ElasticError:  # not retryable (credentials, a bad request): keep the documents, then tell
                self._keep(batch)
                raise
            if not remaining:
                return True
            self._keep(remaining)
            if not self.use_spool:
                raise ElasticUnavailable(f"{self.display_url} is unreachable")
            return False

    def _keep(self, actions: list[Action]) -> None:
        """Undelivered documents: into the spool, or back to the front of the buffer when spooling is off."""
        if self.use_spool:
            self._append_spool(actions)
        else:
            self._buffer = actions + self._buffer

    def close(self) -> bool:
        """Flush what is buffered and stop the periodic flusher; True if nothing is left in the spool."""
        self._closed.set()
        if self._timer is not None:
            self._timer.join(timeout=5)
        return self.flush()

    def pending_in_spool(self) -> int:
        with self._lock:
            return sum(1 for _ in self._spool_lines(self._spool_offset())[0])

    def _flush_periodically(self, interval_s: float) -> None:
        while not self._closed.wait(interval_s):
            try:
                if self._buffer or self.spool_path.exists():
                    self.flush()
            except ElasticError as exc:
                log.warning("%s", exc)

    # -- delivery ----------------------------------------------------------------------------------------------

    def _deliver(self, actions: list[Action]) -> list[Action]:
        """Send with retries; returns what could not be delivered (transient failures only)."""
        pending = actions
        attempts = 1 if self._unreachable else self.retries + 1
        for attempt in range(attempts):
            if not pending:
                break
            if attempt:
                self.stats.retried += len(pending)
                time.sleep(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2))
            try:
                pending = self._send(pending)
            except ElasticUnavailable as exc:
                if not self._unreachable and attempt == attempts - 1:
                    log.warning("%s; %s until it is back", exc, f"alerts go to the spool {self.spool_path}"
                                if self.use_spool else "alerts are held and retried")
                    self._unreachable = True
                continue
            if self._unreachable:
                log.warning("%s is reachable again%s", self.display_url, ": draining the spool" if self.use_spool else "")
                self._unreachable = False
        if pending and not self._unreachable:
            log.warning("%d alerts still answered 429/5xx after %d retries: kept for a later flush", len(pending),
                        self.retries)
        return pending

    def _send(self, actions: list[Action]) -> list[Action]:
        """One bulk request; returns the documents to retry (429/5xx); dead-letters the rejected ones."""
        from elasticsearch import ApiError, TransportError

        try:
            self._prepare(actions)
            operations: list[dict[str, Any]] = []
            for index, doc_id, doc in actions:
                operations.append({self.op: {"_index": index, "_id": doc_id}})
                operations.append(doc)
            response = self.client.bulk(operations=operations)
        except ApiError as exc:
            if exc.status_code in (401, 403):
                raise ElasticError(f"{self.display_url} refused the credentials (HTTP {exc.status_code})") from None
            if exc.status_code == 429 or exc.status_code >= 500:
                raise ElasticUnavailable(f"{self.display_url} answered HTTP {exc.status_code}") from None
            raise ElasticError(f"{self.display_url} rejected the request (HTTP {exc.status_code}: {exc.message})") \
                from None
        except TransportError as exc:
            raise ElasticUnavailable(f"{self.display_url} is unreachable ({type(exc).__name__})") from None
        retry: list[Action] = []
        for action, item in zip(actions, response["items"]):
            result = item.get(self.op) or next(iter(item.values()))
            status = int(result.get("status", 500))
            if 200 <= status < 300:
                self.stats.indexed += 1
            elif status == 409:
                self.stats.duplicates += 1
            elif status == 429 or status >= 500:
                retry.append(action)
            else:
                self._dead_letter(action, status, result.get("error") or {})
        return retry

    def _prepare(self, actions: list[Action]) -> None:
        """The template before any index exists, and each daily index created explicitly (so the alias and
        mappings apply even on clusters where auto-creating indices is off)."""
        from elasticsearch import ApiError

        if not self._template_ready:
            ensure_template(self.client, self.prefix, self.mappings)
            self._template_ready = True
        for index in {a[0] for a in actions} - self._known_indices:
            try:
                self.client.indices.create(index=index)
            except ApiError as exc:
                if exc.error != "resource_already_exists_exception":
                    raise
            self._known_indices.add(index)

    def _dead_letter(self, action: Action, status: int, error: Mapping[str, Any]) -> None:
        index, doc_id, doc = action
        reason = {k: error[k] for k in ("type", "reason", "caused_by") if k in error}
        self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
        with self.dead_letter_path.open("a") as f:
            f.write(json.dumps({"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "index": index,
                                "id": doc_id, "status": status, "error": reason, "document": doc},
                               sort_keys=True) + "\n")
        self.stats.dead_lettered += 1
        log.warning("alert %s rejected by %s (%s: %s); written to %s", doc_id or "?", self.display_url,
                    reason.get("type", status), reason.get("reason", ""), self.dead_letter_path)

    # -- spool -------------------------------------------------------------------------------------------------
    # The spool is append-only JSONL plus an offset file holding how many bytes are already delivered; a crash
    # between delivery and the offset update only re-sends documents, which creates answer 409.

    def _offset_path(self) -> Path:
        return self.spool_path.with_name(self.spool_path.name + ".offset")

    def _spool_offset(self) -> int:
        try:
            return int(self._offset_path().read_text())
        except (OSError, ValueError):
            return 0

    def _spool_lines(self, offset: int) -> tuple[list[bytes], int]:
        if not self.spool_path.exists():
            return [], 0
        data = self.spool_path.read_bytes()
        return data[offset:].splitlines(keepends=True), len(data)

    def _append_spool(self, actions: list[Action]) -> None:
        if not actions:
            return
        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        with self.spool_path.open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            for index, doc_id, doc in actions:
                f.write(json.dumps({"index": index, "id": doc_id, "doc": doc}, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.stats.spooled += len(actions)

    def _drain_spool(self) -> bool:
        """Deliver the spool in order; True when it is empty afterwards."""
        if not self.spool_path.exists():
            return True
        with self.spool_path.open("rb+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two processes never drain (and re-order) the same spool
            offset = self._spool_offset()
            lines, size = self._spool_lines(offset)
            for start in range(0, len(lines), self.batch_size):
                chunk = lines[start:start + self.batch_size]
                actions = [(r["index"], r["id"], r["doc"]) for r in map(json.loads, chunk)]
                remaining = self._deliver(actions)
                if remaining:  # keep the undelivered ones first, then everything after the chunk
                    rest = b"".join(lines[start + self.batch_size:])
                    tmp = self.spool_path.with_name(self.spool_path.name + ".tmp")
                    tmp.write_bytes(b"".join(json.dumps({"index": i, "id": d, "doc": doc}, sort_keys=True).encode()
                                             + b"\n" for i, d, doc in remaining) + rest)
                    os.replace(tmp, self.spool_path)
                    self._offset_path().unlink(missing_ok=True)
                    return False
                offset += sum(len(line) for line in chunk)
                self._offset_path().write_text(str(offset))
            if offset >= size:
                self.spool_path.unlink(missing_ok=True)
                self._offset_path().unlink(missing_ok=True)
        return True
