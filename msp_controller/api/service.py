"""The REST API's view of the controller: snapshots of the core as JSON; changes go through
the store first, then the core, then the switches.

Every change is validated before anything is touched (the error names the field; nothing
changes), written to the store (durable) before the core applies it, and answered once the
switches have confirmed it (barrier replies) or said to be pending for those not connected.
"""
from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any

from msp_controller.api.edge_shapers_seen import EdgeShapersSeen
from msp_controller.api.metrics import ControllerMetrics
from msp_controller.api.rest import NotFound
from msp_controller.core import Effects, MspCore
from msp_controller.core.switch_report import switch_page, switch_report
from msp_controller.core.view import READER_PAUSE_EVERY, homenet_view, path_state_counts, summary_view
from msp_controller.dataplane.shaping import edge_base_shaping, edge_homenet_shaping, edge_homenet_unshaping
from msp_controller.model.config import parse_homenet
from msp_controller.model.errors import FieldError
from msp_controller.model.policy import parse_policy, policy_to_json
from msp_controller.store import MemoryStore, Store

# Homenets in one page of a full answer to an edge's shaper: about 0.5 MB of JSON (4.6 KB
# each with three classes), where 10,000 at once would be 46 MB. An answer holds the
# controller's event loop (port status, BFD, probes wait) while it is computed and encoded:
# pages of 500 held it about 70 ms at 10,000 homenets; pages of 100 yielding every 25
# homenets, 23 ms at most (bench/api_hold.py).
EDGE_SHAPING_PAGE = 100
EDGE_SHAPING_PAUSE_EVERY = 25
SWITCH_PAGE = 1000  # switches in one page of GET /switches

# (effects) -> (dpids that did not confirm in time); also applies the BGP changes
Confirm = Callable[[Effects], list[int]]


