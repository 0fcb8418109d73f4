"""An edge's shaper: keeps the downstream shaping on the edge's underlay port in step with the
controller's policies (GET /api/v1/edges/<edge>/shaping, the operator's token).

Once everything (the base and every homenet served there), then twice a second only the
homenets whose policy changed since the version it applied: a homenet's change costs the same
at any number of homenets. What the port holds is journaled (box/edge_journal.py): after a
restart, or when it lost the controller, it asks for everything again but rebuilds only the
homenets whose shaping differs, and the port stays shaped meanwhile; a port of unknown state
(no journal, another boot, the port made again) is cleared and built from the base up.
Commands are checked like the box agent's (box/shaping_apply.py): tc qdisc/class/filter on
this port only, plain-word arguments; a homenet whose commands do not pass keeps its previous
shaping, and the warning names the problem.

    MSP_TOKEN_FILE=/etc/msp/edge.token python -m msp_controller.box.edge_shaper \\
        --api https://198.19.64.10:8080 --edge edge1 --port edge1-up \\
        --journal /run/msp/edge-shaper-edge1-up.journal
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from msp_controller.box.edge_journal import Applied, Journal, digest
from msp_controller.box.shaping_apply import Command, check_command

LOG = logging.getLogger("msp.box.edge_shaper")
POLL_S = 0.5
# A homenet whose tc failed is built again by the next full answer, asked for this long after
# the last one: a transient failure heals, a lasting one is retried (and logged) once a minute.
RETRY_FAILED_S = 60.0
TIMEOUT_S = 10.0
# The leaves' head-drop FIFOs take handles the kernel picks, from 8000: up (dataplane/shaping.py):
# 32,767 a port. Past them each refused FIFO costs the kernel a search of every handle, so
# the shaper stops asking first: those leaves keep HTB's own FIFO (shaped, but tail-drop).
KERNEL_FIFO_BUDGET = 32_000

Fetch = Callable[["int | None", "str | None"], Mapping[str, Any]]  # (since, after) -> the controller's answer
Tc = Callable[[list[Command], bool], "tuple[bool, str]"]  # (commands, force) -> (ok, stderr)


def tc_batch(commands: list[Command], force: bool) -> tuple[bool, str]:
    if not commands:
        return True, ""
    done = subprocess.run(["tc", *(["-force"] if force else []), "-batch", "-"], capture_output=True, text=True,
                          input="".join(" ".join(c) + "\n" for c in commands), timeout=300, check=False)
    return done.returncode == 0, done.stderr.strip()


class EdgeShaper:
    def __init__(self, fetch: Fetch, port: str, tc: Tc = tc_batch, journal: Journal | None = None,
                 incarnation: Callable[[], str | None] | None = None,
                 root_in_place: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fetch, self.port, self.tc, self.clock = fetch, port, tc, clock
        self.journal = journal or Journal(None)
        self.incarnation = incarnation or (lambda: port_incarnation(port))
        self.version: int | None = None  # None: ask for everything
        self.applied: dict[str, Applied] = {}  # each homenet's shaping as the port holds it
        self.by_id: dict[int, str] = {}  # whose handles each id's are
        self.fifo_total = 0  # kernel-handled FIFOs on the port
        self.base: str | None = None  # digest of the base the port holds; None: clear the port first
        self.held: str | None = None  # the port's incarnation the above describe
        self.failed = 0  # homenets whose shaping failed (digest None), built again by the next full answer
        self.last_full = clock()
        self._resume(root_in_place or (lambda: root_in_place_of(port)))

    def _resume(self, root_in_place: Callable[[], bool]) -> None:
        """Take the port's state from the journal when it describes this very port."""
        recorded = self.journal.read()
        if recorded is None:
            return
        now = self.incarnation()
        if recorded.port != self.port or recorded.incarnation != now:
            LOG.info("journal: written for %s in %s, the port is %s now: it is built again",
                     recorded.port, recorded.incarnation, now)
            return
        if not root_in_place():
            LOG.warning("journal: %s has lost its root qdisc: it is built again", self.port)
            return
        try:  # what it will run is checked as what the controller sends is: tc on this port only
            for name, applied in recorded.homenets.items():
                for n, command in enumerate(applied.remove):
                    check_command(command, self.port, f"journal {name}.remove[{n}]")
        except ValueError as err:
            LOG.warning("journal not trusted, %s is built again: %s", self.port, err)
            return
        self.base, self.held = recorded.base, now
        for name, applied in recorded.homenets.items():
            self._keep(name, applied)
        LOG.info("journal: %d homenets on %s as the last shaper left them", len(self.applied), self.port)

    def _keep(self, name: str, applied: Applied) -> None:
        self._drop(name)
        self.applied[name] = applied
        self.fifo_total += applied.fifos
        self.failed += applied.digest is None
        if applied.id is not None:
            self.by_id[applied.id] = name

    def _drop(self, name: str) -> Applied | None:
        applied = self.applied.pop(name, None)
        if applied is not None:
            self.fifo_total -= applied.fifos
            self.failed -= applied.digest is None
            if applied.id is not None and self.by_id.get(applied.id) == name:
                del self.by_id[applied.id]
        return applied

    def _make_room(self, name: str, homenet_id: int | None, remove: list[Command]) -> list[Command]:
        """What undoes whatever the port holds where this homenet's shaping goes: its own old
        shaping, another homenet's on the same id (a homenet gone, its id taken meanwhile) and,
        in case the journal missed it, its new shaping's own removal."""
        undo: list[Command] = []
        holder = self.by_id.get(homenet_id) if homenet_id is not None else None
        for previous in (self._drop(name), self._drop(holder) if holder and holder != name else None):
            if previous is not None:
                undo += [c for c in previous.remove if c not in undo]
        if holder and holder != name:
            self.journal.gone(holder)
        return undo + [c for c in remove if c not in undo]

    def _budgeted(self, name: str, apply: list[Command]) -> tuple[list[Command], int]:
        """(apply, its FIFOs), without them if they do not fit in what is left of the port's handles."""
        wanted = sum(1 for c in apply if _kernel_fifo(c))
        if self.fifo_total + wanted > KERNEL_FIFO_BUDGET:
            LOG.warning("homenet %s: its queues keep tail-drop FIFOs: the port's %d head-drop FIFOs are taken",
                        name, self.fifo_total)
            return [c for c in apply if not _kernel_fifo(c)], 0
        return apply, wanted

    def _checked(self, name: str, entry: Any) -> tuple[list[Command], list[Command]] | None:
        try:
            if not isinstance(entry, dict):
                raise ValueError("expected {remove, apply}")
            remove, apply = entry.get("remove"), entry.get("apply")
            if not isinstance(remove, list) or not isinstance(apply, list):
                raise ValueError("expected lists remove and apply")
            for part, commands in (("remove", remove), ("apply", apply)):
                for n, command in enumerate(commands):
                    check_command(command, self.port, f"{name}.{part}[{n}]")
        except ValueError as err:
            LOG.warning("homenet %s: shaping refused, the previous stays: %s", name, err)
            return None
        if entry.get("unshaped"):
            LOG.warning("homenet %s is not shaped here: %s", name, entry["unshaped"])
        return remove, apply

    def step(self) -> int:
        """One exchange with the controller; returns how many homenets it changed."""
        now = self.incarnation()
        if now is None:
            raise RuntimeError(f"no port {self.port}")
        if now != self.held and self.version is not None:
            LOG.warning("%s is another port now (%s, was %s): its shaping is built again", self.port, now, self.held)
            self.version = None
        if self.failed and self.version is not None and self.clock() - self.last_full >= RETRY_FAILED_S:
            LOG.info("%d homenets' shaping failed: asking for everything to build them again", self.failed)
            self.version = None
        answer = self.fetch(self.version, None)
        homenets = _homenets(answer)
        if answer.get("full"):
            changed = self._everything(answer, now)
        else:
            changed = 0
            for name, entry in homenets.items():
                if entry is None:  # no longer served here
                    gone = self._drop(name)
                    self.tc(gone.remove if gone else [], True)
                    self.journal.gone(name)
                    changed += 1
                elif self._change(name, entry):
                    changed += 1
            if self.journal.oversized(len(self.applied)) and self.base is not None and self.held is not None:
                self.journal.restart(self.port, self.held, self.base, self.applied)
        self.version = answer["version"]
        return changed

    def _change(self, name: str, entry: Any) -> bool:
        """One homenet's new shaping, in place of what it had."""
        checked = self._checked(name, entry)
        if checked is None:
            return False
        remove, apply = checked
        homenet_id = _homenet_id(entry)
        undo = self._make_room(name, homenet_id, remove)
        commands, fifos = self._budgeted(name, apply)
        self.journal.pending(name, homenet_id, undo)
        self.tc(undo, True)  # a pair that was not shaped: its removal fails, harmlessly
        ok, error = self.tc(commands, False)
        if not ok:
            LOG.warning("homenet %s: tc: %s", name, error)
        self._record(name, Applied(homenet_id, digest(apply) if ok else None, fifos, remove if ok else undo))
        return True

    def _record(self, name: str, applied: Applied) -> None:
        self._keep(name, applied)
        self.journal.applied(name, applied)

    def _everything(self, first: Mapping[str, Any], incarnation: str) -> int:
        """Every page of homenets, reconciled with what the port holds: only those whose shaping
        differs are removed and applied again, and those not served any more removed. A port
        of unknown state, or a new base, is cleared and built from the base up. (A change made
        meanwhile comes again with the next `since`: applying a homenet twice is harmless.)"""
        given = first.get("base")
        base: list[Command] = given if isinstance(given, list) else []
        for n, command in enumerate(base):
            check_command(command, self.port, f"base[{n}]")  # a bad base: nothing to build on
        wanted_base = digest(base)
        cleared = wanted_base != self.base or incarnation != self.held
        if cleared:
            self.tc([["qdisc", "del", "dev", self.port, "root"]], True)
            ok, error = self.tc(base, False)
            if not ok:
                self.base = None
                raise RuntimeError(f"the edge's base shaping failed: {error}")
            self.applied, self.by_id, self.fifo_total, self.failed = {}, {}, 0, 0
            self.base, self.held = wanted_base, incarnation
            self.journal.restart(self.port, incarnation, wanted_base, {})
        served: set[str] = set()
        changed = 0
        answer = first
        while True:
            changed += self._page(_homenets(answer), served, cleared)
            after = answer.get("next")
            if not isinstance(after, str):
                break
            answer = self.fetch(None, after)
            if not answer.get("full"):
                raise ValueError("the controller's next page is not part of a full answer")
        stale = [name for name in self.applied if name not in served]
        undo = [c for name in stale for c in self.applied[name].remove]
        self.tc(undo, True)
        for name in stale:
            self._drop(name)
        self.journal.restart(self.port, incarnation, wanted_base, self.applied)
        self.last_full = self.clock()
        LOG.info("edge shaping: everything in place, %d homenets (%d built, %d removed%s)", len(self.applied),
                 changed, len(stale), ", from a cleared port" if cleared else "")
        return changed + len(stale)

    def _page(self, homenets: Mapping[str, Any], served: set[str], cleared: bool) -> int:
        """One page of a full answer: the homenets whose shaping differs, removed in one batch
        and built in another (about a second per 500 homenets)."""
        undo: list[Command] = []
        build: list[Command] = []
        done: list[tuple[str, Applied, list[Command]]] = []
        for name, entry in homenets.items():
            if entry is None:
                continue
            served.add(name)
            old = self.applied.get(name)
            if old is not None and isinstance(entry, dict) and old.digest == digest(entry.get("apply")):
                continue  # the very commands it checked and applied before
            checked = self._checked(name, entry)
            if checked is None:
                continue  # refused: the previous stays
            remove, apply = checked
            wanted = digest(apply)
            homenet_id = _homenet_id(entry)
            undoing = self._make_room(name, homenet_id, remove)
            commands, fifos = self._budgeted(name, apply)
            self._keep(name, Applied(homenet_id, None, fifos, undoing))
            self.journal.pending(name, homenet_id, undoing)
            if not cleared:
                undo += undoing
            build += commands
            done.append((name, Applied(homenet_id, wanted, fifos, remove), undoing))
        self.tc(undo, True)
        ok, error = self.tc(build, True)
        if not ok:
            LOG.warning("some homenets' shaping failed (built again after the next restart): %s", error)
        for name, applied, undoing in done:
            self._record(name, applied if ok else Applied(applied.id, None, applied.fifos, undoing))
        return len(done)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if self.step():
                    LOG.info("edge shaping at version %s", self.version)
            except (OSError, ValueError, RuntimeError, subprocess.TimeoutExpired) as err:
                LOG.warning("edge shaping: %s (asking for everything next time)", err)
                self.version = None
            stop.wait(POLL_S)


