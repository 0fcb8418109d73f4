"""What an edge's shaper has applied on its port, kept in a file beside the kernel's state, so
that a restarted shaper, or one that lost the controller for a while, reconciles the port with
the controller's answer instead of clearing it and building every homenet again (seconds to
minutes unshaped at thousands of homenets: docs/operations.md).

The journal describes the port's qdiscs and lives no longer than they do: its first line names
the port's incarnation (the machine's boot and the port's ifindex), and a journal written for
another one is not trusted. One JSON object a line, appended as homenets change (a constant cost
a change) and rewritten whole after a full answer, or once it has grown to several lines a
homenet:

    {"journal": 1, "port": "edge1-up", "incarnation": "<boot id>/<ifindex>", "base": "<digest>"}
    {"name": "home1", "id": 1, "digest": null, "remove": [...]}       before its tc runs
    {"name": "home1", "id": 1, "digest": "...", "fifos": 8, "remove": [[...], ...]}   after
    {"name": "home1", "gone": true}

A homenet whose last line has no digest (the shaper stopped during its tc) is removed, by what
undoes both its old and its new shaping, and built again. A
torn last line (the shaper killed while writing it) is skipped; anything else unreadable and
the whole journal is not trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import IO, Any

from msp_controller.box.shaping_apply import Command

LOG = logging.getLogger("msp.box.edge_journal")
FORMAT = 1
COMPACT_SLACK = 1000  # lines beyond two a homenet before the journal is rewritten


def digest(commands: Any) -> str:
    """A homenet's (or the base's) commands, as the journal compares them (any JSON value:
    what the controller sent, before it is checked)."""
    return hashlib.sha256(json.dumps(commands, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Applied:
    """One homenet's shaping as the port holds it."""
    id: int | None  # its id (its handles derive from it); None from a controller that does not say
    digest: str | None  # of the commands applied; None: its tc may have stopped half-way
    fifos: int  # kernel-handled FIFOs among them (the shaper's budget)
    remove: list[Command]  # what undoes it


@dataclass(frozen=True)
class Recorded:
    """A journal as read back: the port it describes, its base, its homenets."""
    port: str
    incarnation: str
    base: str
    homenets: dict[str, Applied]


class Journal:
    """The file; path None keeps nothing (a shaper run without one rebuilds on restart)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._lines = 0

    def read(self) -> Recorded | None:
        """The journal as written, or None (none yet, or not readable: the reason is logged)."""
        if self.path is None or not os.path.exists(self.path):
            return None
        try:
            with open(self.path, encoding="utf-8") as file:
                return _parse(file.read())
        except (OSError, ValueError) as err:
            LOG.warning("journal %s not trusted, the port is built again: %s", self.path, err)
            return None

    def restart(self, port: str, incarnation: str, base: str, homenets: dict[str, Applied]) -> None:
        """Write the whole journal again (to a new file, renamed over the old one)."""
        if self.path is None:
            return
        self.close()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        partial = self.path + ".new"
        with open(partial, "w", encoding="utf-8") as file:
            file.write(_line({"journal": FORMAT, "port": port, "incarnation": incarnation, "base": base}))
            for name, applied in homenets.items():
                file.write(_line(_applied_record(name, applied)))
        os.replace(partial, self.path)
        self._file = open(self.path, "a", encoding="utf-8")
        self._lines = 1 + len(homenets)

    def pending(self, name: str, homenet_id: int | None, remove: list[Command]) -> None:
        """Before a homenet's tc: remove undoes whatever that tc may leave half-done."""
        self._append({"name": name, "id": homenet_id, "digest": None, "remove": remove})

    def applied(self, name: str, applied: Applied) -> None:
        self._append(_applied_record(name, applied))

    def gone(self, name: str) -> None:
        self._append({"name": name, "gone": True})

    def oversized(self, homenets: int) -> bool:
        return self._lines > 2 * homenets + COMPACT_SLACK

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _append(self, record: dict[str, Any]) -> None:
        # Flushed, not synced: the journal must outlive the shaper, not the machine (the
        # kernel's qdiscs, which it describes, do not outlive a reboot either).
        if self._file is None:
            return
        self._file.write(_line(record))
        self._file.flush()
        self._lines += 1


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


def _applied_record(name: str, applied: Applied) -> dict[str, Any]:
    return {"name": name, "id": applied.id, "digest": applied.digest, "fifos": applied.fifos,
            "remove": applied.remove}


def _parse(text: str) -> Recorded:
    lines = text.split("\n")
    torn = lines.pop()  # "" after a whole last line; what was being written when the shaper stopped
    if torn:
        LOG.warning("journal: a torn last line skipped (%d characters)", len(torn))
    if not lines:
        raise ValueError("empty")
    header = json.loads(lines[0])
    if not isinstance(header, dict) or header.get("journal") != FORMAT:
        raise ValueError(f"first line is not a format {FORMAT} header")
    port, incarnation, base = header.get("port"), header.get("incarnation"), header.get("base")
    if not (isinstance(port, str) and isinstance(incarnation, str) and isinstance(base, str)):
        raise ValueError("the header lacks port, incarnation or base")
    homenets: dict[str, Applied] = {}
    for number, line in enumerate(lines[1:], start=2):
        name, applied = _record(json.loads(line), number)
        if applied is None:
            homenets.pop(name, None)
        else:
            homenets[name] = applied
    return Recorded(port, incarnation, base, homenets)


def _record(record: Any, number: int) -> tuple[str, Applied | None]:
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise ValueError(f"line {number}: no homenet name")
    name = record["name"]
    if record.get("gone") is True:
        return name, None
    homenet_id, found, remove = record.get("id"), record.get("digest"), record.get("remove")
    if homenet_id is not None and not isinstance(homenet_id, int):
        raise ValueError(f"line {number}: id is not a whole number")
    if not isinstance(remove, list) or \
            not all(isinstance(c, list) and all(isinstance(a, str) for a in c) for c in remove):
        raise ValueError(f"line {number}: remove is not a list of commands")
    if found is None:
        return name, Applied(homenet_id, None, 0, remove)
    fifos = record.get("fifos")
    if not isinstance(found, str) or not isinstance(fifos, int):
        raise ValueError(f"line {number}: expected a digest and fifos")
    return name, Applied(homenet_id, found, fifos, remove)
