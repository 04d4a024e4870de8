"""A minimal Kafka client over the raw protocol, standard library only: the broker's metadata and a SASL login.

Two users: ``otsentry.stream.kafka.sasl`` (why a daemon could not connect: a refused login or a broker that is
down) and ``services/kafka.py`` (is the test broker ready, does its SASL listener accept the test user), which
runs before the virtualenv exists. Only non-flexible request versions are spoken, which every broker since 1.0
accepts. SCRAM (RFC 5802) is checked both ways: the server's nonce must extend ours and its final signature must
prove it knows the password; a failed check is a refused login.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
from typing import Any

from otsentry.errors import ServiceError

__all__ = ["Reader", "UnexpectedAnswer", "metadata", "request", "sasl_login", "scram_nonce"]

CLIENT_ID = b"otsentry-probe"


class UnexpectedAnswer(ServiceError, OSError):
    """The peer answered, but not as a Kafka broker would (``cause`` is the parsing error)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"unexpected SASL answer: {cause!r}")
        self.cause = cause


class Reader:
    """Big-endian fields of one response, read in order."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> Any:
        """One field (an int), or a tuple of them when ``fmt`` has several."""
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

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
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise OSError("connection closed by the broker")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def request(sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes) -> Reader:
    """Send one request (header v1) and read its response; the correlation id must match."""
    message = struct.pack(">hhih", api_key, version, correlation, len(CLIENT_ID)) + CLIENT_ID + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    reader = Reader(_recv(sock, struct.unpack(">i", _recv(sock, 4))[0]))
    if reader.take(">i") != correlation:
        raise OSError("unexpected correlation id")
    return reader


def metadata(sock: socket.socket) -> dict | None:
    """ApiVersions, then Metadata without topics: {"brokers", "controller_id", "cluster_id"}, or None when the
    peer is not (yet) a broker that lists a live broker. A TCP accept alone proves nothing."""
    reader = request(sock, 18, 0, 1, b"")  # ApiVersions v0: every broker answers it
    if reader.take(">h") != 0:
        return None
    versions = {}
    for _ in range(reader.take(">i")):
        key, low, high = reader.take(">hhh")
        versions[key] = (low, high)
    if 3 not in versions:
        return None
    low, high = versions[3]
    version = max(low, min(high, 8))  # Metadata v1..v8: the non-flexible encodings
    if version > 8:
        return {"brokers": [], "controller_id": -1, "cluster_id": None, "metadata": "flexible only"}
    body = struct.pack(">i", 0)  # no topics: brokers and controller only
    if version >= 4:
        body += b"\x00"  # allow_auto_topic_creation = false
    if version >= 8:
        body += b"\x00\x00"  # include cluster / topic authorized operations = false
    reader = request(sock, 3, version, 2, body)
    if version >= 3:
        reader.take(">i")  # throttle_time_ms
    brokers = []
    for _ in range(reader.take(">i")):
        node_id = reader.take(">i")
        host = reader.string()
        port = reader.take(">i")
        reader.string()  # rack
        brokers.append({"node_id": node_id, "host": host, "port": port})
    cluster_id = reader.string() if version >= 2 else None
    controller_id = reader.take(">i")
    if not brokers:
        return None
    return {"brokers": brokers, "controller_id": controller_id, "cluster_id": cluster_id}


def _authenticate(sock: socket.socket, correlation: int, token: bytes) -> tuple[str | None, bytes]:
    """SaslAuthenticate v1 (not flexible): (None, server data) when accepted, else (the broker's reason, b"")."""
    reader = request(sock, 36, 1, correlation, struct.pack(">i", len(token)) + token)
    error = reader.take(">h")
    message = reader.string()
    data = reader.blob()
    return (f"{message or 'authentication failed'} (error {error})", b"") if error else (None, data)


def scram_nonce() -> str:
    """The client nonce of a SCRAM exchange: 24 random bytes, base64."""
    return base64.b64encode(os.urandom(24)).decode()


def _scram(sock: socket.socket, mechanism: str, username: str, password: str) -> str | None:
    """RFC 5802, client side, with the server's nonce and signature checked."""
    digest = hashlib.sha256 if mechanism == "SCRAM-SHA-256" else hashlib.sha512
    nonce = scram_nonce()
    first_bare = "n={},r={}".format(username.replace("=", "=3D").replace(",", "=2C"), nonce)
    error, server_first = _authenticate(sock, 3, ("n,," + first_bare).encode())
    if error:
        return error
    attrs = dict(part.split("=", 1) for part in server_first.decode().split(","))
    if not attrs.get("r", "").startswith(nonce):
        return "the server's SCRAM nonce does not extend ours"
    salted = hashlib.pbkdf2_hmac(digest().name, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    final_bare = f"c=biws,r={attrs['r']}"
    auth_message = f"{first_bare},{server_first.decode()},{final_bare}".encode()
    signature = hmac.new(digest(client_key).digest(), auth_message, digest).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    error, server_final = _authenticate(sock, 4, f"{final_bare},p={proof}".encode())
    if error:
        return error
    expected = hmac.new(hmac.new(salted, b"Server Key", digest).digest(), auth_message, digest).digest()
    if server_final.decode() != "v=" + base64.b64encode(expected).decode():
        return "the server's SCRAM signature is wrong"
    return None


def sasl_login(sock: socket.socket, mechanism: str, username: str, password: str) -> str | None:
    """SaslHandshake then the login on a connected socket: None when accepted, else the reason it was not.

    Raises ``UnexpectedAnswer`` (an OSError) on an answer that is not Kafka's, OSError when the connection drops.
    """
    try:
        reader = request(sock, 17, 1, 1, struct.pack(">h", len(mechanism)) + mechanism.encode())
        if reader.take(">h"):
            enabled = [reader.string() for _ in range(reader.take(">i"))]
            return f"mechanism {mechanism} is not enabled (the listener offers {', '.join(enabled) or 'none'})"
        if mechanism == "PLAIN":
            return _authenticate(sock, 2, f"\0{username}\0{password}".encode())[0]
        return _scram(sock, mechanism, username, password)
    except (struct.error, KeyError, ValueError, UnicodeDecodeError) as exc:
        raise UnexpectedAnswer(exc) from None
