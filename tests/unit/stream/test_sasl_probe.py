"""The SASL login probe against a scripted broker: refusals are told apart from outages, junk never escapes."""

from __future__ import annotations

import socket
import struct
import threading

import pytest
from hypothesis import given, settings, strategies as st

from otsentry.stream.kafka.sasl import refused_login


def _frame(correlation: int, body: bytes) -> bytes:
    payload = struct.pack(">i", correlation) + body
    return struct.pack(">i", len(payload)) + payload


def _serve(answers: list[bytes]) -> tuple[str, threading.Thread]:
    """A one-connection TCP server that reads a request and sends the next scripted answer, in turn."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def run() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            conn.settimeout(5)
            for answer in answers:
                size = struct.unpack(">i", conn.recv(4))[0]
                while size:
                    size -= len(conn.recv(size))
                conn.sendall(answer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return f"127.0.0.1:{port}", thread


HANDSHAKE_OK = _frame(1, struct.pack(">hi", 0, 1) + struct.pack(">h", 5) + b"PLAIN")


def _auth(error: int, message: str) -> bytes:
    raw = message.encode()
    return _frame(2, struct.pack(">h", error) + struct.pack(">h", len(raw)) + raw + struct.pack(">i", 0))


def test_a_refused_plain_login_returns_the_brokers_reason():
    server, thread = _serve([HANDSHAKE_OK, _auth(58, "Invalid username or password")])
    reason = refused_login(server, "PLAIN", "otsentry", "wrong")
    thread.join(5)
    assert reason is not None and "Invalid username or password" in reason and "58" in reason


def test_an_accepted_plain_login_returns_none():
    server, thread = _serve([HANDSHAKE_OK, _frame(2, struct.pack(">hhi", 0, -1, 0))])
    assert refused_login(server, "PLAIN", "otsentry", "right") is None
    thread.join(5)


def test_a_mechanism_the_listener_lacks_is_a_refusal_naming_what_it_offers():
    answer = _frame(1, struct.pack(">hi", 33, 1) + struct.pack(">h", 13) + b"SCRAM-SHA-512")
    server, thread = _serve([answer])
    reason = refused_login(server, "PLAIN", "otsentry", "x")
    thread.join(5)
    assert reason is not None and "SCRAM-SHA-512" in reason


def test_nothing_listening_is_an_oserror_not_a_refusal():
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(OSError):
        refused_login(f"127.0.0.1:{port}", "PLAIN", "u", "p", timeout_s=1)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=64))
def test_junk_answers_raise_only_oserror(junk):
    server, thread = _serve([junk])
    try:
        refused_login(server, "SCRAM-SHA-256", "otsentry", "p", timeout_s=0.5)
    except OSError:
        pass
    thread.join(5)
