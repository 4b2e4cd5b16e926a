"""The node agent's wire format: one UDP datagram per message, JSON, signed.

A datagram is ``b"HS1" + HMAC-SHA256(key, body) + body`` where ``body`` is compact JSON with a
type ``t``:

- ``hb`` (agent -> every controller): ``host``, ``boot`` (random per agent process), ``seq``
  (counts up within a boot), ``ts`` (the agent's wall clock, to bound replays), ``failed``
  (the local checks that fail, name -> detail), ``contact`` (seconds since the agent's last
  leader ack, None when never), and when self-fencing is on ``sf``: ``after``, ``timeout``,
  ``interval``, ``peers``;
- ``ack`` (controller -> agent): ``host``, ``boot``, ``seq`` of the heartbeat answered,
  ``ctl`` (the controller's name), ``leader`` (it held the lease when it answered), ``epoch``;
- ``peer?`` / ``peer`` (agent <-> agent): ``host``, ``nonce``; the answer adds ``contact``.

The key is shared by the controllers and the agents (``key_file``).  A message whose signature
does not verify, that is not JSON, or lacks a field is dropped and counted, never answered: an
unauthenticated ack could keep a cut-off node from fencing itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAGIC = b"HS1"
_DIGEST = 32
MAX_DATAGRAM = 8192  # a heartbeat with a few failed checks is a few hundred bytes
REPLAY_WINDOW = 120.0  # seconds: a heartbeat stamped further from the controller's clock is dropped


class BadMessage(ValueError):
    """A datagram that is not ours, not signed with our key, or not well formed."""


def load_key(path: str | Path) -> bytes:
    """The shared key: the file's bytes, stripped; at least 16 bytes.  A ``ValueError`` names
    the file and what is wrong, never the key."""
    p = Path(path)
    try:
        key = p.read_bytes().strip()
    except OSError as exc:
        raise ValueError(f"{p}: cannot read the agent key: {exc.strerror}") from None
    if len(key) < 16:
        raise ValueError(f"{p}: the agent key must be at least 16 bytes (it has {len(key)})")
    if p.stat().st_mode & 0o077:
        log.warning("%s: the agent key is readable by others (chmod 600 it)", p)
    return key


def new_key() -> str:
    return os.urandom(32).hex()


_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder()
_MACS: dict[bytes, hmac.HMAC] = {}  # key -> an HMAC with the key set up, to copy per message


def _mac(key: bytes, body: bytes) -> bytes:
    base = _MACS.get(key)
    if base is None:
        base = _MACS[key] = hmac.new(key, digestmod=hashlib.sha256)
    mac = base.copy()
    mac.update(body)
    return mac.digest()


def encode(key: bytes, message: Mapping[str, Any]) -> bytes:
    body = _ENCODER.encode(message).encode()
    return MAGIC + _mac(key, body) + body


def decode(key: bytes, datagram: bytes) -> dict[str, Any]:
    if not datagram.startswith(MAGIC) or len(datagram) <= len(MAGIC) + _DIGEST:
        raise BadMessage("not a hastack datagram")
    mac = datagram[len(MAGIC) : len(MAGIC) + _DIGEST]
    body = datagram[len(MAGIC) + _DIGEST :]
    if not hmac.compare_digest(mac, _mac(key, body)):
        raise BadMessage("bad signature (wrong key?)")
    try:
        message = _DECODER.decode(body.decode())
    except ValueError:  # UnicodeDecodeError too
        raise BadMessage("signed, but not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise BadMessage("signed, but not a message")
    if not isinstance(message.get("host"), str) or not message["host"]:
        raise BadMessage("message without a host")
    return message


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` -> (host, port); ``ValueError`` when bad.
    Port 0 (any free port) is for binding only; callers that send refuse it."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"{text!r}: no host")
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r}: bad port {port!r}")
    return host, int(port)