class CoreService:
    def __init__(self, core: MspCore, confirm: Confirm, clock: Callable[[], float] = time.monotonic,
                 bgp_sessions: Callable[[], dict[str, str]] = dict, store: Store | None = None,
                 metrics: ControllerMetrics | None = None, pause: Callable[[], None] = lambda: None) -> None:
        """metrics: where /metrics reads from (default: new ones, per $MSP_METRICS_PER_HOMENET);
        they are made to watch this core. pause: lets the controller's other work run during a
        long answer (in Ryu: lambda: hub.sleep(0))."""
        self.core = core
        self.confirm = confirm
        self.pause = pause
        self.bgp_sessions = bgp_sessions
        self.clock = clock
        self.store: Store = store if store is not None else MemoryStore()
        self.started = clock()
        self.shapers_seen = EdgeShapersSeen(clock)
        self.metrics = metrics if metrics is not None else ControllerMetrics.from_environment()
        self.metrics.watch(core, bgp_sessions, clock, edge_shapers=self.edge_shapers)

    def _exists(self, name: str) -> None:
        if name not in self.core.homenets:
            raise NotFound(f"no homenet named {name!r}")

    def _applied(self, effects: Effects, started: float, result: dict[str, Any]) -> dict[str, Any]:
        unconfirmed = self.confirm(effects)
        if unconfirmed:
            result.update(applied=False, pending=[f"{dpid:016x}" for dpid in unconfirmed])
        else:
            result.update(applied=True, applied_ms=round((self.clock() - started) * 1000, 2))
        return result

    # --- reads: snapshots ----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        switches = switch_report(self.core, self.pause)
        sessions = self.bgp_sessions()
        shapers = self.edge_shapers()
        degraded = switches.not_reconciled or any(state != "established" for state in sessions.values()) or \
            any(shaper["silent"] for shaper in shapers.values())
        return {"status": "degraded" if degraded else "ok", "switches": switches.listed,
                "switches_listed": "all" if switches.all_listed else "not_reconciled",
                "switch_counts": switches.counts,
                "bgp": sessions, "edge_shapers": shapers, "uptime_s": round(self.clock() - self.started, 3),
                "homenets": len(self.core.homenets), "paths": path_state_counts(self.core, self.pause),
                "probes_saturated": self.core.prober.saturated}

    def list_switches(self, after: str | None, limit: str | None) -> dict[str, Any]:
        """Every configured switch by datapath id (16 hex digits), `limit` a page (default and
        most SWITCH_PAGE) after `after`; `next`: the last id of this page, when there are more."""
        if after is not None and not (len(after) == 16 and all(c in "0123456789abcdef" for c in after)):
            raise FieldError("after", f"must be a datapath id as listed (16 hex digits), not {after[:40]!r}")
        if limit is not None and not (limit.isdigit() and 1 <= int(limit) <= SWITCH_PAGE):
            raise FieldError("limit", f"must be a whole number from 1 to {SWITCH_PAGE}, not {limit[:40]!r}")
        page, more = switch_page(self.core, None if after is None else int(after, 16),
                                 SWITCH_PAGE if limit is None else int(limit))
        return {"switches": page, **({"next": more} if more else {})}

    def edge_shapers(self) -> dict[str, dict[str, Any]]:
        """Each edge's shaper as its requests showed it (api/edge_shapers_seen.py)."""
        return self.shapers_seen.view((edge.name for edge in self.core.config.edges), self.store.current_version())

    def list_homenets(self) -> list[dict[str, Any]]:
        found = []
        for count, name in enumerate(list(self.core.homenets), start=1):
            if count % READER_PAUSE_EVERY == 0:
                self.pause()
            if name in self.core.homenets:  # not deleted meanwhile
                found.append(summary_view(self.core, name))
        return found

    def get_homenet(self, name: str) -> dict[str, Any]:
        self._exists(name)
        return homenet_view(self.core, name, self.clock())

    def edge_shaping(self, edge_name: str, since_text: str | None, after: str | None = None,
                     page: int = EDGE_SHAPING_PAGE) -> dict[str, Any]:
        """An edge's downstream tc commands (dataplane/shaping.py), for its shaper: all of them
        when `since` is absent or ahead of the store (a store replaced), in pages of `page`
        homenets by name (`after`: the last name of the page before; `next`: there is more),
        else only the homenets changed since that version, each as the commands removing its
        old shaping and those applying the new, or null when it is no longer served here."""
        try:
            edge = self.core.config.edge(edge_name)
        except KeyError:
            raise NotFound(f"no edge named {edge_name!r}") from None
        since = None
        if since_text is not None:
            if not since_text.isdigit() or len(since_text) > 18:
                raise FieldError("since", f"must be a version (a whole number >= 0), not {since_text[:40]!r}")
            since = int(since_text)
        self.shapers_seen.asked(edge.name, since)
        current = self.store.current_version()
        more = False
        if since is None or since > current:
            full = True
            names = sorted(n for n, h in self.core.homenets.items()
                           if edge.name in h.spec.edges and (after is None or n > after))
            names, more = names[:page], len(names) > page
        else:
            current, names = self.store.changed_since(since)
            full = False
        homenets: dict[str, Any] = {}
        for count, name in enumerate(names, start=1):
            if count % EDGE_SHAPING_PAUSE_EVERY == 0:
                self.pause()
            homenet = self.core.homenets.get(name)
            if homenet is None or edge.name not in homenet.spec.edges:
                homenets[name] = None
                continue
            try:
                # The shaper keeps "remove" for when the homenet changes or goes (null: its
                # commands are gone with it); "id" tells it whose handles a homenet's are.
                homenets[name] = {"id": homenet.spec.id, "remove": edge_homenet_unshaping(edge, homenet.spec),
                                  "apply": edge_homenet_shaping(edge, homenet.spec, homenet.policy)}
            except ValueError as err:  # an id beyond what one port can shape: left unshaped, said why
                homenets[name] = {"id": homenet.spec.id, "remove": [], "apply": [], "unshaped": str(err)}
        result: dict[str, Any] = {"version": current, "full": full, "homenets": homenets}
        if full and after is None:
            result["base"] = edge_base_shaping(edge.underlay_port)
        if more:
            result["next"] = names[-1]
        return result

    def get_policy(self, name: str) -> dict[str, Any]:
        self._exists(name)
        return policy_to_json(self.core.homenets[name].policy)

    # --- changes: validate, store, apply, confirm ------------------------------------------

    def put_policy(self, name: str, body: Any) -> dict[str, Any]:
        self._exists(name)
        started = self.clock()
        policy = parse_policy(body, self.core.homenets[name].spec)  # FieldError: 400, nothing changed
        self.store.put_policy(name, policy_to_json(policy))
        effects = self.core.apply_policy(name, policy, started)
        return self._applied(effects, started, {"policy": policy_to_json(policy)})

    def create_homenet(self, body: dict[str, Any]) -> dict[str, Any]:
        started = self.clock()
        homenet = parse_homenet(body, self.core.config)
        self.core.check_homenet(homenet)  # clashes: FieldError naming the field
        self.store.put_homenet(homenet.name, body, None)
        effects = self.core.add_homenet(homenet, started)
        return self._applied(effects, started, {"homenet": homenet_view(self.core, homenet.name, started)})

    def replace_homenet(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._exists(name)
        if body.get("name", name) != name:
            raise FieldError("homenet.name", f"must be {name!r}, the name in the path")
        body = {**body, "name": name}
        started = self.clock()
        homenet = parse_homenet(body, self.core.config)
        self.core.check_homenet(homenet, replacing=name)
        current = policy_to_json(self.core.homenets[name].policy)
        try:
            policy = parse_policy(current, homenet)
        except ValueError as err:
            raise FieldError("homenet", f"its policy would no longer hold ({err}); change the policy first") from None
        self.store.put_homenet(name, body, current)
        effects = self.core.replace_homenet(homenet, started, policy)
        return self._applied(effects, started, {"homenet": homenet_view(self.core, name, started)})

    def set_uplink_address(self, name: str, uplink: str, address: Any) -> dict[str, Any]:
        """The box's ISP gave it a new address (its agent reports the lease), or none (None)."""
        self._exists(name)
        spec = self.core.homenets[name].spec
        if uplink not in {u.name for u in spec.uplinks}:
            raise NotFound(f"homenet {name!r} has no uplink {uplink!r}")
        if address is None:
            parsed = None
        else:
            try:
                if not isinstance(address, str):
                    raise TypeError(address)
                parsed = ipaddress.IPv4Address(address)
            except (ValueError, TypeError):
                raise FieldError("address", f"{address!r} is not an IPv4 address") from None
            # Any unicast address an ISP may lease (public, private, carrier-grade NAT).
            if parsed.is_multicast or parsed.is_unspecified or parsed.is_loopback or parsed.is_link_local \
                    or parsed.is_reserved:
                raise FieldError("address", f"{parsed} cannot be a box's address at an ISP")
        started = self.clock()
        self.store.put_uplink_address(name, uplink, None if parsed is None else str(parsed))
        effects = self.core.set_uplink_address(name, uplink, parsed, started)
        return self._applied(effects, started, {"homenet": name, "uplink": uplink,
                                                "address": None if parsed is None else str(parsed)})

    def delete_homenet(self, name: str) -> dict[str, Any]:
        self._exists(name)
        started = self.clock()
        self.store.delete_homenet(name)
        effects = self.core.remove_homenet(name, started)
        return self._applied(effects, started, {"deleted": name})

