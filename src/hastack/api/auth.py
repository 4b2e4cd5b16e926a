"""Who is calling, and may they: static tokens for small sites, Keystone tokens for clouds.

A request carries ``X-Auth-Token`` (or ``Authorization: Bearer``).  Static tokens are compared
in constant time.  Any other token, when Keystone is enabled, is validated against the cloud's
Keystone (``GET /v3/auth/tokens`` with the controller's own credentials) and its roles mapped:
``operator_roles`` give *operator*, ``reader_roles`` give *reader*.  A validated token is
trusted for ``cache`` seconds (never past its own expiry); a refused one is not cached, and a
Keystone that cannot be reached refuses (503), never admits.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from hastack.config import ApiConfig

log = logging.getLogger(__name__)

Role = Literal["reader", "operator"]
RANK = {"reader": 1, "operator": 2}


@dataclasses.dataclass(frozen=True)
class Caller:
    name: str
    role: Role
    source: Literal["static", "keystone"]

    def may(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# Keystone's answer to GET /v3/auth/tokens: (user name, role names, expiry) or None when the
# token is not valid; raises AuthError(503) when Keystone cannot say.
TokenCheck = Callable[[str], tuple[str, Sequence[str], float] | None]


class Authenticator:
    def __init__(self, config: ApiConfig, keystone: TokenCheck | None = None) -> None:
        self._static = [
            (hashlib.sha256(t.secret().encode()).digest(), Caller(t.name, t.role, "static"))
            for t in config.tokens
        ]
        self.keystone = keystone if config.keystone.enabled else None
        self._ks = config.keystone
        self._cache: dict[bytes, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def authenticate(self, headers: Mapping[str, str]) -> Caller:
        token = headers.get("x-auth-token") or ""
        bearer = headers.get("authorization", "")
        if not token and bearer.lower().startswith("bearer "):
            token = bearer[7:].strip()
        if not token:
            raise AuthError(401, "authentication required: send X-Auth-Token")
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for known, caller in self._static:  # all compared: no early exit to time
            if hmac.compare_digest(known, digest):
                found = caller
        if found is not None:
            return found
        if self.keystone is None:
            raise AuthError(401, "the token was refused")
        return self._keystone(token, digest)

    def _keystone(self, token: str, digest: bytes) -> Caller:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
            if cached is not None and cached[0] > now:
                return cached[1]
        assert self.keystone is not None
        answer = self.keystone(token)
        if answer is None:
            raise AuthError(401, "the token was refused by Keystone")
        user, roles, expires = answer
        role: Role | None = None
        if set(roles) & set(self._ks.operator_roles):
            role = "operator"
        elif set(roles) & set(self._ks.reader_roles):
            role = "reader"
        if role is None:
            raise AuthError(403, f"Keystone user {user} has none of the roles hastack accepts")
        caller = Caller(user, role, "keystone")
        until = min(now + self._ks.cache, now + max(0.0, expires - time.time()))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            self._cache[digest] = (until, caller)
        return caller


def keystone_checker(conn: Any) -> TokenCheck:
    """Validate tokens with ``conn`` (an openstacksdk connection: the controller's own)."""
    from keystoneauth1 import exceptions as ks_exc  # noqa: PLC0415

    def check(token: str) -> tuple[str, Sequence[str], float] | None:
        try:
            resp = conn.identity.get(
                "/auth/tokens", headers={"X-Subject-Token": token}, raise_exc=False
            )
        except ks_exc.ClientException as exc:
            log.warning("Keystone unreachable for token validation: %s", exc)
            raise AuthError(503, f"Keystone cannot validate tokens now: {exc}") from None
        if resp.status_code in (401, 404):
            return None
        if resp.status_code != 200:
            raise AuthError(503, f"Keystone answered {resp.status_code} to a token validation")
        body = resp.json().get("token", {})
        roles = [str(r.get("name")) for r in body.get("roles", []) if isinstance(r, dict)]
        user = str(body.get("user", {}).get("name", "?"))
        return user, roles, _expiry(body.get("expires_at"))

    return check


def _expiry(text: Any) -> float:
    if not isinstance(text, str):
        return time.time() + 60
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time() + 60
