"""Dashboard logins: a REST token, given once in a login POST, becomes a signed cookie.

A browser's EventSource cannot send an Authorization header, and a token in a URL ends up in
logs and history. So the page POSTs the token (JSON body), and the answer sets a cookie
(HttpOnly: scripts cannot read it; SameSite=Strict: other sites cannot make the browser
send it; Secure over HTTPS; Path=/dashboard) holding the token's SHA-256 digest and an expiry,
signed with HMAC-SHA256 under a key made at start-up. Each request looks the digest up among
the configured tokens again, so a token removed from the config stops working for its
sessions too. Sessions end when the controller restarts (new key): log in again.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable

from msp_controller.api.auth import AuthError, Authorizer, Principal

COOKIE = "msp_session"
SESSION_S = 8 * 3600


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, auth: Authorizer, key: bytes | None = None, lifetime_s: float = SESSION_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.auth = auth
        self.key = key or secrets.token_bytes(32)
        self.lifetime_s = lifetime_s
        self.clock = clock

    def login(self, token: str) -> tuple[Principal, str]:
        """The principal a token names and the cookie value for it; AuthError(401) if unknown."""
        principal = self.auth.authenticate(f"Bearer {token}")
        body = _b64(json.dumps({"d": hashlib.sha256(token.strip().encode()).hexdigest(),
                                "e": int(self.clock() + self.lifetime_s)}).encode())
        return principal, f"{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self.key, body.encode("ascii"), hashlib.sha256).digest())

    def principal(self, cookie: str | None, authorization: str | None) -> Principal:
        """Who is asking: a bearer token (scripts) or a session cookie (the page)."""
        if self.auth.open or authorization:
            return self.auth.authenticate(authorization)
        if not cookie:
            raise AuthError(401, "log in first: POST your token to /dashboard/login")
        body, _, signature = cookie.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            raise AuthError(401, "session not valid (the controller may have restarted): log in again")
        try:
            fields = json.loads(_unb64(body))
            digest, expires = str(fields["d"]), float(fields["e"])
        except (ValueError, KeyError, TypeError):
            raise AuthError(401, "session not valid: log in again") from None
        if expires < self.clock():
            raise AuthError(401, "session expired: log in again")
        for known in self.auth.tokens:
            if hmac.compare_digest(known.sha256, digest):
                return Principal(known.name, known.role, known.homenet)
        raise AuthError(401, "the token of this session is no longer configured")
