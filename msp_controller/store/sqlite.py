"""The embedded default store: one SQLite file (the standard library's sqlite3).

Each write is one transaction with synchronous=FULL in WAL mode: when it returns, the
change survives a crash or power loss, and a crash during it leaves the previous state.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from msp_controller.store.base import StoredState

if TYPE_CHECKING:
    from msp_controller.core.leases import LeaseChange

SCHEMA = """
CREATE TABLE IF NOT EXISTS homenets (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS policies (name TEXT PRIMARY KEY, policy TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deleted (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS leases (homenet TEXT NOT NULL, ip TEXT NOT NULL, mac TEXT NOT NULL,
                                   PRIMARY KEY (homenet, ip));
CREATE TABLE IF NOT EXISTS uplink_addresses (name TEXT, uplink TEXT, address TEXT NOT NULL,
                                             PRIMARY KEY (name, uplink));
CREATE TABLE IF NOT EXISTS policy_versions (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS policy_versions_by_version ON policy_versions (version);
"""

# A homenet whose policy or spec changed (or that was deleted) gets the next version: a
# reader in another process (the OVSDB manager) asks what changed since the version it has
# seen, at a cost that grows with the changes, not with the homenets.
_BUMP = ("INSERT OR REPLACE INTO policy_versions (name, version) "
         "VALUES (?, (SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions))")


class SqliteStore:
    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def load(self) -> StoredState:
        homenets = {name: json.loads(spec) for name, spec in self._db.execute("SELECT name, spec FROM homenets")}
        policies = {name: json.loads(p) for name, p in self._db.execute("SELECT name, policy FROM policies")}
        deleted = frozenset(name for (name,) in self._db.execute("SELECT name FROM deleted"))
        leases = tuple(self._db.execute("SELECT homenet, ip, mac FROM leases"))
        addresses = {(name, uplink): address for name, uplink, address
                     in self._db.execute("SELECT name, uplink, address FROM uplink_addresses")}
        return StoredState(homenets, policies, deleted, leases, addresses)

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                self._db.execute(sql, args)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def put_homenet(self, name: str, spec: dict[str, Any], policy: dict[str, Any] | None) -> None:
        statements: list[tuple[str, tuple[Any, ...]]] = [
            ("INSERT OR REPLACE INTO homenets (name, spec) VALUES (?, ?)", (name, json.dumps(spec, sort_keys=True))),
            ("DELETE FROM deleted WHERE name = ?", (name,)),
        ]
        if policy is not None:
            statements.append(("INSERT OR REPLACE INTO policies (name, policy) VALUES (?, ?)",
                               (name, json.dumps(policy, sort_keys=True))))
        statements.append((_BUMP, (name,)))
        self._write(statements)

    def delete_homenet(self, name: str) -> None:
        self._write([("DELETE FROM homenets WHERE name = ?", (name,)),
                     ("DELETE FROM policies WHERE name = ?", (name,)),
                     ("DELETE FROM leases WHERE homenet = ?", (name,)),
                     ("DELETE FROM uplink_addresses WHERE name = ?", (name,)),
                     ("INSERT OR REPLACE INTO deleted (name) VALUES (?)", (name,)),
                     (_BUMP, (name,))])

    def put_policy(self, name: str, policy: dict[str, Any]) -> None:
        self._write([("INSERT OR REPLACE INTO policies (name, policy) VALUES (?, ?)",
                      (name, json.dumps(policy, sort_keys=True))),
                     (_BUMP, (name,))])

    def changed_since(self, version: int) -> tuple[int, list[str]]:
        """The homenets whose policy or spec changed after version, and the latest version."""
        rows = self._db.execute("SELECT name, version FROM policy_versions WHERE version > ? ORDER BY version",
                                (version,)).fetchall()
        return (rows[-1][1] if rows else version), [name for name, _ in rows]

    def current_version(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(version), 0) FROM policy_versions").fetchone()[0])

    def homenet_record(self, name: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """One homenet's stored (spec, policy), each None when not stored."""
        spec = self._db.execute("SELECT spec FROM homenets WHERE name = ?", (name,)).fetchone()
        policy = self._db.execute("SELECT policy FROM policies WHERE name = ?", (name,)).fetchone()
        return (json.loads(spec[0]) if spec else None), (json.loads(policy[0]) if policy else None)

    def put_leases(self, changes: Sequence[LeaseChange]) -> None:
        """DHCP bindings: an address given to a MAC, or freed (mac None); one transaction."""
        self._write([("DELETE FROM leases WHERE homenet = ? AND ip = ?", (c.homenet, c.ip)) if c.mac is None else
                     ("INSERT OR REPLACE INTO leases (homenet, ip, mac) VALUES (?, ?, ?)", (c.homenet, c.ip, c.mac))
                     for c in changes])

    def put_uplink_address(self, name: str, uplink: str, address: str | None) -> None:
        if address is None:
            self._write([("DELETE FROM uplink_addresses WHERE name = ? AND uplink = ?", (name, uplink))])
        else:
            self._write([("INSERT OR REPLACE INTO uplink_addresses (name, uplink, address) VALUES (?, ?, ?)",
                          (name, uplink, address))])

    def close(self) -> None:
        self._db.close()


class MemoryStore:
    """No durability: for a controller started without a state path (and for unit tests)."""

    def __init__(self) -> None:
        self.state = StoredState()
        self.versions: dict[str, int] = {}  # as SqliteStore's policy_versions
        self.version = 0  # the latest of them

    def _bump(self, name: str) -> None:
        self.version += 1
        self.versions[name] = self.version

    def current_version(self) -> int:
        return self.version

    def changed_since(self, version: int) -> tuple[int, list[str]]:
        changed = sorted((v, name) for name, v in self.versions.items() if v > version)
        return (changed[-1][0] if changed else version), [name for _, name in changed]

    def load(self) -> StoredState:
        return dataclasses.replace(self.state, homenets=dict(self.state.homenets),
                                   policies=dict(self.state.policies),
                                   uplink_addresses=dict(self.state.uplink_addresses))

    def put_homenet(self, name: str, spec: dict[str, Any], policy: dict[str, Any] | None) -> None:
        policies = dict(self.state.policies)
        if policy is not None:
            policies[name] = policy
        self.state = dataclasses.replace(self.state, homenets={**self.state.homenets, name: spec},
                                         policies=policies, deleted=self.state.deleted - {name})
        self._bump(name)

    def delete_homenet(self, name: str) -> None:
        self.state = StoredState({k: v for k, v in self.state.homenets.items() if k != name},
                                 {k: v for k, v in self.state.policies.items() if k != name},
                                 self.state.deleted | {name},
                                 tuple(lease for lease in self.state.leases if lease[0] != name),
                                 {k: v for k, v in self.state.uplink_addresses.items() if k[0] != name})
        self._bump(name)

    def put_policy(self, name: str, policy: dict[str, Any]) -> None:
        self.state = dataclasses.replace(self.state, policies={**self.state.policies, name: policy})
        self._bump(name)

    def put_leases(self, changes: Sequence[LeaseChange]) -> None:
        leases = {(h, ip): mac for h, ip, mac in self.state.leases}
        for change in changes:
            if change.mac is None:
                leases.pop((change.homenet, change.ip), None)
            else:
                leases[(change.homenet, change.ip)] = change.mac
        self.state = dataclasses.replace(self.state, leases=tuple((h, ip, mac) for (h, ip), mac in leases.items()))

    def put_uplink_address(self, name: str, uplink: str, address: str | None) -> None:
        addresses = {k: v for k, v in self.state.uplink_addresses.items() if k != (name, uplink)}
        if address is not None:
            addresses[(name, uplink)] = address
        self.state = dataclasses.replace(self.state, uplink_addresses=addresses)

    def close(self) -> None:
        pass
