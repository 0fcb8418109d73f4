"""What readers (REST, CLI) see of a homenet: plain data built from the core's state,
never the state itself."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msp_controller.core.homenet import HomenetState
from msp_controller.decide.choice import EGRESS, INGRESS
from msp_controller.model.config import edge_tunnel_port, mspmb_tunnel_port

if TYPE_CHECKING:
    from msp_controller.core.msp import MspCore


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def summary_view(state: HomenetState) -> dict[str, Any]:
    egress, ingress = state.choices[EGRESS][0], state.choices[INGRESS][0]
    return {"name": state.name, "active_egress": egress.describe_active(),
            "active_ingress": ingress.describe_active(),
            "live_paths": sorted(str(p) for p in state.plan.live)}


def homenet_view(core: MspCore, name: str, now: float) -> dict[str, Any]:
    from msp_controller.core.msp import PortCounters

    state = core.homenets[name]
    homenet = state.spec
    home_switch = core.switches.get(homenet.dpid)
    paths = []
    for path in state.plan.paths:
        stats = core.path_stats(path, now)
        edge = core.registry.edge(path.edge)
        uplink = homenet.uplink(path.uplink)
        home_port = home_switch.ports.get(mspmb_tunnel_port(edge, uplink)) if home_switch else None
        counters = core.counters.get((homenet.dpid, home_port.number), PortCounters()) \
            if home_port else PortCounters()
        paths.append({
            "path": str(path), "isp": path.uplink, "edge": path.edge, "live": path in state.plan.live,
            "edge_port": edge_tunnel_port(homenet, uplink), "mspmb_port": mspmb_tunnel_port(edge, uplink),
            "rtt_ms": _round(stats.rtt_ms), "jitter_ms": _round(stats.jitter_ms),
            "loss_pct": _round(stats.loss_pct), "probes": stats.samples,
            "tx_packets": counters.tx_packets, "tx_bytes": counters.tx_bytes,
            "rx_packets": counters.rx_packets, "rx_bytes": counters.rx_bytes,
        })
    classes = [{"name": egress.name, "egress": egress.describe_active(), "ingress": ingress.describe_active(),
                "egress_mode": egress.mode, "ingress_mode": ingress.mode}
               for egress, ingress in zip(state.choices[EGRESS], state.choices[INGRESS], strict=True)]
    return {
        "name": name, "id": homenet.id, "edge": homenet.edge, "edges": list(homenet.edges),
        "prefixes": [str(p) for p in homenet.prefixes],
        "uplinks": [{"name": u.name, "port": u.port} for u in homenet.uplinks],
        "paths": paths, "classes": classes,
        "announced_at": core.announced_at(name),
    }
