"""mspctl's tables: the API's JSON answers (health, the homenet list, one homenet) as plain
text columns for a person. Scripts use --json, which prints the answer as it came.

Every field is read with a default: an older or newer controller may lack a field or add
one, and a table must still print.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

NONE = "-"
STATE_ORDER = ("up", "down", "unknown")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns two spaces apart; None prints as "-"."""
    cells = [[NONE if value is None else str(value) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]
    lines = [[*headers], *cells]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def path_state(path: dict[str, Any]) -> str:
    """A path's state; a controller without "state" only says whether it is live."""
    state = path.get("state")
    if isinstance(state, str):
        return state
    return "live" if path.get("live") else "not live"


def with_state(path: Any, state: Any) -> str | None:
    """"ispA@edge1 (up)": the path(s) a class uses, and what is known of them."""
    if path is None:
        return None
    return f"{path} ({state})" if state else str(path)


def state_counts(counts: Mapping[str, int]) -> str:
    """"2 up, 2 unknown": how many paths are in each state."""
    order = [*STATE_ORDER, *sorted(s for s in counts if s not in STATE_ORDER)]
    return ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s)) or "none"


def health_text(health: dict[str, Any]) -> str:
    paths = health.get("paths")
    lines = [f"status {health.get('status', '?')}   uptime {health.get('uptime_s', '?')} s   "
             f"homenets {health.get('homenets', '?')}   probes saturated: {_yes(health.get('probes_saturated'))}"]
    if isinstance(paths, dict):
        lines.append("paths  " + state_counts(paths))
    counts = health.get("switch_counts")
    if isinstance(counts, dict) and counts:
        lines.append("switches  " + "   ".join(
            f"{role}: " + ", ".join(f"{n} {state}" for state, n in states.items() if n)
            for role, states in sorted(counts.items()) if isinstance(states, dict) and any(states.values())))
    switches = health.get("switches") or {}
    if health.get("switches_listed") == "not_reconciled":
        lines.append("(listed below: only the switches not reconciled; all of them: GET /api/v1/switches)")
    if switches:
        rows = [(dpid, s.get("role"), s.get("name"), _yes(s.get("connected")), _yes(s.get("reconciled")))
                for dpid, s in sorted(switches.items(), key=lambda item: (str(item[1].get("role")), item[0]))]
        lines += ["", table(["SWITCH", "ROLE", "NAME", "CONNECTED", "RECONCILED"], rows)]
    sessions = health.get("bgp") or {}
    if sessions:
        lines += ["", table(["BGP NEIGHBOR", "STATE"], sorted(sessions.items()))]
    shapers = health.get("edge_shapers") or {}
    if any(isinstance(s, dict) and s.get("seen_s_ago") is not None for s in shapers.values()):
        shaper_rows: list[tuple[Any, ...]] = [
            (edge, s.get("seen_s_ago"), s.get("applied_version"), s.get("versions_behind"), _yes(s.get("silent")))
            for edge, s in sorted(shapers.items()) if isinstance(s, dict)]
        lines += ["", table(["EDGE SHAPER", "ASKED (s ago)", "APPLIED VERSION", "BEHIND", "SILENT"], shaper_rows)]
    return "\n".join(lines)


def homenets_text(homenets: list[dict[str, Any]]) -> str:
    if not homenets:
        return "no homenets"
    rows = []
    for homenet in homenets:
        states = homenet.get("path_states")
        paths = state_counts(Counter(states.values())) if isinstance(states, dict) else \
            f"{len(homenet.get('live_paths', []))} live"
        rows.append((homenet.get("name"),
                     with_state(homenet.get("active_egress"), homenet.get("active_egress_state")),
                     with_state(homenet.get("active_ingress"), homenet.get("active_ingress_state")), paths))
    return table(["HOMENET", "EGRESS (default class)", "INGRESS (default class)", "PATHS"], rows)


def homenet_text(homenet: dict[str, Any]) -> str:
    head = f"{homenet.get('name')}"
    if "id" in homenet:
        head += f"  (id {homenet['id']})"
    lines = [head, f"prefixes: {', '.join(map(str, homenet.get('prefixes', []))) or NONE}"]
    if homenet.get("edges"):
        lines.append(f"edges: {' > '.join(homenet['edges'])}   announced at: "
                     f"{', '.join(homenet.get('announced_at', [])) or 'nowhere'}")
    paths = homenet.get("paths", [])
    rows = [(p.get("path"), path_state(p), (p.get("ends") or {}).get("mspmb"), (p.get("ends") or {}).get("edge"),
             p.get("rtt_ms"), p.get("jitter_ms"), p.get("loss_pct"), p.get("probes"), p.get("tx_packets"),
             p.get("rx_packets")) for p in paths]
    lines += ["", table(["PATH", "STATE", "MSPMB END", "EDGE END", "RTT ms", "JITTER ms", "LOSS %", "PROBES",
                         "TX PKTS", "RX PKTS"], rows)]
    classes = [(c.get("name"), with_state(c.get("egress"), c.get("egress_state")), c.get("egress_mode"),
                with_state(c.get("ingress"), c.get("ingress_state")), c.get("ingress_mode"))
               for c in homenet.get("classes", [])]
    lines += ["", table(["CLASS", "EGRESS", "MODE", "INGRESS", "MODE"], classes)]
    if any(p.get("state") == "unknown" for p in paths):
        lines += ["", "unknown: a tunnel end has not reported (its box is not connected, or not yet)"]
    return "\n".join(lines)
