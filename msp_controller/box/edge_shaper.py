"""An edge's shaper: keeps the downstream shaping on the edge's underlay port in step with the
controller's policies (GET /api/v1/edges/<edge>/shaping, the operator's token).

Once everything (a cleared port, the base, every homenet served there), then twice a second
only the homenets whose policy changed since the version it applied: a homenet's change costs
the same at any number of homenets. Nothing is kept only here: after a restart it asks for
everything again. Commands are checked like the box agent's (box/shaping_apply.py): tc
qdisc/class/filter on this port only, plain-word arguments; a homenet whose commands do not
pass keeps its previous shaping, and the warning names the problem.

    MSP_TOKEN_FILE=/etc/msp/edge.token python -m msp_controller.box.edge_shaper \\
        --api https://198.19.64.10:8080 --edge edge1 --port edge1-up
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from msp_controller.box.shaping_apply import Command, check_command

LOG = logging.getLogger("msp.box.edge_shaper")
POLL_S = 0.5
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
    def __init__(self, fetch: Fetch, port: str, tc: Tc = tc_batch) -> None:
        self.fetch, self.port, self.tc = fetch, port, tc
        self.version: int | None = None  # None: ask for everything
        self.removals: dict[str, list[Command]] = {}  # what undoes each homenet's applied shaping
        self.fifos: dict[str, int] = {}  # kernel-handled FIFOs each homenet's shaping made
        self.fifo_total = 0

    def _budgeted(self, name: str, apply: list[Command]) -> list[Command]:
        """apply, without its FIFOs if they do not fit in what is left of the port's handles."""
        self.fifo_total -= self.fifos.pop(name, 0)
        wanted = sum(1 for c in apply if _kernel_fifo(c))
        if self.fifo_total + wanted > KERNEL_FIFO_BUDGET:
            LOG.warning("homenet %s: its queues keep tail-drop FIFOs: the port's %d head-drop FIFOs are taken",
                        name, self.fifo_total)
            return [c for c in apply if not _kernel_fifo(c)]
        self.fifos[name] = wanted
        self.fifo_total += wanted
        return apply

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
        answer = self.fetch(self.version, None)
        homenets = _homenets(answer)
        if answer.get("full"):
            changed = self._everything(answer)
        else:
            changed = 0
            for name, entry in homenets.items():
                if entry is None:  # no longer served here
                    self.tc(self.removals.pop(name, []), True)
                    self.fifo_total -= self.fifos.pop(name, 0)
                    changed += 1
                    continue
                checked = self._checked(name, entry)
                if checked is None:
                    continue
                remove, apply = checked
                self.tc(remove, True)  # a pair that was not shaped: its removal fails, harmlessly
                ok, error = self.tc(self._budgeted(name, apply), False)
                if not ok:
                    LOG.warning("homenet %s: tc: %s", name, error)
                self.removals[name] = remove
                changed += 1
        self.version = answer["version"]
        return changed

    def _everything(self, first: Mapping[str, Any]) -> int:
        """A cleared port, the base, then every page of homenets (a change made meanwhile comes
        again with the next `since`: removing and applying a homenet twice is harmless)."""
        given = first.get("base")
        base: list[Command] = given if isinstance(given, list) else []
        for n, command in enumerate(base):
            check_command(command, self.port, f"base[{n}]")  # a bad base: nothing to build on
        self.tc([["qdisc", "del", "dev", self.port, "root"]], True)
        ok, error = self.tc(base, False)
        if not ok:
            raise RuntimeError(f"the edge's base shaping failed: {error}")
        self.removals, self.fifos, self.fifo_total = {}, {}, 0
        answer = first
        while True:
            commands: list[Command] = []
            for name, entry in _homenets(answer).items():
                checked = None if entry is None else self._checked(name, entry)
                if checked is not None:
                    commands += self._budgeted(name, checked[1])
                    self.removals[name] = checked[0]
            ok, error = self.tc(commands, True)  # one batch a page: about a second per 500 homenets
            if not ok:
                LOG.warning("some homenets' shaping failed: %s", error)
            after = answer.get("next")
            if not isinstance(after, str):
                break
            answer = self.fetch(None, after)
            if not answer.get("full"):
                raise ValueError("the controller's next page is not part of a full answer")
        LOG.info("edge shaping: everything applied, %d homenets", len(self.removals))
        return len(self.removals)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if self.step():
                    LOG.info("edge shaping at version %s", self.version)
            except (OSError, ValueError, RuntimeError, subprocess.TimeoutExpired) as err:
                LOG.warning("edge shaping: %s (asking for everything next time)", err)
                self.version = None
            stop.wait(POLL_S)


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
    shaper = EdgeShaper(rest_fetch(args.api, args.edge, token, args.cacert), args.port)
    LOG.info("edge shaper for %s on %s, controller %s", args.edge, args.port, args.api)
    shaper.run(threading.Event())
    return 0


if __name__ == "__main__":
    sys.exit(main())