def port_incarnation(port: str) -> str | None:
    """The machine's boot and the port's ifindex, or None without the port: a reboot, or a port
    deleted and made again, is another incarnation, whose qdiscs hold none of the shaping."""
    try:
        index = socket.if_nametoindex(port)
    except OSError:
        return None
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
        return f"{file.read().strip()}/{index}"


def root_in_place_of(port: str) -> bool:
    """Does the port's root still hold the edge's base (dataplane/shaping.py: HTB, handle 1:)?"""
    done = subprocess.run(["tc", "qdisc", "show", "dev", port, "root"], capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)
    return done.returncode == 0 and done.stdout.split()[1:3] == ["htb", "1:"]


def _homenet_id(entry: Mapping[str, Any]) -> int | None:
    found = entry.get("id")
    return found if isinstance(found, int) and not isinstance(found, bool) else None


def _kernel_fifo(command: Command) -> bool:
    """A leaf's FIFO whose handle the kernel picks (a qdisc command naming none)."""
    return command[:2] == ["qdisc", "replace"] and "handle" not in command and "root" not in command


def _homenets(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    homenets = answer.get("homenets")
    if not isinstance(homenets, dict) or not isinstance(answer.get("version"), int):
        raise ValueError("the controller's answer has no version or homenets")
    return homenets


def rest_fetch(base_url: str, edge: str, token: str, cafile: str | None = None) -> Fetch:
    context = ssl.create_default_context(cafile=cafile) if base_url.startswith("https:") else None
    path = "/api/v1/edges/{}/shaping".format(urllib.parse.quote(edge, safe=""))

    def fetch(since: int | None, after: str | None) -> Mapping[str, Any]:
        query = {k: v for k, v in (("since", since), ("after", after)) if v is not None}
        url = base_url.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as err:
            raise ValueError(f"{path}: {err.code} {err.read()[:200]!r}") from None

    return fetch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="msp-edge-shaper", description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", required=True, help="the controller's REST API (https://...)")
    parser.add_argument("--edge", required=True, help="this edge's name in the controller's config")
    parser.add_argument("--port", required=True, help="the edge's underlay port (the only one it shapes)")
    parser.add_argument("--journal", help="what the port holds (default /run/msp/edge-shaper-<port>.journal: "
                        "it need not outlive a reboot, the port's qdiscs do not)")
    parser.add_argument("--cacert", default=os.environ.get("MSP_CACERT"), help="CA of the API's certificate")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    token = os.environ.get("MSP_TOKEN")
    if not token and os.environ.get("MSP_TOKEN_FILE"):
        with open(os.environ["MSP_TOKEN_FILE"]) as handle:
            token = handle.read().strip()
    if not token:
        print("msp-edge-shaper: the operator's token in $MSP_TOKEN or $MSP_TOKEN_FILE", file=sys.stderr)
        return 2
    journal = Journal(args.journal or f"/run/msp/edge-shaper-{args.port}.journal")
    shaper = EdgeShaper(rest_fetch(args.api, args.edge, token, args.cacert), args.port, journal=journal)
    LOG.info("edge shaper for %s on %s, controller %s", args.edge, args.port, args.api)
    shaper.run(threading.Event())
    return 0


if __name__ == "__main__":
    sys.exit(main())
