"""What the dashboard shows, as plain data from the core (built on core/view.py).

A homenet's status at a glance:
  down      its default class has no path, or a path known down, in some direction
  unknown   its default class's path is not known to work (a box not connected, say)
  degraded  it is served, but some of its paths are not up
  ok        every path up
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from msp_controller.core.view import homenet_view, summary_view

if TYPE_CHECKING:
    from msp_controller.core.msp import MspCore

STATUSES = ("down", "unknown", "degraded", "ok")
MAX_PER_PAGE = 200
RECENT_CHANGES = 20


def status_of(summary: dict[str, Any]) -> str:
    served = [summary.get(f"active_{d}_state") for d in ("egress", "ingress")]
    if any(state in (None, "down") for state in served):
        return "down"
    if any(state == "unknown" for state in served):
        return "unknown"
    states = (summary.get("path_states") or {}).values()
    return "ok" if states and all(state == "up" for state in states) else "degraded"


def summary(core: MspCore, name: str) -> dict[str, Any]:
    found = summary_view(core, name)
    states = list(found["path_states"].values())
    return {"name": name, "status": status_of(found),
            "egress": found["active_egress"], "ingress": found["active_ingress"],
            "paths_up": states.count("up"), "paths": len(states)}


def homenet_page(core: MspCore, query: str = "", status: str = "", page: int = 1,
                 per_page: int = 50, only: str | None = None) -> dict[str, Any]:
    """One page of the homenets whose name contains `query` (and whose status is `status`),
    in name order, with the count of each status among those matching the query. `only`: an
    owner's own homenet. The matching runs here, so a browser never receives thousands."""
    if status and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status[:20]!r}")
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    needle = query.strip().lower()
    names = sorted(n for n in core.homenets if (only is None or n == only) and needle in n.lower())
    counts = dict.fromkeys(STATUSES, 0)
    matching: list[dict[str, Any]] = []
    for name in names:
        row = summary(core, name)
        counts[row["status"]] += 1
        if not status or row["status"] == status:
            matching.append(row)
    pages = max(1, -(-len(matching) // per_page))
    page = max(1, min(page, pages))
    return {"total": len(matching), "page": page, "pages": pages, "per_page": per_page, "counts": counts,
            "homenets": matching[(page - 1) * per_page:page * per_page]}


def recent_changes(core: MspCore, name: str, now: float, wall: float | None = None) -> list[dict[str, Any]]:
    """The homenet's last path changes, newest first (from the core's bounded record)."""
    wall = time.time() if wall is None else wall
    found = []
    for change in reversed(core.path_changes):
        if change.homenet != name:
            continue
        found.append({"at": change.at, "when": round(wall - (now - change.at), 3), "class": change.traffic_class,
                      "direction": change.direction, "old": change.old, "new": change.new})
        if len(found) >= RECENT_CHANGES:
            break
    return found


def detail(core: MspCore, name: str, now: float) -> dict[str, Any]:
    view = homenet_view(core, name, now)
    view["status"] = status_of(summary_view(core, name))
    view["changes"] = recent_changes(core, name, now)
    view["at"] = now
    return view


def stats_sample(core: MspCore, name: str, now: float, wall: float | None = None) -> dict[str, Any]:
    """RTT and loss of each of the homenet's paths now: one point of the live graphs."""
    view = homenet_view(core, name, now)
    return {"when": round(time.time() if wall is None else wall, 3),
            "paths": {p["path"]: {"rtt_ms": p["rtt_ms"], "loss_pct": p["loss_pct"], "state": p["state"]}
                      for p in view["paths"]}}
