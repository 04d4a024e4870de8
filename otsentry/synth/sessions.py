"""Non-Modbus remote-access services appearing on the OT segment: SMB (445/tcp) and RDP (3389/tcp) sessions.

Lateral movement in a plant rarely speaks Modbus: an attacker who got into one Windows machine copies tools to the
next over SMB, or opens a remote desktop on the HMI. The sessions here are what a sniffer sees of that: well-formed
enough for Wireshark to dissect without complaint, opaque where the real protocols are encrypted.

* SMB: SMB 3.0.2 in clear for the negotiation and the NTLMv2 authentication (SPNEGO-wrapped NTLMSSP), then, since
  the HMI's shares require encryption, only SMB3 transform headers around encrypted bytes: a tool copied to
  ADMIN$, a service created and started over the svcctl pipe (PsExec's pattern), and a second session later that
  deletes it.
* RDP: the X.224 connection request and confirm in clear (a cookie with the user name, CredSSP/NLA selected), then
  TLS 1.3 (client and server hello in clear, the rest application data): NLA, the RDP connection sequence, and a
  few minutes of keyboard/mouse input and screen updates.

Every frame of these connections is an attack frame. Payload bytes that would be encrypted come from the session's
own RNG, so a seed gives the same capture.
"""

from __future__ import annotations

import random
import struct
from typing import Iterator

from otsentry.contracts.network import ACK, PSH
from otsentry.synth.actor import TcpClientActor
from otsentry.synth.plant import Host
from otsentry.synth.sim import FLOW_TCP, Sim
from otsentry.synth.truth import AttackLog

__all__ = ["MSS", "NTLM_FLAGS", "OID_NTLMSSP", "OID_SPNEGO", "PROTOCOL_HYBRID", "PROTOCOL_SSL", "RDP_PORT",
    "RdpSession", "SMB2_NEGOTIATE", "SMB2_SESSION_SETUP", "SMB_DIALECTS", "SMB_PORT",
    "STATUS_MORE_PROCESSING_REQUIRED", "STATUS_SUCCESS", "ServiceSession", "SmbLateralMovement",
    "TLS_CHANGE_CIPHER_SPEC", "av_pairs", "der", "filetime", "nbss", "ntlm_authenticate", "ntlm_challenge",
    "ntlm_negotiate", "server_target_info", "smb2_header", "smb2_negotiate_request", "smb2_negotiate_response",
    "smb2_session_setup_request", "smb2_session_setup_response", "smb3_encrypted", "spnego_init", "spnego_resp",
    "tls13_client_hello", "tls13_server_hello", "tls_app_data", "tls_record", "tpkt", "utf16",
    "x224_connection_confirm", "x224_connection_request"]

_MS = 1_000_000
_US = 1_000
MSS = 1460
SMB_PORT = 445
RDP_PORT = 3389
_FILETIME_EPOCH = 116_444_736_000_000_000  # 1601-01-01 to 1970-01-01 in 100 ns units


def filetime(ts_ns: int) -> int:
    return ts_ns // 100 + _FILETIME_EPOCH


def utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


# -- DER / SPNEGO ---------------------------------------------------------------------------------------------------

def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = b"\x81" + bytes([n])
    else:
        length = b"\x82" + n.to_bytes(2, "big")
    return bytes([tag]) + length + content


OID_SPNEGO = der(0x06, bytes.fromhex("2b0601050502"))  # 1.3.6.1.5.5.2
OID_NTLMSSP = der(0x06, bytes.fromhex("2b06010401823702020a"))  # 1.3.6.1.4.1.311.2.2.10


def spnego_init(mech_token: bytes | None = None) -> bytes:
    """GSS-API initial context token: SPNEGO negTokenInit offering NTLMSSP (with its first token, if given)."""
    body = der(0xA0, der(0x30, OID_NTLMSSP))
    if mech_token is not None:
        body += der(0xA2, der(0x04, mech_token))
    return der(0x60, OID_SPNEGO + der(0xA0, der(0x30, body)))


