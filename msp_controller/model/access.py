"""Who may use the REST API, as the operator declares it: tokens (their digests) and roles."""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.Enum):
    OPERATOR = "operator"
    OWNER = "owner"


@dataclass(frozen=True)
class ApiToken:
    name: str  # who holds it, for the log
    role: Role
    sha256: str  # hex digest of the token
    homenet: str | None = None  # the owner's homenet
