"""Ask a broker directly whether it accepts our SASL login (PLAIN, SCRAM-SHA-256/512), over the raw protocol.

Why: kafka-python 3 sends SaslAuthenticate v2, and when the broker refuses the login it closes the socket right after
its answer; the client sees "socket disconnected" and finally ``KafkaTimeoutError: Unable to bootstrap``, exactly
what a broker that is down looks like. A daemon would then retry a wrong password with backoff forever. Only when a
client could not start is this probe run, once, to tell the two apart (``otsentry.stream.kafka.wire`` speaks).
"""

from __future__ import annotations

import socket
import ssl

from otsentry.stream.kafka.wire import UnexpectedAnswer, sasl_login

__all__ = ["refused_login"]


def refused_login(server: str, mechanism: str, username: str, password: str, *, use_tls: bool = False,
                  tls: ssl.SSLContext | None = None, timeout_s: float = 5.0) -> str | None:
    """The broker's reason for refusing this login, or None when it accepts it.

    Raises OSError when nothing (or not a Kafka broker) answers on ``server`` (``host:port``).
    """
    host, _, port = server.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    with socket.create_connection((host, int(port)), timeout=timeout_s) as raw:
        sock = (tls or ssl.create_default_context()).wrap_socket(raw, server_hostname=host) if use_tls else raw
        sock.settimeout(timeout_s)
        try:
            return sasl_login(sock, mechanism, username, password)
        except UnexpectedAnswer as exc:
            raise OSError(f"unexpected SASL answer from {server}: {exc.cause!r}") from None
