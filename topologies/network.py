"""The reference network's life cycle: ReferenceNetwork starts it (MspTopo in Mininet, the
boxes' OVS, the routers' BIRD) and stops it, leaving nothing; main() is the command line
of `python -m topologies.reference`.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Self

from mininet.net import Mininet
from mininet.node import Host

from msp_controller.model.config import load_config
from topologies import control_ns
from topologies.leak_guard import remove_stale_tables
from topologies.nodes import BgpRouter, EdgeBox, IspRouter
from topologies.ovsbox import DEFAULT_RUN_DIR, OvsBox
from topologies.plan import DEFAULT_CONFIG, INET, Plan, resolve_config_path, with_overrides
from topologies.preflight import TopologyError, leftovers, preflight, remove_leftovers
from topologies.reference import DEFAULT_ISP_RATE_MBIT, MspTopo

STATIC_PI_ENV = "MSP_STATIC_PI_ROUTES"  # =1: ReferenceNetwork's static_pi_routes defaults to on


class ReferenceNetwork:
    """Start and stop the reference network; a context manager.

        with ReferenceNetwork() as ref:
            ref["h1"], ref["mspmb"].vsctl("show"), ref.net (the Mininet object)
    """

    def __init__(self, config_path: str = DEFAULT_CONFIG, run_dir: str = DEFAULT_RUN_DIR,
                 controller_port: int | None = None, controller_address: str | None = None,
                 static_pi_routes: bool | None = None,
                 isp_rate_mbit: int = DEFAULT_ISP_RATE_MBIT) -> None:
        """isp_rate_mbit: each ISP's access rate each way (0: unlimited, then the boxes' CPUs
        are the bottleneck and BFD at 30 ms flaps under a saturating transfer on 2 cores).
        static_pi_routes: also route the PI prefixes statically, inet -> up router of the
        primary edge -> primary edge (metric STATIC_PI_METRIC, under BGP's routes): the
        data plane works inbound without the controller's BGP. None (default): off unless
        the environment sets MSP_STATIC_PI_ROUTES=1 (for running the suites that way)."""
        if static_pi_routes is None:
            static_pi_routes = os.environ.get(STATIC_PI_ENV, "").lower() in ("1", "true", "yes", "on")
        self.static_pi_routes = static_pi_routes
        self.isp_rate_mbit = isp_rate_mbit
        self.config_path = resolve_config_path(config_path)
        self.config = with_overrides(load_config(self.config_path), controller_port, controller_address)
        self.plan = Plan(self.config)
        self.run_dir = os.path.abspath(run_dir)
        self.net: Mininet | None = None
        self._created_run_dir = False
        self._created_namespace = False

    # -- access

    def __getitem__(self, name: str) -> Host:
        if self.net is None:
            raise RuntimeError("the reference network is not running")
        return self.net[name]

    @property
    def boxes(self) -> dict[str, OvsBox]:
        return {name: self[name] for name in self.plan.boxes}

    @property
    def isps(self) -> dict[str, IspRouter]:
        return {isp.name: self[isp.name] for isp in self.plan.isps}

    @property
    def edges(self) -> dict[str, EdgeBox]:
        """The edges' boxes, in the config's order."""
        return {name: self[name] for name in self.plan.sites}

    @property
    def routers(self) -> dict[str, BgpRouter]:
        """Every node running BIRD: the edges' upstream routers, then inet."""
        return {name: self[name] for name in self.plan.bird_routers}

    def upstream(self, edge: str) -> BgpRouter:
        """The upstream router (up<n>) of an edge."""
        return self[self.plan.site(edge).router]

    def box_dir(self, box: str) -> str:
        return os.path.join(self.run_dir, box)

    # -- life cycle

    def start(self) -> None:
        """Create the nodes and links, address them, start and provision the boxes' OVS."""
        if self.net is not None:
            raise RuntimeError("the reference network is already running")
        preflight(self.plan, self.run_dir)
        self._created_namespace = control_ns.ensure(self.config.controller_address)
        if not os.path.isdir(self.run_dir):
            os.makedirs(self.run_dir, mode=0o755)
            self._created_run_dir = True
        topo = MspTopo(config=self.config, run_dir=self.run_dir, check=False,
                       static_pi_routes=self.static_pi_routes, isp_rate_mbit=self.isp_rate_mbit)
        self.net = Mininet(topo=topo, controller=None, build=False)
        try:
            self.net.build()  # nodes, links, then each node's config(): addresses, OVS, provisioning
            self.net.start()
            os.makedirs(os.path.join(self.run_dir, "nodes"), exist_ok=True)
            for node in self.net.hosts:
                with open(os.path.join(self.run_dir, "nodes", f"{node.name}.pid"), "w") as handle:
                    handle.write(f"{node.pid}\n")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything this network started; safe to call twice or after a failed start."""
        net, self.net = self.net, None
        errors: list[BaseException] = []
        if net is not None:
            # OVS and BIRD first, while their ports still exist; then Mininet's links and shells.
            for node in net.hosts:
                try:
                    if isinstance(node, OvsBox):
                        node.stop_ovs()
                    elif isinstance(node, BgpRouter):
                        node.stop_bird()
                except Exception as err:
                    errors.append(err)
            try:
                net.stop()
            except Exception as err:
                errors.append(err)
        try:
            remove_leftovers(self.plan, self.run_dir, remove_run_dir=self._created_run_dir)
        except Exception as err:
            errors.append(err)
        if self._created_namespace:  # else it belongs to whoever made it (scenario, controller)
            self._created_namespace = False
            try:
                control_ns.remove()
            except Exception as err:
                errors.append(err)
        if errors:
            raise errors[0]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- command line -----------------------------------------------------------------------


def _summary(ref: ReferenceNetwork) -> str:
    lines = ["", "*** MSP reference network is up. Boxes' Open vSwitch, by hand:"]
    for box in ref.plan.boxes:
        d = ref.box_dir(box)
        lines.append(f"    OVS_RUNDIR={d} ovs-vsctl show     "
                     f"(ovs-ofctl -O OpenFlow13 dump-flows unix:{d}/<bridge>.mgmt)")
    lines.append("*** BGP (BIRD), by hand:")
    for router in ref.plan.bird_routers:
        lines.append(f"    birdc -s {ref.run_dir}/{router}/bird.ctl show protocols")
    primary = ref.plan.homenet.prefixes_v4[0] if ref.plan.homenet.prefixes_v4 else None
    if primary is not None:
        lines.append(f"    birdc -s {ref.run_dir}/{INET}/bird.ctl show route for {primary} all")
    lines.append(f"    nsenter -t $(cat {ref.run_dir}/nodes/<node>.pid) -n <command>")
    lines.append(f"*** Controller expected at tcp:{ref.config.controller_address}:"
                 f"{ref.config.controller_port}, in namespace {control_ns.NAMESPACE}:")
    lines.append(f"    ip netns exec {control_ns.NAMESPACE} ryu-manager --ofp-listen-host "
                 f"{ref.config.controller_address} --wsapi-host {control_ns.OPERATOR_NS_IP} msp_controller.app")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m topologies.reference",
                                     description="Run the MSP reference network (as root).")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="MSP config (TOML)")
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR, help="base directory for the boxes' OVS")
    parser.add_argument("--controller-port", type=int, help="override msp.controller_port")
    parser.add_argument("--controller-address", help="override msp.controller_address "
                        "(the management bridge's address)")
    parser.add_argument("--static-pi-routes", action="store_true", default=None,
                        help="also route the PI prefixes statically to the primary edge (under BGP)")
    parser.add_argument("--no-cli", action="store_true", help="no Mininet CLI: run until Ctrl-C or SIGTERM")
    parser.add_argument("--cleanup", action="store_true",
                        help="remove what an earlier run left (by pidfile and name) and exit")
    parser.add_argument("--quiet", action="store_true", help="less Mininet output")
    args = parser.parse_args(argv)

    from mininet.log import setLogLevel
    setLogLevel("warning" if args.quiet else "info")
    ref = ReferenceNetwork(args.config, args.run_dir, args.controller_port, args.controller_address,
                           static_pi_routes=args.static_pi_routes)
    if args.cleanup:
        found = leftovers(ref.plan, ref.run_dir)
        remove_leftovers(ref.plan, ref.run_dir, remove_run_dir=True)
        if control_ns.exists():
            found += [f"namespace {control_ns.NAMESPACE}"] + [f"pid {pid} in it" for pid in control_ns.pids()]
            control_ns.remove(kill=True)
        found += [f"nftables table {name}" for name in remove_stale_tables()]
        print("removed: " + (", ".join(found) if found else "nothing was left"))
        return 0

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if args.no_cli:
            stop.set()
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        ref.start()
    except TopologyError as err:
        print(f"*** cannot start: {err}", file=sys.stderr)
        return 2
    try:
        print(_summary(ref), flush=True)
        if args.no_cli:
            signal.signal(signal.SIGINT, on_signal)
            print("*** Running; Ctrl-C or SIGTERM stops it", flush=True)
            while not stop.wait(1.0):
                pass
        else:
            from mininet.cli import CLI
            CLI(ref.net)
    finally:
        ref.stop()
    return 0
