"""The controller's OVSDB manager: boxes dial it (ovs-vsctl set-manager ssl:<msp>:6640),
it checks each box's certificate, and keeps the box's OVSDB in step with the config.

  MSPMB (homenet): br-home with LAN ports and tunnels + BFD to every edge over every uplink;
                   its leases (Open_vSwitch external_ids msp-lease-<bridge>) are read back.
  edge:            the homenet's tunnel ports, ending at the addresses the uplinks leased;
                   a new lease moves them at once (only that homenet's ports are diffed).

Leases live in the box's own OVSDB and tunnels in each box's: nothing is held only here;
after a restart the boxes reconnect and the state is read back.

    python -m msp_controller.box.manager --config etc/blank_box.toml --pki DIR --listen 198.19.64.10:6640
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Mapping

from msp_controller.box.desired import Lease, edge_bridge, leases_from_external_ids, mspmb_bridge
from msp_controller.box.ovsdb_ops import bridge_operations
from msp_controller.box.ovsdb_session import OvsdbSession
from msp_controller.identity.binding import certificate_dpid, subject_text
from msp_controller.model.config import Homenet, MspConfig, load_config, parse_homenet
from msp_controller.model.policy import Policy, parse_policy
from msp_controller.store.sqlite import SqliteStore

LOG = logging.getLogger("msp.box.manager")
HANDSHAKE_TIMEOUT_S = 5.0


RELOAD_INTERVAL_S = 1.0  # an unknown certificate re-reads the store at most this often
POLICY_POLL_S = 0.5  # how often the store is asked which homenets' policies changed


def owners(config: MspConfig, homenets: Mapping[str, Homenet]) -> dict[int, str]:
    """Box owner by the datapath id its certificate names (an MSPMB's br-home, an edge's br-msp)."""
    found = {h.dpid: f"homenet:{h.name}" for h in homenets.values()}
    found.update({e.dpid: f"edge:{e.name}" for e in config.edges})
    return found


def stored_homenets(config: MspConfig, state_path: str | None) -> dict[str, Homenet]:
    """The config's homenets, then those created by REST (the controller's store), less the
    deleted ones. A stored record that no longer parses is skipped with a warning."""
    homenets = {h.name: h for h in config.homenets}
    if not state_path or not os.path.exists(state_path):
        return homenets
    store = SqliteStore(state_path)
    try:
        stored = store.load()
    finally:
        store.close()
    for name in stored.deleted:
        homenets.pop(name, None)
    for name, spec in stored.homenets.items():
        try:
            homenets[name] = parse_homenet(spec, config, f"stored homenet {name}")
        except ValueError as err:
            LOG.warning("stored homenet %s skipped: %s", name, err)
    return homenets


# Told each lease change: (homenet, uplink name, leased address or None). In the controller
# this is the service's set_uplink_address (stored, and only that homenet's edge flows change).
LeaseListener = Callable[[str, str, "str | None"], None]


class Manager:
    def __init__(self, config: MspConfig, on_lease: LeaseListener | None = None,
                 edges_by_ovsdb: bool = True, state_path: str | None = None) -> None:
        """edges_by_ovsdb: also give the edges per-homenet tunnel ports ending at the leased
        addresses (edges without flow-based ports, as in topologies/blank_box.py)."""
        self.config = config
        self.on_lease = on_lease
        self.edges_by_ovsdb = edges_by_ovsdb
        self.state_path = state_path
        self.homenets = stored_homenets(config, state_path)
        self.owner_by_dpid = owners(config, self.homenets)
        self._reloaded = 0.0
        self.sessions: dict[str, OvsdbSession] = {}
        self.leases: dict[str, dict[str, Lease]] = {}  # homenet -> bridge -> lease, as last read
        self.policies: dict[str, Policy] = {}  # stored policies (others: the homenet's default)
        self.policy_version = 0
        self._store: SqliteStore | None = None
        self.lock = threading.RLock()
        self.follow_policies()

    # -- policies (the controller's store: REST changes them)

    def follow_policies(self) -> list[str]:
        """Read what changed in the store since last time: homenets (created, changed or
        deleted) and their policies; returns the names of the homenets that changed."""
        if self._store is None:  # opened once the controller has made it
            if not self.state_path or not os.path.exists(self.state_path):
                return []
            self._store = SqliteStore(self.state_path)
        self.policy_version, names = self._store.changed_since(self.policy_version)
        records = {name: self._store.homenet_record(name) for name in names}
        for name, (spec, policy_json) in records.items():
            self._take(name, spec, policy_json)
        return names

    def _take(self, name: str, spec: dict | None, policy_json: dict | None) -> None:
        """One homenet's stored record; one that does not parse leaves the previous in force."""
        with self.lock:
            if spec is not None:
                try:
                    self.homenets[name] = parse_homenet(spec, self.config, f"stored homenet {name}")
                except ValueError as err:
                    LOG.warning("stored homenet %s skipped: %s", name, err)
            homenet = self.homenets.get(name)
            if homenet is None or policy_json is None:
                self.policies.pop(name, None)
                return
            try:
                self.policies[name] = parse_policy(policy_json, homenet)
            except ValueError as err:
                LOG.warning("stored policy of %s skipped (the previous stays): %s", name, err)

    def policies_changed(self, names: list[str]) -> None:
        """Bring the connected boxes of these homenets to their policies (shaping)."""
        for name in names:
            session = self.sessions.get(f"homenet:{name}")
            homenet = self.homenets.get(name)
            if session is not None and homenet is not None:
                self._reconcile(session, mspmb_bridge(self.config, homenet, self.policies.get(name)))

    def watch_policies(self, stop: threading.Event) -> None:
        while not stop.wait(POLICY_POLL_S):
            try:
                self.policies_changed(self.follow_policies())
            except Exception:  # the store busy or being replaced: try again next time
                LOG.exception("reading the store's policy changes")

    # -- connections

    def admit(self, sock: ssl.SSLSocket, peer: str) -> OvsdbSession | None:
        cert = sock.getpeercert() or {}
        dpid = certificate_dpid(cert)
        owner = self.owner_by_dpid.get(dpid) if dpid is not None else None
        if owner is None and dpid is not None and time.monotonic() - self._reloaded > RELOAD_INTERVAL_S:
            # A homenet created by REST since we last looked: read the store again.
            self._reloaded = time.monotonic()
            with self.lock:
                self.homenets = stored_homenets(self.config, self.state_path)
                self.owner_by_dpid = owners(self.config, self.homenets)
            owner = self.owner_by_dpid.get(dpid)
        if owner is None:
            LOG.warning("refused OVSDB connection from %s: certificate %r names no box the config knows",
                        peer, subject_text(cert))
            sock.close()
            return None
        session = OvsdbSession(sock, owner, peer, self.on_change, self.on_close)
        with self.lock:
            old = self.sessions.get(owner)
            self.sessions[owner] = session
        if old is not None:  # the box reconnected (another ISP): its old connection is dead
            old.close()
        LOG.info("%s connected from %s", owner, peer)
        session.start()
        return session

    def on_close(self, session: OvsdbSession) -> None:
        with self.lock:
            if self.sessions.get(session.owner) is session:
                del self.sessions[session.owner]
        LOG.info("%s (%s) disconnected", session.owner, session.peer)

    # -- reconciliation

    def on_change(self, session: OvsdbSession) -> None:
        kind, name = session.owner.split(":", 1)
        if kind == "homenet":
            homenet = self.homenets[name]
            self._reconcile(session, mspmb_bridge(self.config, homenet, self.policies.get(name)))
            leases = leases_from_external_ids(session.replica.root_external_ids())
            with self.lock:
                before = self.leases.get(name, {})
                changed = leases != before
                self.leases[name] = leases
            if changed:
                LOG.info("homenet %s leases: %s", name,
                         {b: f"{lease.address} via {lease.gateway}" for b, lease in leases.items()})
                self._tell(homenet, before, leases)
                if self.edges_by_ovsdb:
                    for edge_name in homenet.edges:
                        self._reconcile_edge(edge_name, name, leases)
        elif session.synced.is_set() and self.edges_by_ovsdb:
            for homenet in list(self.homenets.values()):
                if name in homenet.edges and homenet.name in self.leases:
                    self._reconcile_edge(name, homenet.name, self.leases[homenet.name])

    def _tell(self, homenet: Homenet, before: Mapping[str, Lease], leases: Mapping[str, Lease]) -> None:
        """Report each uplink's new address. A lost lease is not reported: the edge keeps the
        last address until the box leases another (the same holds for OVSDB-made edge ports)."""
        if self.on_lease is None:
            return
        for uplink in homenet.uplinks:
            lease, old = leases.get(uplink.bridge), before.get(uplink.bridge)
            if lease is None or (old is not None and old.address.ip == lease.address.ip):
                continue
            try:
                self.on_lease(homenet.name, uplink.name, str(lease.address.ip))
            except Exception:
                LOG.exception("homenet %s: the controller refused uplink %s's lease", homenet.name, uplink.name)

    def _reconcile_edge(self, edge_name: str, homenet_name: str, leases: Mapping[str, Lease]) -> None:
        session = self.sessions.get(f"edge:{edge_name}")
        if session is None:
            return  # it reconciles every homenet when it connects
        spec = edge_bridge(self.config, self.config.edge(edge_name), self.homenets[homenet_name], leases)
        self._reconcile(session, spec)

    def _reconcile(self, session: OvsdbSession, spec: object) -> None:
        if not session.synced.is_set():
            return
        with session.lock:
            if session.pending:
                return  # the answer triggers another pass
            operations = bridge_operations(session.replica, spec)  # type: ignore[arg-type]
            if not operations:
                return
            try:
                session.transact(operations)
            except OSError as err:
                LOG.warning("%s: cannot send: %s", session.owner, err)


