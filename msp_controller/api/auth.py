"""Who may use the REST API, and for what: bearer tokens, stored as SHA-256 digests.

Two roles. The operator may do everything. A homenet's owner may read that homenet, read
and change its policy, and list homenets (seeing only their own); nothing else. Tokens
are random secrets (see `mspctl token`), so a plain SHA-256 digest is enough to keep the
config free of them; digests are compared in constant time.

With no token configured the API is open, which the app allows only on a loopback address.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from msp_controller.model.access import ApiToken, Role


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    homenet: str | None = None

    def may(self, method: str, template: str, homenet: str | None) -> bool:
        """May this principal call `method` on the route `template` (for `homenet`)?"""
        if self.role is Role.OPERATOR:
            return True
        if template.endswith("/homenets") and method == "GET":
            return True  # the list is filtered to their own homenet
        if homenet is None or homenet != self.homenet:
            return False
        if template.endswith("/policy"):
            return method in ("GET", "PUT")
        return template.endswith("/homenets/{name}") and method == "GET"


OPEN = Principal("anyone (no tokens configured)", Role.OPERATOR)


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class Authorizer:
    def __init__(self, tokens: Sequence[ApiToken]) -> None:
        self.tokens = tuple(tokens)

    @property
    def open(self) -> bool:
        return not self.tokens

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal an Authorization header names; AuthError(401) if none."""
        if self.open:
            return OPEN
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "this API needs a token: send 'Authorization: Bearer <token>'")
        wanted = digest(token.strip())
        for known in self.tokens:
            if hmac.compare_digest(known.sha256, wanted):
                return Principal(known.name, known.role, known.homenet)
        raise AuthError(401, "unknown token")

    @staticmethod
    def authorize(principal: Principal, method: str, template: str, homenet: str | None) -> None:
        if not principal.may(method, template, homenet):
            raise AuthError(403, f"{principal.name} ({principal.role.value}) may not {method} this")