def spnego_resp(state: int, token: bytes | None = None, mech: bool = False, mic: bytes | None = None) -> bytes:
    """SPNEGO negTokenResp: negState (0 accept-completed, 1 accept-incomplete), supportedMech, token, MIC."""
    body = der(0xA0, der(0x0A, bytes([state])))
    if mech:
        body += der(0xA1, OID_NTLMSSP)
    if token is not None:
        body += der(0xA2, der(0x04, token))
    if mic is not None:
        body += der(0xA3, der(0x04, mic))
    return der(0xA1, der(0x30, body))


# -- NTLMSSP --------------------------------------------------------------------------------------------------------

NTLM_FLAGS = 0xE2088297
_NTLM_VERSION = struct.pack("<BBHBBBB", 10, 0, 19041, 0, 0, 0, 15)  # Windows 10 build 19041, NTLM revision 15


def ntlm_negotiate() -> bytes:
    return b"NTLMSSP\0" + struct.pack("<II", 1, NTLM_FLAGS) + struct.pack("<HHIHHI", 0, 0, 0, 0, 0, 0) + _NTLM_VERSION


def av_pairs(pairs: list[tuple[int, bytes]]) -> bytes:
    """NTLM AV_PAIR list, terminated by MsvAvEOL."""
    return b"".join(struct.pack("<HH", av, len(value)) + value for av, value in pairs) + struct.pack("<HH", 0, 0)


def server_target_info(ts_ns: int, domain: str, computer: str, dns_domain: str) -> list[tuple[int, bytes]]:
    return [(2, utf16(domain)), (1, utf16(computer)), (4, utf16(dns_domain)),
            (3, utf16(f"{computer.lower()}.{dns_domain}")), (5, utf16(dns_domain)),
            (7, struct.pack("<Q", filetime(ts_ns)))]


def ntlm_challenge(rng: random.Random, ts_ns: int, domain: str, computer: str, dns_domain: str) -> bytes:
    name = utf16(domain)
    info = av_pairs(server_target_info(ts_ns, domain, computer, dns_domain))
    head = (b"NTLMSSP\0" + struct.pack("<I", 2) + struct.pack("<HHI", len(name), len(name), 56)
            + struct.pack("<I", 0xE28A8215) + rng.randbytes(8) + b"\0" * 8
            + struct.pack("<HHI", len(info), len(info), 56 + len(name)) + _NTLM_VERSION)
    return head + name + info


def ntlm_authenticate(rng: random.Random, ts_ns: int, domain: str, user: str, workstation: str,
                      target_info: list[tuple[int, bytes]], spn: str) -> bytes:
    """NTLMv2 AUTHENTICATE: an NTProofStr and client blob (server's AV pairs + flags + SPN), a session key, a MIC."""
    pairs = target_info + [(6, struct.pack("<I", 2)), (9, utf16(spn))]
    blob = (struct.pack("<BBHIQ", 1, 1, 0, 0, filetime(ts_ns)) + rng.randbytes(8) + b"\0" * 4
            + av_pairs(pairs) + b"\0" * 4)
    fields = [utf16(domain), utf16(user), utf16(workstation), b"\0" * 24, rng.randbytes(16) + blob,
              rng.randbytes(16)]
    offset = 88
    offsets = []
    for value in fields:
        offsets.append(offset)
        offset += len(value)
    domain_f, user_f, ws_f, lm_f, nt_f, key_f = (struct.pack("<HHI", len(v), len(v), o)
                                                 for v, o in zip(fields, offsets))
    head = (b"NTLMSSP\0" + struct.pack("<I", 3) + lm_f + nt_f + domain_f + user_f + ws_f + key_f
            + struct.pack("<I", NTLM_FLAGS) + _NTLM_VERSION + rng.randbytes(16))
    return head + b"".join(fields)


# -- SMB2/3 ---------------------------------------------------------------------------------------------------------