def serve(manager: Manager, address: str, port: int, pki: str, stop: threading.Event | None = None) -> None:
    """Accept TLS connections from boxes (certificate required, signed by the MSP's CA)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(f"{pki}/ca/cacert.pem")
    context.load_cert_chain(f"{pki}/controller/cert.pem", f"{pki}/controller/key.pem")
    listener = socket.create_server((address, port), reuse_port=False)
    listener.settimeout(0.5)
    LOG.info("OVSDB manager listening on ssl:%s:%d", address, port)

    def handshake(raw: socket.socket, peer: str) -> None:
        try:
            raw.settimeout(HANDSHAKE_TIMEOUT_S)
            sock = context.wrap_socket(raw, server_side=True)
            sock.settimeout(None)
        except (OSError, ssl.SSLError) as err:
            LOG.warning("refused OVSDB connection from %s: TLS: %s", peer, err)
            raw.close()
            return
        manager.admit(sock, peer)

    with listener:
        while stop is None or not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            host, port = raw.getpeername()[:2]
            peer = f"{host}:{port}"
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            threading.Thread(target=handshake, args=(raw, peer), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="msp-box-manager", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--pki", required=True, help="msp-pki directory (ca/, controller/)")
    parser.add_argument("--listen", required=True, help="ADDRESS:PORT (the MSP's address; never 0.0.0.0)")
    parser.add_argument("--report-to", help="the controller's REST API (https://...): new leases are "
                        "PUT there (token from $MSP_TOKEN); edges are then left to the controller's flows")
    parser.add_argument("--api-cacert", help="CA of the REST API's certificate")
    parser.add_argument("--state", help="the controller's SQLite store: homenets created by REST "
                        "(default: $MSP_STATE, else msp.state_path; none when the file is missing)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    address, _, port = args.listen.rpartition(":")
    try:
        config = load_config(args.config)
    except Exception as err:
        print(f"msp-box-manager: {args.config}: {err}", file=sys.stderr)
        return 2
    state = args.state or os.environ.get("MSP_STATE") or config.state_path
    on_lease = None
    if args.report_to:
        from msp_controller.box.report import rest_reporter
        if not os.environ.get("MSP_TOKEN"):
            print("msp-box-manager: --report-to needs the operator's token in $MSP_TOKEN", file=sys.stderr)
            return 2
        on_lease = rest_reporter(args.report_to, os.environ["MSP_TOKEN"], args.api_cacert)
    manager = Manager(config, on_lease=on_lease, edges_by_ovsdb=on_lease is None, state_path=state)
    stop = threading.Event()
    threading.Thread(target=manager.watch_policies, args=(stop,), name="policies", daemon=True).start()
    serve(manager, address, int(port), args.pki, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
