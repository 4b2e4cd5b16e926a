"""TLS for the simulated Redfish service: a self-signed certificate and a threaded HTTPS server."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import ipaddress
import logging
import os
import selectors
import socket
import socketserver
import ssl
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

CERT_NAME = "redfish-cert.pem"
KEY_NAME = "redfish-key.pem"
_VALIDITY = datetime.timedelta(days=3650)
_HANDSHAKE_TIMEOUT = 10.0


def ensure_self_signed_cert(cert_dir: Path, *, names: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Return ``(cert, key)`` paths in ``cert_dir``, generating them unless a usable pair exists.

    The certificate names ``localhost``, ``127.0.0.1``, ``::1`` and ``names`` (hostnames or IP
    addresses).  An existing pair is reused when it loads and has not expired; files are written
    atomically (the key with mode 0600) so concurrent farms do not see half-written files.
    """
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = cert_dir / CERT_NAME, cert_dir / KEY_NAME
    with open(cert_dir / ".redfish-cert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another farm may be writing the same pair
        if not _usable(cert_path, key_path):
            _generate(cert_path, key_path, names)
    return cert_path, key_path


def _generate(cert_path: Path, key_path: Path, names: tuple[str, ...]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hastack simulated BMC")])
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for name in ("127.0.0.1", "::1", *names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomically(key_path, key_pem, mode=0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context


def _usable(cert_path: Path, key_path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        server_context(cert_path, key_path)  # also checks that key and certificate match
    except (OSError, ValueError, ssl.SSLError):
        return False
    return cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(
        days=1
    )


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ThreadingHTTPSServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` over TLS, handshaking on each connection's own thread.

    Wrapping the listening socket instead would run handshakes on the accept loop, where one
    silent client stalls every other.  :meth:`serve` may run on several threads: a garbage
    collection can run a finalizer that blocks on this very server (sushy's ``Sushy.__del__``
    DELETEs its session) on whichever thread it interrupts, and a lone acceptor caught that way
    stalls the service until the client times out.  Live connections are tracked so that
    :meth:`close` can wake handler threads blocked on a read.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext) -> None:
        self.ssl_context = context
        self.address_family = socket.getaddrinfo(address[0], address[1])[0][0]
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(address, handler)
        self.socket.setblocking(False)  # several acceptors: the losers must not block

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the FQDN of the address (a DNS query).
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_HANDSHAKE_TIMEOUT)
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        with self._lock:
            self._live.add(conn)
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        except OSError as exc:
            log.debug("connection from %s ended: %s", client_address, exc)
        finally:
            with self._lock:
                self._live.discard(conn)
            conn.close()

    def serve(self, stop: threading.Event) -> None:
        """Accept connections until ``stop`` is set; each is served on its own thread."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            while not stop.is_set():
                if not selector.select(0.1):
                    continue
                try:
                    request, client_address = self.socket.accept()
                except OSError:  # another acceptor won, or the client gave up
                    continue
                with self._lock:  # ThreadingMixIn's thread list is not thread-safe
                    self.process_request(request, client_address)

    def close(self) -> None:
        """Close the listening socket, wake every connection and join their threads."""
        with self._lock:
            for conn in self._live:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(conn, socket.SHUT_RDWR)
        self.server_close()