SMB2_NEGOTIATE, SMB2_SESSION_SETUP = 0, 1
STATUS_SUCCESS = 0
STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016
SMB_DIALECTS = (0x0202, 0x0210, 0x0300, 0x0302)
_SMB2_HEADER = struct.Struct("<4sHHIHHIIQIIQ16s")


def nbss(message: bytes) -> bytes:
    """NetBIOS session service framing: type 0 (session message), 24-bit length."""
    return b"\x00" + len(message).to_bytes(3, "big") + message


def smb2_header(command: int, message_id: int, *, response: bool = False, status: int = 0, credits: int = 1,
                credit_charge: int = 0, session_id: int = 0) -> bytes:
    return _SMB2_HEADER.pack(b"\xfeSMB", 64, credit_charge, status, command, credits, 1 if response else 0, 0,
                             message_id, 0, 0, session_id, b"\0" * 16)


def smb2_negotiate_request(client_guid: bytes) -> bytes:
    body = struct.pack("<HHHHI16sQ", 36, len(SMB_DIALECTS), 1, 0, 0x7F, client_guid, 0)
    return smb2_header(SMB2_NEGOTIATE, 0, credits=31) + body + struct.pack(f"<{len(SMB_DIALECTS)}H", *SMB_DIALECTS)


def smb2_negotiate_response(server_guid: bytes, ts_ns: int, boot_ns: int) -> bytes:
    blob = spnego_init()
    body = struct.pack("<HHHH16sIIIIQQHHI", 65, 1, 0x0302, 0, server_guid, 0x6F, 8 << 20, 8 << 20, 8 << 20,
                       filetime(ts_ns), filetime(boot_ns), 128, len(blob), 0)
    return smb2_header(SMB2_NEGOTIATE, 0, response=True, credits=1) + body + blob


def smb2_session_setup_request(message_id: int, session_id: int, blob: bytes) -> bytes:
    body = struct.pack("<HBBIIHHQ", 25, 0, 1, 1, 0, 88, len(blob), 0)
    return smb2_header(SMB2_SESSION_SETUP, message_id, credits=33, credit_charge=1, session_id=session_id) + body + blob


def smb2_session_setup_response(message_id: int, session_id: int, status: int, flags: int, blob: bytes) -> bytes:
    body = struct.pack("<HHHH", 9, flags, 72, len(blob))
    return (smb2_header(SMB2_SESSION_SETUP, message_id, response=True, status=status, credits=1, credit_charge=1,
                        session_id=session_id) + body + blob)


def smb3_encrypted(rng: random.Random, session_id: int, size: int) -> bytes:
    """An SMB3 transform header (AES-128-CCM, the 3.0.2 cipher) around ``size`` bytes of encrypted message."""
    nonce = rng.randbytes(11) + b"\0" * 5
    return (b"\xfdSMB" + rng.randbytes(16) + nonce + struct.pack("<IHHQ", size, 0, 1, session_id)
            + rng.randbytes(size))


# -- RDP / TLS 1.3 --------------------------------------------------------------------------------------------------

PROTOCOL_SSL, PROTOCOL_HYBRID = 0x1, 0x2


def tpkt(payload: bytes) -> bytes:
    return struct.pack("!BBH", 3, 0, 4 + len(payload)) + payload


def x224_connection_request(cookie: str, requested: int = PROTOCOL_SSL | PROTOCOL_HYBRID) -> bytes:
    data = f"Cookie: mstshash={cookie}\r\n".encode("ascii") + struct.pack("<BBHI", 1, 0, 8, requested)
    return tpkt(bytes([6 + len(data), 0xE0]) + struct.pack("!HHB", 0, 0, 0) + data)


def x224_connection_confirm(selected: int = PROTOCOL_HYBRID, src_ref: int = 0x1234) -> bytes:
    data = struct.pack("<BBHI", 2, 0x1F, 8, selected)
    return tpkt(bytes([6 + len(data), 0xD0]) + struct.pack("!HHB", 0, src_ref, 0) + data)


