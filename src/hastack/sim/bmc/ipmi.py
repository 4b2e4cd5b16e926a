"""Simulated IPMI 2.0 / RMCP+ BMCs, driven by a :class:`BmcBackend`.

The RMCP+ session machinery (packet framing, AES-CBC-128 confidentiality, HMAC integrity,
sequence numbers) and the BMC command handling are pyghmi's own server classes
(:class:`pyghmi.ipmi.bmc.Bmc`, :class:`pyghmi.ipmi.private.serversession.ServerSession`).  What
this module changes, and why:

* pyghmi's ``IpmiServer.__init__`` binds through pyghmi's process-wide client I/O thread and its
  global ``Session.bmc_handlers`` routing table, which would steal packets from (and hand packets
  to) pyghmi *clients* in the same process.  :class:`SimBmc` sets the same attributes without
  touching those globals, and routes each datagram itself (:meth:`SimBmc.datagram_received`) to
  the BMC (sessionless commands) or to the session of the client address.  The farm's one
  ``selectors`` loop (:mod:`hastack.sim.bmc.farm`) feeds every BMC.
* pyghmi sends through ``socket.sendto``; the BMCs get an :class:`_Outbox` in place of a socket so
  replies go through the loop, which can hold a reply back (SLOW) on a timer heap.
* Cipher suites: pyghmi's server always answers suite 3 whatever the client proposed.  Here the
  open-session request is matched against suites 3 (HMAC-SHA1 / HMAC-SHA1-96 / AES-CBC-128) and
  17 (HMAC-SHA256 / HMAC-SHA256-128 / AES-CBC-128) and anything else is rejected with RMCP+
  status 0x11 (no cipher suite match), so clients that fall back (pyghmi) do.  The RAKP
  handlers are pyghmi's, rewritten to take the hash from the suite; Get Channel Cipher Suites
  lists 17 and 3 (``ipmitool`` picks the best listed).
* Authentication failures answer as real BMCs do instead of going silent: an unknown user gets
  RAKP2 status 0x0D (unauthorized name), a wrong password is detected by the client from the
  RAKP2 HMAC, and a RAKP3 with a bad HMAC gets RAKP4 status 0x0F (invalid integrity check value).
* Sessions are bounded per BMC (32, status 0x01 beyond) and expire after 60 s idle.
* Conditions: DEAD and HUNG drop every datagram; BUSY answers 0xC0 to chassis commands; SLOW
  holds back each reply to a BMC command (not to the session handshake) by ``bmc_delay``.

Only IPMI 2.0 (``ipmitool -I lanplus``) is served; IPMI 1.5 sessions (``-I lan``) are not.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import hmac
import logging
import os
import socket
import struct
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from pyghmi.ipmi import bmc as pyghmi_bmc
from pyghmi.ipmi.private import constants, serversession

from hastack.sim.bmc.backend import BmcBackend, BmcCondition, PowerAction

log = logging.getLogger(__name__)

Address = tuple[Any, ...]

SESSION_IDLE_TIMEOUT = 60.0
MAX_SESSIONS_PER_BMC = 32
_UUID_NAMESPACE = uuid.UUID("1d6bd3e4-5a37-4d7e-9d51-0a8f6c1e2b90")
_NODE_BUSY = 0xC0
_UNSPECIFIED_ERROR = 0xFF

# cipher suite -> ((auth, integrity, confidentiality) algorithm numbers, hash, integrity bytes)
_SUITES: dict[int, tuple[tuple[int, int, int], Callable[..., Any], int]] = {
    3: ((1, 1, 1), hashlib.sha1, 12),
    17: ((3, 4, 1), hashlib.sha256, 16),
}
# RMCP+ / RAKP status codes (IPMI 2.0 table 13-15)
_NO_RESOURCES = 0x01
_INVALID_SESSION_ID = 0x02
_UNAUTHORIZED_NAME = 0x0D
_BAD_ICV = 0x0F
_NO_SUITE_MATCH = 0x11
_OPEN_REQUEST, _RAKP1, _RAKP3 = 0x10, 0x12, 0x14
# Get Channel Cipher Suites records (IPMI 2.0 table 22-19): suite 17, then suite 3
_CIPHER_RECORDS = b"\xc0\x11\x03\x44\x81\xc0\x03\x01\x41\x81"


class Loop(Protocol):
    """What a BMC needs from the event loop that owns its socket."""

    def send(self, sock: socket.socket, data: bytes, addr: Address) -> None: ...

    def reply_delay(self, seconds: float) -> AbstractContextManager[None]: ...

    def note_sessions(self, bmc: SimBmc) -> None: ...


def _checksum(data: bytes) -> int:
    return -sum(data) & 0xFF


class _Outbox:
    """What pyghmi's code sees as its socket: sends go through the loop (which may delay them)."""

    def __init__(self, loop: Loop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock

    def setblocking(self, flag: bool) -> None:
        """pyghmi's ``_io_sendto`` calls this; the real socket stays non-blocking."""

    def sendto(self, data: bytes | bytearray, addr: Address) -> int:
        self._loop.send(self._sock, bytes(data), addr)
        return len(data)


class SimSession(serversession.ServerSession):
    """One RMCP+ session of one client with one BMC (pyghmi's ServerSession, routed locally)."""

    def __new__(cls, *_args: Any, **_kwargs: Any) -> SimSession:
        return object.__new__(cls)

    def __init__(self, bmc: SimBmc, clientaddr: Address) -> None:
        # The attributes ServerSession.__init__ sets, minus its registration in pyghmi's global
        # Session.bmc_handlers (which pyghmi clients in this process route by).
        self.uuid = bmc.uuid
        self.currhashlib: Callable[..., Any] = hashlib.sha1
        self.currhashlen = 12
        self.rqaddr = constants.IPMI_BMC_ADDRESS
        self.authdata = bmc.authdata
        self.servermode = True
        self.ipmiversion = 2.0
        self.sequencenumber = 0
        self.sessionid = 0
        self.bmc = bmc
        self.lastpayload = None
        self.rqlun = None
        self.broken = False
        self.authtype = 6
        self.integrityalgo: Any = 0
        self.confalgo: Any = 0
        self.kg = bmc.kg
        self.k1: bytes | None = None
        self.remseqnumber = None
        self.socket = bmc.serversocket
        self.sockaddr = clientaddr
        self.pendingpayloads: collections.deque[Any] = collections.deque()
        self.pktqueue: collections.deque[Any] = collections.deque()
        self.clientpriv = 4
        self.maxpriv = 4
        self.established = False
        self.last_seen = time.monotonic()

    def open(self, request: bytearray) -> bool:
        """Answer an RMCP+ Open Session Request; False if no cipher suite matched."""
        response = self.create_open_session_response(request)
        self.send_payload(response, constants.payload_types["rmcpplusopenresponse"], retry=False)
        return bool(response[1] == 0)

    def reject_open(self, request: bytearray, status: int) -> None:
        response = bytearray([request[0], status, 0, 0]) + request[4:8]
        self.send_payload(response, constants.payload_types["rmcpplusopenresponse"], retry=False)

    def create_open_session_response(self, request: bytearray) -> bytearray:
        self.clientsessionid = request[4:8]
        algorithms = (request[12], request[20], request[28]) if len(request) >= 32 else None
        suite = next((n for n, s in _SUITES.items() if s[0] == algorithms), None)
        if suite is None:
            return bytearray([request[0], _NO_SUITE_MATCH, 0, 0]) + self.clientsessionid
        _, self.currhashlib, self.currhashlen = _SUITES[suite]
        auth, integrity, conf = _SUITES[suite][0]
        self.managedsessionid = b"\0\0\0\0"
        while self.managedsessionid == b"\0\0\0\0":
            self.managedsessionid = os.urandom(4)
        self.privlevel = 4
        return (
            bytearray([request[0], 0, self.privlevel, 0])
            + self.clientsessionid
            + self.managedsessionid
            + bytearray([0, 0, 0, 8, auth, 0, 0, 0])
            + bytearray([1, 0, 0, 8, integrity, 0, 0, 0])
            + bytearray([2, 0, 0, 8, conf, 0, 0, 0])
        )

    def _got_rmcp_openrequest(self, data: bytearray) -> None:
        """A repeated open request on this session's address is handled by the service."""

    def _rakp_error(self, payload_type: str, tag: int, status: int) -> None:
        message = bytearray([tag, status, 0, 0]) + self.clientsessionid
        self.send_payload(message, constants.payload_types[payload_type], retry=False)

    def _got_rakp1(self, data: bytearray) -> None:
        if len(data) < 28 or not hasattr(self, "managedsessionid"):
            return
        tag = data[0]
        if bytes(data[4:8]) != bytes(self.managedsessionid):
            self._rakp_error("rakp2", tag, _INVALID_SESSION_ID)
            return
        self.Rm = bytes(data[8:24])
        self.rolem = data[24]
        self.maxpriv = self.rolem & 0b1111 or 4
        self.clientpriv = self.maxpriv
        self.username = bytes(data[28 : 28 + data[27]])
        password = self.authdata.get(self.username.decode("utf-8", "replace"))
        if not self.username or password is None:
            self._rakp_error("rakp2", tag, _UNAUTHORIZED_NAME)
            return
        self.uuiddata = self.uuid.bytes
        self.Rc = os.urandom(16)
        self.kuid = password.encode("utf-8")
        self.sessionkg = self.kg if self.kg is not None else self.kuid
        hmacdata = (
            bytes(self.clientsessionid)
            + bytes(self.managedsessionid)
            + self.Rm
            + self.Rc
            + self.uuiddata
            + bytes([self.rolem, len(self.username)])
            + self.username
        )
        authcode = hmac.new(self.kuid, hmacdata, self.currhashlib).digest()
        message = bytearray([tag, 0, 0, 0]) + self.clientsessionid + self.Rc + self.uuiddata
        self.send_payload(message + authcode, constants.payload_types["rakp2"], retry=False)

    def _got_rakp3(self, data: bytearray) -> None:
        if len(data) < 8 or not hasattr(self, "Rc") or self.established:
            return
        tag = data[0]
        if data[1] != 0:  # the client rejected our RAKP2 (e.g. wrong password): session over
            self.close_server_session()
            return
        roleuser = struct.pack("2B", self.rolem, len(self.username)) + self.username
        expected = hmac.new(
            self.kuid, self.Rc + bytes(self.clientsessionid) + roleuser, self.currhashlib
        ).digest()
        if not hmac.compare_digest(expected, bytes(data[8:])):
            self._rakp_error("rakp4", tag, _BAD_ICV)
            self.close_server_session()
            return
        self.sik = hmac.new(self.sessionkg, self.Rm + self.Rc + roleuser, self.currhashlib).digest()
        self.k1 = hmac.new(self.sik, b"\x01" * 20, self.currhashlib).digest()
        self.k2 = hmac.new(self.sik, b"\x02" * 20, self.currhashlib).digest()
        self.aeskey = self.k2[0:16]
        self.localsid = struct.unpack("<I", bytes(self.managedsessionid))[0]
        self.ipmicallback = self.handle_client_request
        icv = hmac.new(
            self.sik, self.Rm + bytes(self.managedsessionid) + self.uuiddata, self.currhashlib
        ).digest()[: self.currhashlen]
        message = bytearray([tag, 0, 0, 0]) + self.clientsessionid + icv
        self.send_payload(message, constants.payload_types["rakp4"], retry=False)
        self.confalgo = "aes"
        self.integrityalgo = "hmac"
        self.sequencenumber = 1
        self.sessionid = struct.unpack("<I", bytes(self.clientsessionid))[0]
        self.established = True

    def close_server_session(self) -> None:
        self.bmc.forget_session(self)


class SimBmc(pyghmi_bmc.Bmc):
    """One simulated BMC: pyghmi's Bmc command handling, power from the backend."""

    def __init__(
        self, backend: BmcBackend, loop: Loop, host: str, username: str, password: str
    ) -> None:
        # The attributes IpmiServer.__init__ sets, without its socket (see module docstring).
        self.backend = backend
        self.loop = loop
        self.host = host
        self.revision = 0
        self.deviceid = 0x20
        self.firmwaremajor = 1
        self.firmwareminor = 0
        self.ipmiversion = 2
        self.additionaldevices = 0
        self.mfgid = 0
        self.prodid = 0
        self.pktqueue: collections.deque[Any] = collections.deque()
        self.uuid = uuid.uuid5(_UUID_NAMESPACE, host)
        self.authdata = {username: password}
        # channel 1, IPMI 2.0 only, per-message auth, no anonymous/null users
        self.authcap = struct.pack("9B", 0, 1, 0b10000000, 0b00000100, 0b00000010, 0, 0, 0, 0)
        self.kg = None
        self.timeout = 60
        self.port = 0
        self.sock: socket.socket | None = None
        self.serversocket: _Outbox | None = None
        self.sessions: dict[Address, SimSession] = {}
        self.bootdevice = "default"

    def __repr__(self) -> str:
        return f"<SimBmc {self.host} udp/{self.port}>"

    def attach(self, sock: socket.socket) -> None:
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.serversocket = _Outbox(self.loop, sock)

    # -- sessions

    def open_session(self, request: bytearray, addr: Address) -> None:
        self.sessions.pop(addr, None)
        session = SimSession(self, addr)
        if len(self.sessions) >= MAX_SESSIONS_PER_BMC:
            self.expire_sessions(time.monotonic())
        if len(self.sessions) >= MAX_SESSIONS_PER_BMC:
            session.reject_open(request, _NO_RESOURCES)
        elif session.open(request):
            self.sessions[addr] = session
            self.loop.note_sessions(self)

    def forget_session(self, session: SimSession) -> None:
        if self.sessions.get(session.sockaddr) is session:
            del self.sessions[session.sockaddr]

    def expire_sessions(self, now: float) -> None:
        for addr, session in list(self.sessions.items()):
            if now - session.last_seen > SESSION_IDLE_TIMEOUT:
                del self.sessions[addr]

    def send_cipher_suites(self, *args: Any) -> None:
        """Get Channel Cipher Suites: suites 17 and 3 (pyghmi's server lists 3 only)."""
        myaddr, mylun, clientaddr, clientlun, clientseq, data, sockaddr = args
        index = data[22] & 0x3F if len(data) > 22 else 0
        records = _CIPHER_RECORDS[index * 16 : index * 16 + 16]
        header = bytes([clientaddr, clientlun | (7 << 2)])
        body = bytes([myaddr, mylun | clientseq << 2, 0x54, 0, 1]) + records
        message = header + bytes([_checksum(header)]) + body + bytes([_checksum(body)])
        rmcp = b"\x06\x00\xff\x07\x06\x00" + bytes(8) + struct.pack("<H", len(message))
        assert self.serversocket is not None
        self.serversocket.sendto(rmcp + message, sockaddr)

    # -- commands

    def datagram_received(self, data: bytearray, addr: Address) -> None:
        """Route one datagram: to a session by client address, else to the sessionless BMC."""
        if len(data) < 16 or data[0] != 6 or data[2:4] != b"\xff\x07":
            return  # not RMCP/IPMI (ASF pings are not answered)
        if self.backend.bmc_condition(self.host) in (BmcCondition.DEAD, BmcCondition.HUNG):
            return
        if data[4] == 0:  # IPMI 1.5 framing, unauthenticated: sessionless commands only
            self.sessionless_data(data, addr)
            return
        if data[4] != 6:
            return  # IPMI 1.5 authenticated sessions are not supported
        payload_type = data[5] & 0x3F
        if payload_type == _OPEN_REQUEST:
            self.open_session(data[16:], addr)
            return
        session = self.sessions.get(addr)
        in_session = payload_type in (_RAKP1, _RAKP3) or data[6:10] != b"\0\0\0\0"
        if session is not None and in_session:
            session.last_seen = time.monotonic()
            session._handle_ipmi_packet(data, sockaddr=addr)
        elif not in_session and payload_type == 0 and not data[5] & 0xC0:
            self.sessionless_data(data, addr)

    def handle_raw_request(self, request: dict[str, Any], session: SimSession) -> None:
        condition = self.backend.bmc_condition(self.host)
        if condition == BmcCondition.BUSY and request["netfn"] == 0:
            session.send_ipmi_response(code=_NODE_BUSY)
            return
        if request["netfn"] == 6 and request["command"] == 0x54:  # cipher suites, in session
            index = request["data"][2] & 0x3F if len(request["data"]) > 2 else 0
            session.send_ipmi_response(data=b"\x01" + _CIPHER_RECORDS[index * 16 : index * 16 + 16])
            return
        slow = condition == BmcCondition.SLOW
        with self.loop.reply_delay(max(0.0, self.backend.bmc_delay(self.host)) if slow else 0.0):
            super().handle_raw_request(request, session)

    def get_chassis_status(self, session: SimSession) -> None:
        try:
            on = self.backend.power_is_on(self.host)
        except Exception:
            log.exception("BMC %s: backend failed to report power", self.host)
            session.send_ipmi_response(code=_UNSPECIFIED_ERROR)
            return
        session.send_ipmi_response(data=[int(on), 0, 0])

    def _power(self, action: PowerAction) -> int:
        log.info("BMC %s (IPMI): chassis control %s", self.host, action)
        try:
            self.backend.set_power(self.host, action)
        except Exception:
            log.exception("BMC %s: backend failed to apply %s", self.host, action)
            return _UNSPECIFIED_ERROR
        return 0

    power_off = functools.partialmethod(_power, PowerAction.OFF)
    power_on = functools.partialmethod(_power, PowerAction.ON)
    power_cycle = functools.partialmethod(_power, PowerAction.CYCLE)
    power_reset = functools.partialmethod(_power, PowerAction.RESET)
    power_shutdown = functools.partialmethod(_power, PowerAction.SOFT)  # ACPI soft-off

    def pulse_diag(self) -> int:
        log.info("BMC %s (IPMI): diagnostic interrupt acknowledged (no effect)", self.host)
        return 0

    def cold_reset(self) -> int:
        return 0

    def get_system_guid(self) -> uuid.UUID:
        return self.uuid

    def get_boot_device(self) -> str:
        return self.bootdevice

    def set_boot_device(self, bootdevice: str) -> None:
        self.bootdevice = bootdevice
