"""mspctl watch: follow path changes live by polling the REST API, one line per change.

Each poll becomes a snapshot, (homenet, what) -> value: every path's state and, for each
class and direction, the path it uses and what is known of it. Only differences between
consecutive snapshots are printed. A controller that cannot be reached (restarting, say)
is reported once and watched for until it answers again; the deadline or Ctrl-C ends it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from msp_controller.api.ctl_tables import path_state, with_state

Key = tuple[str, str]  # (homenet, what): ("home1", "path ispA@edge1"), ("home1", "default egress")
Snapshot = dict[Key, str]
DIRECTIONS = ("egress", "ingress")
ABSENT, GONE, NO_PATH = "absent", "gone", "no path"


class Unavailable(Exception):
    """The answer cannot be had now, but may be later (not reachable, no such homenet yet)."""


def homenet_snapshot(homenet: dict[str, Any]) -> Snapshot:
    """From GET /homenets/{name}: every path and every class."""
    name = str(homenet.get("name"))
    snapshot: Snapshot = {(name, f"path {p.get('path')}"): path_state(p) for p in homenet.get("paths", [])}
    for traffic_class in homenet.get("classes", []):
        for direction in DIRECTIONS:
            used = with_state(traffic_class.get(direction), traffic_class.get(f"{direction}_state"))
            snapshot[(name, f"{traffic_class.get('name')} {direction}")] = used or NO_PATH
    return snapshot


def list_snapshot(homenets: list[dict[str, Any]]) -> Snapshot:
    """From GET /homenets: every path, and the default class (what the list carries)."""
    snapshot: Snapshot = {}
    for homenet in homenets:
        name = str(homenet.get("name"))
        for path, state in (homenet.get("path_states") or {}).items():
            snapshot[(name, f"path {path}")] = str(state)
        for direction in DIRECTIONS:
            used = with_state(homenet.get(f"active_{direction}"), homenet.get(f"active_{direction}_state"))
            snapshot[(name, f"default {direction}")] = used or NO_PATH
    return snapshot


def changes(old: Snapshot, new: Snapshot) -> Iterator[tuple[Key, str, str]]:
    """(key, before, after) for what differs: in the new snapshot's order, then what went."""
    for key, value in new.items():
        before = old.get(key, ABSENT)
        if before != value:
            yield key, before, value
    for key, value in old.items():
        if key not in new:
            yield key, value, GONE


def watch(fetch: Callable[[], Snapshot], out: TextIO, interval_s: float, for_s: float | None,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
          stamp: Callable[[], str] = lambda: time.strftime("%H:%M:%S")) -> None:
    """Poll every interval_s until for_s has passed (None: until interrupted)."""
    deadline = None if for_s is None else clock() + for_s
    previous: Snapshot | None = None
    problem: str | None = None
    while True:
        started = clock()
        try:
            snapshot: Snapshot | None = fetch()
        except Unavailable as err:
            snapshot = None
            if str(err) != problem:
                _say(out, f"{stamp()} {err}")
            problem = str(err)
        if snapshot is not None:
            if problem is not None:
                _say(out, f"{stamp()} answering again")
                problem = None
            if previous is not None:  # the first poll is where we start, not a change
                for (homenet, what), before, after in changes(previous, snapshot):
                    _say(out, f"{stamp()} {homenet} {what}: {before} -> {after}")
            previous = snapshot
        now = clock()
        if deadline is not None and now >= deadline:
            return
        pause = max(0.0, interval_s - (now - started))
        sleep(pause if deadline is None else min(pause, deadline - now))


def _say(out: TextIO, line: str) -> None:
    print(line, file=out, flush=True)  # flushed: `mspctl watch | grep ...` sees each line at once