def tls_record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", content_type, version, len(body)) + body


def _handshake(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def _ext(kind: int, data: bytes) -> bytes:
    return struct.pack("!HH", kind, len(data)) + data


def tls13_client_hello(rng: random.Random, session_id: bytes) -> bytes:
    suites = (0x1301, 0x1302, 0x1303, 0xC02F, 0xC030)
    key = rng.randbytes(32)
    extensions = (_ext(0x000A, struct.pack("!HH", 2, 0x001D))  # supported_groups: x25519
                  + _ext(0x000D, struct.pack("!H3H", 6, 0x0403, 0x0804, 0x0401))  # signature_algorithms
                  + _ext(0x002B, struct.pack("!BHH", 4, 0x0304, 0x0303))  # supported_versions
                  + _ext(0x0033, struct.pack("!HHH", 36, 0x001D, 32) + key))  # key_share
    body = (struct.pack("!H", 0x0303) + rng.randbytes(32) + bytes([len(session_id)]) + session_id
            + struct.pack(f"!H{len(suites)}H", 2 * len(suites), *suites) + b"\x01\x00"
            + struct.pack("!H", len(extensions)) + extensions)
    return tls_record(22, _handshake(1, body), 0x0301)


def tls13_server_hello(rng: random.Random, session_id: bytes) -> bytes:
    extensions = _ext(0x002B, struct.pack("!H", 0x0304)) + _ext(0x0033, struct.pack("!HH", 0x001D, 32)
                                                                + rng.randbytes(32))
    body = (struct.pack("!H", 0x0303) + rng.randbytes(32) + bytes([len(session_id)]) + session_id
            + struct.pack("!HB", 0x1301, 0) + struct.pack("!H", len(extensions)) + extensions)
    return tls_record(22, _handshake(2, body))


TLS_CHANGE_CIPHER_SPEC = tls_record(20, b"\x01")


def tls_app_data(rng: random.Random, size: int) -> bytes:
    """Encrypted records totalling about ``size`` bytes of plaintext (+ 17 bytes of type and tag per record)."""
    out = b""
    while True:
        chunk = min(size, 16384)
        out += tls_record(23, rng.randbytes(chunk + 17))
        size -= chunk
        if size <= 0:
            return out


# -- the sessions ---------------------------------------------------------------------------------------------------

class ServiceSession(TcpClientActor):
    """A client opening TCP connections to one service on one server; every frame is marked as an attack frame.

    Subclasses script the conversation as a generator of step times, like ``attacks.Attacker``.
    """

    port = 0
    client_ttl, server_ttl = 128, 128  # Windows on both sides unless a subclass says otherwise
    client_ports = (49152, 65535)

    def rtt(self) -> int:
        return int(self.rng.uniform(0.2, 0.8) * _MS)

    def connect(self, t: int) -> int:
        return self.open_connection(t, self.client, self.server, self.port, FLOW_TCP)

    def send(self, t: int, from_client: bool, data: bytes) -> int:
        """``data`` in MSS-sized segments (PSH on the last), 15-40 us apart; returns the last one's time."""
        assert self.conn is not None
        for start in range(0, len(data), MSS):
            chunk = data[start:start + MSS]
            last = start + MSS >= len(data)
            t = self.emit(self.conn.segment(t, from_client, chunk, PSH | ACK if last else ACK))
            if not last:
                t += self.rng.randrange(15, 40) * _US
        return t

    def exchange(self, t: int, request: bytes, response: bytes, server_ms: tuple[float, float] = (0.3, 3.0)) -> int:
        """The client sends ``request``; the server answers after a while; returns the answer's last frame time."""
        t = self.send(t, True, request)
        t += int(self.rng.uniform(*server_ms) * _MS)
        return self.send(t, False, response)

    def ack(self, t: int, from_client: bool = True) -> int:
        assert self.conn is not None
        return self.emit(self.conn.ack(t, from_client))



class SmbLateralMovement(ServiceSession):
    """The engineering workstation copies a tool to the HMI over SMB and runs it as a service (PsExec-style).

    Session 1: negotiate SMB 3.0.2, authenticate with NTLMv2 as ``PLANT\\eng``, then (encrypted) connect to
    ADMIN$, write a ~200 KB executable, connect to IPC$, and drive the service control manager over the svcctl
    pipe (open, create, start). Session 2, a minute or two later: authenticate again, stop and delete the service,
    delete the file. A few minutes in all.
    """

    port = SMB_PORT
    domain, user, workstation = "PLANT", "eng", "ENG01"
    server_name, dns_domain = "HMI01", "plant.local"

    def script(self, t: int) -> Iterator[int]:
        rng = self.rng
        t = yield from self._session(t, [(112, 80)]  # tree connect ADMIN$
                                     + [(260, 240)]  # create the file
                                     + [(16_496, 80)] * 12 + [(6_200, 80)]  # write it in 16 KiB chunks
                                     + [(88, 124), (104, 80)]  # close, tree connect IPC$
                                     + [(230, 220), (180, 148), (260, 200), (300, 180), (240, 140), (160, 148)]
                                     )  # create svcctl, DCE/RPC bind, OpenSCManager, CreateService, StartService...
        t += int(rng.uniform(60, 120) * 1e9)
        yield t
        yield from self._session(t, [(104, 80), (230, 220), (180, 148), (240, 140), (220, 140), (200, 140),
                                     (88, 124), (112, 80), (250, 240), (88, 124)])  # ... stop, delete; delete file

    def _session(self, t: int, exchanges: list[tuple[int, int]]) -> Iterator[int]:
        """One TCP connection: negotiate, authenticate, then encrypted (request, response) sizes; yields times."""
        rng = self.rng
        t = self.connect(t) + int(rng.uniform(0.2, 1.0) * _MS)
        t = self.exchange(t, nbss(smb2_negotiate_request(rng.randbytes(16))),
                          nbss(smb2_negotiate_response(rng.randbytes(16), t, t - 86_400 * 10**9 * 12)))
        t += int(rng.uniform(1, 5) * _MS)
        session_id = rng.getrandbits(64) & 0x0000_7FFF_FFFF_FFFF | 0x0000_1000_0000_0001
        t = self.exchange(t, nbss(smb2_session_setup_request(1, 0, spnego_init(ntlm_negotiate()))),
                          nbss(smb2_session_setup_response(
                              1, session_id, STATUS_MORE_PROCESSING_REQUIRED, 0,
                              spnego_resp(1, ntlm_challenge(rng, t, self.domain, self.server_name, self.dns_domain),
                                          mech=True))))
        t += int(rng.uniform(1, 5) * _MS)
        info = server_target_info(t, self.domain, self.server_name, self.dns_domain)
        auth = ntlm_authenticate(rng, t, self.domain, self.user, self.workstation, info,
                                 f"cifs/{self.server.ip}")
        mic = struct.pack("<I", 1) + rng.randbytes(8) + struct.pack("<I", 0)
        t = self.exchange(t, nbss(smb2_session_setup_request(2, session_id, spnego_resp(1, auth, mic=mic))),
                          nbss(smb2_session_setup_response(2, session_id, STATUS_SUCCESS, 0x0004,
                                                           spnego_resp(0, mic=mic))), (5.0, 20.0))
        yield t
        for request, response in exchanges:
            t += int(rng.uniform(0.5, 30.0) * _MS)  # the tool's think time
            t = self.exchange(t, nbss(smb3_encrypted(rng, session_id, int(request * rng.uniform(1.0, 1.05)))),
                              nbss(smb3_encrypted(rng, session_id, int(response * rng.uniform(1.0, 1.05)))))
            yield t
        t += int(rng.uniform(5, 40) * _MS)
        t = self.exchange(t, nbss(smb3_encrypted(rng, session_id, 88)), nbss(smb3_encrypted(rng, session_id, 68)))
        t += int(rng.uniform(1, 10) * _MS)
        t = self.close(t)
        yield t
        return t


class RdpSession(ServiceSession):
    """A never-seen host opens a remote desktop session on the HMI (RDP with NLA over TLS 1.3) for a few minutes.

    The X.224 negotiation shows the user name in its cookie (``mstshash``) and the security protocol chosen; then
    the TLS handshake; then encrypted NLA (CredSSP), the RDP connection sequence, and the session: bursts of input
    events from the client, each answered by screen updates, with pauses while the intruder reads the screen.
    """

    port = RDP_PORT
    client_ttl = 64  # xfreerdp on a Linux laptop
    client_ports = (32768, 61000)

    def __init__(self, sim: Sim, log: AttackLog, rng: random.Random, client: Host, server: Host,
                 session_s: float = 150.0, cookie: str = "operator", link_kind: str = "ethernet",
                 vlans: tuple[int, ...] = ()) -> None:
        super().__init__(sim, log, rng, client, server, link_kind, vlans)
        self.session_ns = int(session_s * 1e9)
        self.cookie = cookie

    def script(self, t: int) -> Iterator[int]:
        rng = self.rng
        t = self.connect(t) + int(rng.uniform(0.2, 1.0) * _MS)
        t = self.exchange(t, x224_connection_request(self.cookie), x224_connection_confirm())
        t += int(rng.uniform(1, 5) * _MS)
        session_id = rng.randbytes(32)
        t = self.exchange(t, tls13_client_hello(rng, session_id),
                          tls13_server_hello(rng, session_id) + TLS_CHANGE_CIPHER_SPEC + tls_app_data(rng, 2300),
                          (1.0, 4.0))
        t += int(rng.uniform(1, 5) * _MS)
        t = self.send(t, True, TLS_CHANGE_CIPHER_SPEC + tls_app_data(rng, 36))  # client Finished
        # NLA (CredSSP: NTLM negotiate / challenge / authenticate, public key, credentials), then the RDP connection
        # sequence (MCS connect, channel joins, capabilities, licensing, fonts): request/response sizes.
        for request, response in [(60, 280), (620, 60), (80, 0), (380, 0), (520, 380), (12, 0), (16, 11),
                                  (16, 11), (16, 11), (16, 11), (340, 0), (0, 34), (0, 460), (420, 0), (40, 40),
                                  (40, 0), (60, 1200)]:
            t += int(rng.uniform(2, 15) * _MS)
            if request:
                t = self.send(t, True, tls_app_data(rng, request))
            if response:
                t += int(rng.uniform(1, 8) * _MS)
                t = self.send(t, False, tls_app_data(rng, response))
            yield t
        end = t + self.session_ns
        while t < end:
            t = self._burst(t, end)
            yield t
        t = self.send(t, True, tls_app_data(rng, 40))  # disconnect request
        t += int(rng.uniform(5, 20) * _MS)
        t = self.send(t, False, tls_app_data(rng, 24))
        t += int(rng.uniform(1, 5) * _MS)
        t = self.close(t)
        yield t

    def _burst(self, t: int, end: int) -> int:
        """Some input events, each answered by screen updates; then a pause (0.5-8 s) until the next burst."""
        rng = self.rng
        for _ in range(rng.randrange(3, 25)):
            t = self.send(t, True, tls_app_data(rng, rng.randrange(14, 80)))  # fast-path input
            t += int(rng.uniform(5, 30) * _MS)
            update = min(40_000, int(rng.paretovariate(1.2) * 300))  # bitmap/GFX updates: mostly small, a few large
            t = self.send(t, False, tls_app_data(rng, update))
            t += int(rng.uniform(30, 250) * _MS)
            if t >= end:
                return t
        t += int(rng.uniform(0.04, 0.2) * 1e9)
        t = self.ack(t)  # the client's delayed ACK of the last update
        return min(end, t + int(rng.uniform(0.5, 8.0) * 1e9))
