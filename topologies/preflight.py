"""Before and after a run of the reference network: preflight() refuses to start over
leftovers or addresses that clash with the host; leftovers() and remove_leftovers() find
and remove what a run left, by pidfile and by name, nothing else (unlike `mn -c`).
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
from typing import Any

from topologies import control_ns
from topologies.bird import bird_pid, stop_bird
from topologies.ovsbox import OVS_DAEMONS, kill_pid, process_alive, read_pidfile, run
from topologies.plan import Plan


def operator_link_conflicts() -> list[str]:
    """Addresses and routes of the root namespace that the operator link (control_ns) would
    clash with. Default routes are ignored."""
    mine = control_ns.OPERATOR_NETWORK
    found = []
    for item in json.loads(run(["ip", "-j", "-4", "addr", "show"]) or "[]"):
        if item.get("ifname") == control_ns.OPERATOR_ROOT_INTF:
            continue
        for addr in item.get("addr_info", []):
            net = ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False)
            if net.overlaps(mine):
                found.append(f"{addr['local']}/{addr['prefixlen']} on {item['ifname']}")
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "main"]) or "[]"):
        dst = route.get("dst", "default")
        if dst == "default" or route.get("dev") == control_ns.OPERATOR_ROOT_INTF:
            continue
        net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        if net.overlaps(mine):
            via = f" via {route['gateway']}" if "gateway" in route else ""
            found.append(f"route {dst}{via} dev {route.get('dev')}")
    return found


class TopologyError(RuntimeError):
    """The reference network cannot start here (clashes, leftovers)."""


def preflight(plan: Plan, run_dir: str) -> None:
    """Refuse to start over leftovers or a management network that clashes with the host."""
    problems = []
    found = leftovers(plan, run_dir)
    if found:
        problems.append("an earlier run left " + ", ".join(found) + "; remove them with "
                        f"`python -m topologies.reference --cleanup --run-dir {run_dir}`")
    clashes = operator_link_conflicts()
    if clashes:
        problems.append(f"the operator link {control_ns.OPERATOR_NETWORK} clashes with the root "
                        "namespace: " + ", ".join(clashes))
    try:
        control_ns.check_addresses(plan.config.controller_address)
    except control_ns.NamespaceError as err:
        problems.append(str(err))
    if problems:
        raise TopologyError("; ".join(problems))


def _node_shell_alive(pid: int, name: str) -> bool:
    """Is pid still the Mininet shell of node `name` (bash ... mininet:<name>)?"""
    if not process_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            args = handle.read().split(b"\0")
    except OSError:
        return False
    return f"mininet:{name}".encode() in args


def leftovers(plan: Plan, run_dir: str) -> list[str]:
    """What an earlier run of this topology left behind (processes, links, directories)."""
    found = []
    for box in plan.boxes:
        for daemon in OVS_DAEMONS:
            pid = read_pidfile(os.path.join(run_dir, box, f"{daemon}.pid"))
            if pid is not None and process_alive(pid, daemon):
                found.append(f"{box}'s {daemon} (pid {pid})")
    for router in plan.bird_routers:
        pid = bird_pid(os.path.join(run_dir, router))
        if pid is not None:
            found.append(f"{router}'s bird (pid {pid})")
    nodes_dir = os.path.join(run_dir, "nodes")
    for name in plan.nodes:
        pid = read_pidfile(os.path.join(nodes_dir, f"{name}.pid"))
        if pid is not None and _node_shell_alive(pid, name):
            found.append(f"node {name}'s shell (pid {pid})")
    if control_ns.exists():
        for link in plan.mgmt_root_intfs.values():
            if control_ns.link_exists(link, control_ns.NAMESPACE):
                found.append(f"link {link} in namespace {control_ns.NAMESPACE}")
    return found


def remove_leftovers(plan: Plan, run_dir: str, remove_run_dir: bool = False) -> None:
    """Remove what this topology may have left: by pidfile and by name, nothing else."""
    errors: list[BaseException] = []

    def attempt(action: Any, *args: Any) -> None:
        try:
            action(*args)
        except Exception as err:
            errors.append(err)

    for box in plan.boxes:
        for daemon in OVS_DAEMONS:
            pid = read_pidfile(os.path.join(run_dir, box, f"{daemon}.pid"))
            if pid is not None:
                attempt(kill_pid, pid, daemon)
        shutil.rmtree(os.path.join(run_dir, box), ignore_errors=True)
    for router in plan.bird_routers:
        attempt(stop_bird, os.path.join(run_dir, router))
        shutil.rmtree(os.path.join(run_dir, router), ignore_errors=True)
    nodes_dir = os.path.join(run_dir, "nodes")
    for name in plan.nodes:
        pid = read_pidfile(os.path.join(nodes_dir, f"{name}.pid"))
        if pid is not None and _node_shell_alive(pid, name):
            attempt(os.kill, pid, signal.SIGKILL)
    shutil.rmtree(nodes_dir, ignore_errors=True)
    for link in plan.mgmt_root_intfs.values():
        attempt(control_ns.delete_link, link)
    if remove_run_dir:
        try:
            os.rmdir(run_dir)
        except OSError:
            pass
    if errors:
        raise errors[0]

