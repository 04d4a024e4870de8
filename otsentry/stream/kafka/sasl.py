"""Ask a broker directly whether it accepts our SASL login (PLAIN, SCRAM-SHA-256/512), over the raw protocol.

Why: kafka-python 3 sends SaslAuthenticate v2, and when the broker refuses the login it closes the socket right after
its answer; the client sees "socket disconnected" and finally ``KafkaTimeoutError: Unable to bootstrap``, exactly
what a broker that is down looks like. A daemon would then retry a wrong password with backoff forever. Only when a
client could not start is this probe run, once, to tell the two apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct

__all__ = ["refused_login"]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.take(">h")
        value = self.data[self.pos:self.pos + max(length, 0)].decode(errors="replace")
        self.pos += max(length, 0)
        return value

    def blob(self) -> bytes:
        length = self.take(">i")
        value = self.data[self.pos:self.pos + max(length, 0)]
        self.pos += max(length, 0)
        return value


def _recv(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed by the broker")
        data += chunk
    return data


def _request(sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes) -> _Reader:
    client = b"otsentry-probe"
    message = struct.pack(">hhih", api_key, version, correlation, len(client)) + client + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    reader = _Reader(_recv(sock, struct.unpack(">i", _recv(sock, 4))[0]))
    if reader.take(">i") != correlation:
        raise OSError("unexpected correlation id")
    return reader


def _authenticate(sock: socket.socket, correlation: int, token: bytes) -> tuple[str | None, bytes]:
    """SaslAuthenticate v1 (not flexible): (None, server data) when accepted, else (the broker's reason, b"")."""
    reader = _request(sock, 36, 1, correlation, struct.pack(">i", len(token)) + token)
    error = reader.take(">h")
    message = reader.string()
    data = reader.blob()
    return (f"{message or 'authentication failed'} (error {error})", b"") if error else (None, data)


def _scram(sock: socket.socket, mechanism: str, username: str, password: str) -> str | None:
    """RFC 5802, client side."""
    digest = hashlib.sha256 if mechanism == "SCRAM-SHA-256" else hashlib.sha512
    nonce = base64.b64encode(os.urandom(24)).decode()
    first_bare = "n={},r={}".format(username.replace("=", "=3D").replace(",", "=2C"), nonce)
    error, server_first = _authenticate(sock, 3, ("n,," + first_bare).encode())
    if error:
        return error
    attrs = dict(part.split("=", 1) for part in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac(digest().name, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    final_bare = f"c=biws,r={attrs['r']}"
    auth_message = f"{first_bare},{server_first.decode()},{final_bare}".encode()
    signature = hmac.new(digest(client_key).digest(), auth_message, digest).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    return _authenticate(sock, 4, f"{final_bare},p={proof}".encode())[0]


def refused_login(server: str, mechanism: str, username: str, password: str, *, use_tls: bool = False,
                  tls: ssl.SSLContext | None = None, timeout_s: float = 5.0) -> str | None:
    """The broker's reason for refusing this login, or None when it accepts it.

    Raises OSError when nothing (or not a Kafka broker) answers on ``server`` (``host:port``).
    """
    host, _, port = server.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as raw:
            sock = (tls or ssl.create_default_context()).wrap_socket(raw, server_hostname=host) if use_tls else raw
            sock.settimeout(timeout_s)
            reader = _request(sock, 17, 1, 1, struct.pack(">h", len(mechanism)) + mechanism.encode())
            if reader.take(">h"):
                enabled = [reader.string() for _ in range(reader.take(">i"))]
                return f"mechanism {mechanism} is not enabled (the listener offers {', '.join(enabled) or 'none'})"
            if mechanism == "PLAIN":
                return _authenticate(sock, 2, f"\0{username}\0{password}".encode())[0]
            return _scram(sock, mechanism, username, password)
    except (struct.error, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise OSError(f"unexpected SASL answer from {server}: {exc!r}") from None
