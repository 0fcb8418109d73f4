"""What readers (REST, CLI, metrics) see of a homenet: plain data built from the core's
state, never the state itself."""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from msp_controller.core.path_status import PATH_STATES, PathStatus, active_state, homenet_path_status
from msp_controller.decide.choice import EGRESS, INGRESS, DirectionChoice
from msp_controller.decide.paths import TunnelPath
from msp_controller.model.config import edge_tunnel_port, mspmb_tunnel_port

if TYPE_CHECKING:
    from msp_controller.core.msp import MspCore


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _active(choice: DirectionChoice, statuses: dict[TunnelPath, PathStatus]) -> tuple[str | None, str | None]:
    """The path(s) a class uses in one direction, and what is known of them."""
    return choice.describe_active(), active_state(statuses, choice.active)


def summary_view(core: MspCore, name: str) -> dict[str, Any]:
    state = core.homenets[name]
    statuses = homenet_path_status(core, name)
    egress, egress_state = _active(state.choices[EGRESS][0], statuses)
    ingress, ingress_state = _active(state.choices[INGRESS][0], statuses)
    return {"name": name, "active_egress": egress, "active_ingress": ingress,
            "active_egress_state": egress_state, "active_ingress_state": ingress_state,
            "live_paths": sorted(str(p) for p, status in statuses.items() if status.live),
            "path_states": {str(p): status.state for p, status in statuses.items()}}


READER_PAUSE_EVERY = 200  # homenets a reader walks between two pauses (its caller's event loop runs)


def path_state_counts(core: MspCore, pause: Callable[[], None] = lambda: None) -> dict[str, int]:
    """How many paths of all homenets are up, down and unknown (pause: lets the controller's
    other work run now and then, as at 10,000 homenets this takes about 0.1 s)."""
    counts: Counter[str] = Counter()
    for count, name in enumerate(list(core.homenets), start=1):
        if count % READER_PAUSE_EVERY == 0:
            pause()
        if name in core.homenets:  # not deleted meanwhile
            counts.update(status.state for status in homenet_path_status(core, name).values())
    return {state: counts[state] for state in PATH_STATES}


def homenet_view(core: MspCore, name: str, now: float) -> dict[str, Any]:
    from msp_controller.core.msp import PortCounters

    state = core.homenets[name]
    homenet = state.spec
    home_switch = core.switches.get(homenet.dpid)
    statuses = homenet_path_status(core, name)
    paths = []
    for path, status in statuses.items():
        stats = core.path_stats(path, now)
        edge = core.registry.edge(path.edge)
        uplink = homenet.uplink(path.uplink)
        home_port = home_switch.ports.get(mspmb_tunnel_port(edge, uplink)) if home_switch else None
        counters = core.counters.get((homenet.dpid, home_port.number), PortCounters()) \
            if home_port else PortCounters()
        paths.append({
            "path": str(path), "isp": path.uplink, "edge": path.edge,
            "state": status.state, "live": status.live,
            "ends": {"mspmb": status.mspmb_end, "edge": status.edge_end},
            "edge_port": edge_tunnel_port(uplink), "mspmb_port": mspmb_tunnel_port(edge, uplink),
            "rtt_ms": _round(stats.rtt_ms), "jitter_ms": _round(stats.jitter_ms),
            "loss_pct": _round(stats.loss_pct), "probes": stats.samples,
            "tx_packets": counters.tx_packets, "tx_bytes": counters.tx_bytes,
            "rx_packets": counters.rx_packets, "rx_bytes": counters.rx_bytes,
        })
    classes = []
    for egress, ingress in zip(state.choices[EGRESS], state.choices[INGRESS], strict=True):
        egress_path, egress_state = _active(egress, statuses)
        ingress_path, ingress_state = _active(ingress, statuses)
        classes.append({"name": egress.name, "egress": egress_path, "ingress": ingress_path,
                        "egress_state": egress_state, "ingress_state": ingress_state,
                        "egress_mode": egress.mode, "ingress_mode": ingress.mode})
    return {
        "name": name, "id": homenet.id, "edge": homenet.edge, "edges": list(homenet.edges),
        "prefixes": [str(p) for p in homenet.prefixes],
        "uplinks": [{"name": u.name, "port": u.port} for u in homenet.uplinks],
        "paths": paths, "classes": classes,
        "announced_at": core.announced_at(name),
    }
