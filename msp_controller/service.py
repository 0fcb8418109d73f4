"""The REST API's view of the controller: MspCore's state as JSON, policy changes applied.

`confirm` sends messages and waits until each switch has acknowledged them (a barrier
reply), so a PUT answers only once its policy is in the data plane.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .config import edge_tunnel_port, mspmb_tunnel_port
from .core import Messages, MspCore, PortCounters
from .policy import policy_to_json
from .rest import NotFound

# (messages) -> (dpids that did not confirm in time)
Confirm = Callable[[Messages], list[int]]


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


class CoreService:
    def __init__(self, core: MspCore, confirm: Confirm, clock: Callable[[], float] = time.monotonic,
                 bgp_sessions: Callable[[], dict[str, str]] = dict) -> None:
        self.core = core
        self.confirm = confirm
        self.bgp_sessions = bgp_sessions
        self.clock = clock
        self.started = clock()

    def _homenet(self, name: str) -> Any:
        try:
            return self.core.config.homenet(name)
        except KeyError:
            raise NotFound(f"no homenet named {name!r}") from None

    def health(self) -> dict[str, Any]:
        switches = self.core.switch_status()
        down = [dpid for dpid, switch in switches.items() if not switch["reconciled"]]
        sessions = self.bgp_sessions()
        degraded = down or any(state != "established" for state in sessions.values())
        return {"status": "degraded" if degraded else "ok", "switches": switches,
                "bgp": sessions, "uptime_s": round(self.clock() - self.started, 3)}

    def list_homenets(self) -> list[dict[str, Any]]:
        return [self._summary(h.name) for h in self.core.config.homenets]

    def _summary(self, name: str) -> dict[str, Any]:
        choices = self.core.choices[name]
        default_egress, default_ingress = choices["egress"][0], choices["ingress"][0]
        return {"name": name, "active_egress": default_egress.describe_active(),
                "active_ingress": default_ingress.describe_active(),
                "live_paths": sorted(str(p) for p in self.core.plans[name].live)}

    def get_homenet(self, name: str) -> dict[str, Any]:
        homenet = self._homenet(name)
        now = self.clock()
        plan = self.core.plans[name]
        paths = []
        for path in plan.paths:
            stats = self.core.path_stats(path, now)
            edge = self.core.config.edge(path.edge)
            uplink = homenet.uplink(path.uplink)
            home_port = self.core.ports.get(homenet.dpid, {}).get(mspmb_tunnel_port(edge, uplink))
            counters = self.core.counters.get((homenet.dpid, home_port.number), PortCounters()) \
                if home_port else PortCounters()
            paths.append({
                "path": str(path), "isp": path.uplink, "edge": path.edge, "live": path in plan.live,
                "edge_port": edge_tunnel_port(homenet, uplink), "mspmb_port": mspmb_tunnel_port(edge, uplink),
                "rtt_ms": _round(stats.rtt_ms), "jitter_ms": _round(stats.jitter_ms),
                "loss_pct": _round(stats.loss_pct), "probes": stats.samples,
                "tx_packets": counters.tx_packets, "tx_bytes": counters.tx_bytes,
                "rx_packets": counters.rx_packets, "rx_bytes": counters.rx_bytes,
            })
        choices = self.core.choices[name]
        classes = [{"name": egress.name, "egress": egress.describe_active(), "ingress": ingress.describe_active(),
                    "egress_mode": egress.mode, "ingress_mode": ingress.mode}
                   for egress, ingress in zip(choices["egress"], choices["ingress"], strict=True)]
        return {
            "name": name, "id": homenet.id, "edge": homenet.edge, "edges": list(homenet.edges),
            "prefixes": [str(p) for p in homenet.prefixes],
            "uplinks": [{"name": u.name, "port": u.port} for u in homenet.uplinks],
            "paths": paths, "classes": classes,
            "announced_at": self.core.announced_at(name),
        }

    def get_policy(self, name: str) -> dict[str, Any]:
        self._homenet(name)
        return policy_to_json(self.core.policies[name])

    def put_policy(self, name: str, body: Any) -> dict[str, Any]:
        self._homenet(name)
        started = self.clock()
        policy, messages = self.core.set_policy(name, body, started)  # PolicyError: 400, nothing changed
        unconfirmed = self.confirm(messages)
        result: dict[str, Any] = {"policy": policy_to_json(policy)}
        if unconfirmed:
            result.update(applied=False, pending=[f"{dpid:016x}" for dpid in unconfirmed])
        else:
            result.update(applied=True, applied_ms=round((self.clock() - started) * 1000, 2))
        return result
