"""The Ryu shell: translate OpenFlow events for MspCore and carry out the Effects it returns
(send the messages, tell the BGP speaker the changed prefixes).

Run with:  MSP_CONFIG=etc/reference.toml ryu-manager --ofp-listen-host <management address>
           --wsapi-host 127.0.0.1 msp_controller.app
State (homenets and policies changed by REST) is kept in the SQLite file named by MSP_STATE,
else by msp.state_path in the config.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any

from ryu import cfg
from ryu.app.wsgi import WSGIApplication
from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from ryu.lib import hub
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from msp_controller.api import https
from msp_controller.api.auth import Authorizer
from msp_controller.api.metrics import ControllerMetrics
from msp_controller.api.rest import mount
from msp_controller.api.service import CoreService
from msp_controller.bgp.speaker import BgpAnnouncer, Neighbor
from msp_controller.bgp.speaker import Route as BgpRoute
from msp_controller.core import BgpChanges, Effects, PortCounters, PortState, load_core
from msp_controller.core.heap import Refreezer, freeze_loaded_state
from msp_controller.dashboard import web as dashboard
from msp_controller.dataplane import ofmsg
from msp_controller.dataplane.meters import meter_signature
from msp_controller.dataplane.reconcile import ReportedFlow
from msp_controller.identity import ryu_tls
from msp_controller.identity.binding import admit_switch, owner_of, tls_mode
from msp_controller.model.config import MspConfig, load_config
from msp_controller.model.errors import FieldError
from msp_controller.store import SqliteStore

LOG = logging.getLogger("msp.app")
TICK_S = 1.0
PROBE_INTERVAL_S = 0.05  # each tunnel path is probed this often (100 probes per 5 s window)
CONFIRM_TIMEOUT_S = 2.0  # how long a REST change waits for the switches' barrier replies


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def port_state(port: Any) -> PortState:
    live = bool(port.state & ofp.OFPPS_LIVE) and not port.state & ofp.OFPPS_LINK_DOWN \
        and not port.config & ofp.OFPPC_PORT_DOWN
    return PortState(port.port_no, live)


def port_name(port: Any) -> str:
    name = port.name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


class MspApp(app_manager.RyuApp):
    OFP_VERSIONS = [ofp.OFP_VERSION]
    _CONTEXTS = {"wsgi": WSGIApplication}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        path = os.environ.get("MSP_CONFIG", "")
        if not path:
            sys.exit("msp: set MSP_CONFIG to the controller's config file (see etc/reference.toml)")
        try:
            config = load_config(path)
        except FieldError as err:
            sys.exit(f"msp: bad config: {err}")
        state_path = os.environ.get("MSP_STATE") or config.state_path
        try:
            self.store = SqliteStore(state_path)
        except (OSError, ValueError) as err:  # sqlite3 errors are OSError/DatabaseError
            sys.exit(f"msp: cannot open the state store {state_path}: {err}")
        self.core = load_core(config, self.store.load(), time.monotonic())
        try:
            self._tls = tls_mode(cfg.CONF.ctl_privkey, cfg.CONF.ctl_cert, cfg.CONF.ca_certs)
        except ValueError as err:
            sys.exit(f"msp: {err}")
        if self._tls:
            ryu_tls.install()  # Ryu 4.34's own TLS listener admits one connection only
        else:
            LOG.warning("msp: OpenFlow is plain TCP: switch identities are not authenticated "
                        "(see docs/operations.md, Enrolling a box)")
        self.datapaths: dict[int, Any] = {}
        self._port_replies: dict[int, dict[str, PortState]] = {}
        self._barriers: dict[tuple[int, int], Any] = {}
        self.bgp = self._bgp_announcer(config)
        self._bgp_ready = False
        self._bgp_pending: BgpChanges = {}
        auth = Authorizer(config.api_tokens)
        wsapi_host = str(getattr(cfg.CONF, "wsapi_host", "0.0.0.0"))
        if auth.open and not _is_loopback(wsapi_host):
            sys.exit(f"msp: the REST API would listen on {wsapi_host} with no token: configure [api] tokens "
                     "(see `mspctl token`) or give --wsapi-host 127.0.0.1")
        if config.api_tls is not None:
            try:
                https.install(config.api_tls)  # ryu-manager starts its WSGI service after the apps
            except (OSError, ssl.SSLError) as err:
                sys.exit(f"msp: [api] tls_cert/tls_key: {err}")
            LOG.info("msp: REST API over HTTPS (%s)", config.api_tls.cert)
        try:
            # Scrapes yield to the event loop now and then: 10,000 homenets take seconds.
            self.metrics = ControllerMetrics.from_environment(pause=lambda: hub.sleep(0))
        except ValueError as err:
            sys.exit(f"msp: {err}")
        mount(kwargs["wsgi"], CoreService(self.core, self._send_and_confirm, bgp_sessions=self._bgp_sessions,
                                          store=self.store, metrics=self.metrics, pause=lambda: hub.sleep(0)), auth)
        self.dashboard = dashboard.Dashboard.create(self.core, auth)
        dashboard.mount(kwargs["wsgi"], self.dashboard)
        LOG.info("msp: %d edges, %d homenets (%s; state in %s)", len(config.edges), len(self.core.homenets),
                 path, state_path)
        LOG.info("msp: %d objects of the loaded state kept out of the garbage collector's walks",
                 freeze_loaded_state())
        self._refreezer = Refreezer(len(self.core.homenets))
        self._ticker = hub.spawn(self._every, TICK_S, "periodic tick", self._tick)
        self._prober = hub.spawn(self._every, PROBE_INTERVAL_S, "probe tick", self._probe)
        if self.bgp is not None:
            hub.spawn(self._start_bgp)

    @staticmethod
    def _bgp_announcer(config: MspConfig) -> BgpAnnouncer | None:
        neighbors = [Neighbor(str(n.address), n.asn) for edge in config.edges for n in edge.bgp_neighbors]
        if config.bgp is None or not neighbors:
            return None
        return BgpAnnouncer(config.bgp.asn, str(config.bgp.router_id), neighbors,
                            listen_port=config.bgp.listen_port,
                            # Sessions leave from the management address only, never by a default route.
                            source_address=str(config.bgp.source_address or config.controller_address),
                            on_session_change=lambda address, state: LOG.info("msp: BGP %s %s", address, state))

    def _bgp_sessions(self) -> dict[str, str]:
        return self.bgp.sessions() if self.bgp is not None else {}

    def _start_bgp(self) -> None:
        """Start the speaker, then announce everything the core wants now; changes that come
        meanwhile are kept and applied after (they are idempotent)."""
        assert self.bgp is not None
        self.bgp.start()
        desired = self.core.bgp_desired()
        self.bgp.apply({neighbor: {prefix: BgpRoute(r.next_hop, r.prepend) for prefix, r in routes.items()}
                        for neighbor, routes in desired.items()})
        self._bgp_ready = True
        self._apply_bgp({})

    def _apply_bgp(self, changes: BgpChanges) -> None:
        """Tell the speaker the prefixes an event changed (only those)."""
        if self.bgp is None:
            return
        self._bgp_pending.update(changes)
        if not self._bgp_ready or not self._bgp_pending:
            return
        pending, self._bgp_pending = self._bgp_pending, {}
        LOG.info("msp: BGP changes for %d prefixes", len(pending))
        self.bgp.apply_changes({prefix: {n: BgpRoute(r.next_hop, r.prepend) for n, r in routes.items()}
                                for prefix, routes in pending.items()})

    def stop(self) -> None:
        if self.bgp is not None:
            # Graceful restart: the switches keep forwarding, so the upstreams keep our
            # routes (as stale) until a new controller refreshes them.
            self.bgp.shutdown(withdraw=False)
        super().stop()

    # --- sending ------------------------------------------------------------------------

    def _send(self, effects: Effects) -> None:
        if isinstance(effects, Effects) and effects.bgp:
            self._apply_bgp(effects.bgp)
        if isinstance(effects, Effects) and effects.leases:
            self._store_leases(effects)
        for dpid, batch in effects.items():
            datapath = self.datapaths.get(dpid)
            if datapath is None:
                continue
            for message in batch:
                message.datapath = datapath
                datapath.send_msg(message)
        if isinstance(effects, Effects) and effects.touched:
            self._publish(lambda: self.dashboard.publisher.touched(effects.touched))

    def _publish(self, work: Callable[[], None]) -> None:
        """Tell the dashboard; its failure is logged and never undoes what was sent."""
        try:
            work()
        except Exception:
            LOG.exception("msp: publishing to the dashboard failed")

    def _store_leases(self, effects: Effects) -> None:
        try:
            self.store.put_leases(effects.leases)
        except Exception:  # the answers still go out: a lost write costs a lease's memory at restart
            LOG.exception("msp: could not store %d DHCP bindings", len(effects.leases))

    def _admitted(self, datapath: Any) -> bool:
        """False for a refused or replaced connection: nothing it says changes anything."""
        return self.datapaths.get(datapath.id) is datapath

    def _run(self, datapath: Any, what: str, call: Callable[[], Effects]) -> None:
        """Run a core call; on a bug, say so loudly and drop the switch's connection.

        The switch keeps forwarding (fail mode secure) and, when it reconnects, is
        reconciled from what it really holds rather than left half-programmed.
        """
        if not self._admitted(datapath):
            return
        try:
            self._send(call())
        except Exception:
            LOG.exception("msp: handling %s for %016x failed; dropping its connection", what, datapath.id)
            datapath.close()

    def _send_and_confirm(self, messages: Effects) -> list[int]:
        """Send, then wait for every switch to confirm with a barrier reply; return the laggards."""
        self._send(messages)
        waiting = {}
        for dpid in messages:
            datapath = self.datapaths.get(dpid)
            if datapath is None:
                continue
            barrier = parser.OFPBarrierRequest(datapath)
            datapath.set_xid(barrier)
            waiting[dpid] = self._barriers[(dpid, barrier.xid)] = hub.Event()
            datapath.send_msg(barrier)
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        unconfirmed = [dpid for dpid in messages if dpid not in waiting]
        for dpid, event in waiting.items():
            if not event.wait(timeout=max(0.0, deadline - time.monotonic())):
                unconfirmed.append(dpid)
        for key in [k for k, e in self._barriers.items() if e in waiting.values()]:
            del self._barriers[key]
        return unconfirmed

    def _every(self, interval: float, what: str, work: Callable[[], None]) -> None:
        """Run work every interval seconds for ever; a failure is logged, not fatal."""
        while True:
            hub.sleep(interval)
            try:
                work()
            except Exception:
                LOG.exception("msp: %s failed", what)

    def _tick(self) -> None:
        self._send(self.core.tick(time.monotonic()))
        frozen = self._refreezer.after_growth(len(self.core.homenets))
        if frozen is not None:
            LOG.info("msp: %d homenets now: %d objects kept out of the garbage collector's walks",
                     len(self.core.homenets), frozen)
        self._publish(self.dashboard.publisher.tick)
        for dpid in self.core.counted_switches():
            datapath = self.datapaths.get(dpid)
            if datapath is not None:
                datapath.send_msg(parser.OFPPortStatsRequest(datapath, 0, ofp.OFPP_ANY))

    def _probe(self) -> None:
        self._send(self.core.probe_tick(time.monotonic()))

    # --- OpenFlow events ---------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _features(self, ev: Any) -> None:
        datapath = ev.msg.datapath
        if self._tls:
            admission = admit_switch(datapath.socket, ev.msg.datapath_id,
                                     lambda dpid: owner_of(self.core.role(dpid)))
            if not admission.accepted:
                LOG.warning("msp: refused a switch claiming datapath id %016x with certificate [%s]: %s",
                            ev.msg.datapath_id, admission.subject, admission.reason)
                datapath.close()
                return
        self.datapaths[datapath.id] = datapath
        self._port_replies[datapath.id] = {}
        request = ofmsg.port_desc_request()
        request.datapath = datapath
        datapath.send_msg(request)

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def _port_desc(self, ev: Any) -> None:
        datapath = ev.msg.datapath
        ports = self._port_replies.setdefault(datapath.id, {})
        for port in ev.msg.body:
            if port.port_no <= ofp.OFPP_MAX:
                ports[port_name(port)] = port_state(port)
        if not ev.msg.flags & ofp.OFPMPF_REPLY_MORE:
            found = self._port_replies.pop(datapath.id)
            self._run(datapath, "port description",
                      lambda: self.core.switch_up(datapath.id, found, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats(self, ev: Any) -> None:
        datapath = ev.msg.datapath
        flows = [ReportedFlow(s.table_id, s.priority, s.cookie, s.match) for s in ev.msg.body]
        more = bool(ev.msg.flags & ofp.OFPMPF_REPLY_MORE)
        self._run(datapath, "flow stats",
                  lambda: self.core.flow_stats(datapath.id, flows, more, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    def _group_desc(self, ev: Any) -> None:
        datapath = ev.msg.datapath
        groups = {g.group_id: ofmsg.group_signature(g.type, g.buckets) for g in ev.msg.body}
        more = bool(ev.msg.flags & ofp.OFPMPF_REPLY_MORE)
        self._run(datapath, "group description",
                  lambda: self.core.group_desc(datapath.id, groups, more, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, MAIN_DISPATCHER)
    def _meter_config(self, ev: Any) -> None:
        datapath = ev.msg.datapath
        meters = {m.meter_id: meter_signature(m.flags, m.bands) for m in ev.msg.body}
        more = bool(ev.msg.flags & ofp.OFPMPF_REPLY_MORE)
        self._run(datapath, "meter config",
                  lambda: self.core.meter_config(datapath.id, meters, more, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev: Any) -> None:
        msg = ev.msg
        port = None if msg.reason == ofp.OFPPR_DELETE else port_state(msg.desc)
        name = port_name(msg.desc)
        self._run(msg.datapath, "port status",
                  lambda: self.core.port_status(msg.datapath.id, name, port, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev: Any) -> None:
        msg = ev.msg
        self.metrics.packet_in(msg.reason)
        in_port = msg.match.get("in_port", 0)
        tunnel_id = msg.match.get("tunnel_id")  # which homenet, on an edge's shared tunnel port
        self._run(msg.datapath, "packet-in",
                  lambda: self.core.packet_in(msg.datapath.id, in_port, msg.table_id, bytes(msg.data),
                                              time.monotonic(), tunnel_id=tunnel_id))

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier_reply(self, ev: Any) -> None:
        event = self._barriers.get((ev.msg.datapath.id, ev.msg.xid))
        if event is not None:
            event.set()

    @set_ev_cls(ofp_event.EventOFPPortStatsReply, MAIN_DISPATCHER)
    def _port_stats(self, ev: Any) -> None:
        if not self._admitted(ev.msg.datapath):
            return
        self.core.port_counters(ev.msg.datapath.id, {
            s.port_no: PortCounters(s.tx_packets, s.tx_bytes, s.rx_packets, s.rx_bytes) for s in ev.msg.body})

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def _flow_removed(self, ev: Any) -> None:
        if not self._admitted(ev.msg.datapath):
            return
        self.core.flow_removed(ev.msg.datapath.id, ev.msg.cookie)

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        LOG.error("msp: switch %016x rejected a message: type=%d code=%d data=%s",
                  msg.datapath.id, msg.type, msg.code, bytes(msg.data)[:64].hex())

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    def _state_change(self, ev: Any) -> None:
        datapath = ev.datapath
        dpid: int | None = datapath.id
        if dpid is None or self.datapaths.get(dpid) is not datapath:
            return  # a stale connection replaced by a newer one
        del self.datapaths[dpid]
        self._send(self.core.switch_down(dpid, time.monotonic()))
