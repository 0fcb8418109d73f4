"""Part 2 of the scale benchmark: the real controller (ryu-manager in namespace msp-ctl) and
N real MSPMB bridges in one OVS instance (bench/scale_ovs.py), over real OpenFlow.

Measures the time from the controller's start until the REST health report says every
MSPMB is reconciled, then the time from a REST create of one more homenet (its bridge
already exists and is connected) until its bridge holds flows; if none come, the time from
a reconnect of that bridge to its flows. All of it runs under the leak guard; everything
made here is removed by name or PID, on failure too.
"""
from __future__ import annotations

import json
import pathlib
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from msp_controller.api.auth import digest, new_token
from msp_controller.core.switch_report import LISTED_ALL_UP_TO
from topologies import control_ns
from topologies.controller import Controller
from topologies.leak_guard import LeakError, LeakGuard

from .scale_configs import REAL_V4_POOL, config_dict, homenet_table, mspmb_dpid, to_toml
from .scale_ovs import OvsNamespace

POLL_S = 0.25
FLOW_POLL_S = 0.02


@dataclass
class RealResult:
    real_bridges: int
    real_listening_s: float | None = None  # controller start -> OpenFlow and REST listening
    real_reconciled_s: float | None = None  # controller start -> every MSPMB reconciled
    create_status: int | None = None
    create_answer: Any = None
    create_to_flows_ms: float | None = None
    reconnect_to_flows_ms: float | None = None  # only if no flows came: after the bridge reconnected
    created_flows: int | None = None
    leaked_packets: int | None = None
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Rest:
    """The controller's REST API with the run's operator token."""

    url: str
    token: str

    def call(self, method: str, path: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                return err.code, json.loads(raw)
            except ValueError:
                return err.code, raw.decode(errors="replace")


def reconciled_mspmbs(rest: Rest, dpids: set[str]) -> int | None:
    """How many of `dpids` the health report calls reconciled; None if it did not answer
    (the controller may be too busy reconciling to serve REST in time)."""
    try:
        status, health = rest.call("GET", "/api/v1/health", timeout=10)
    except (OSError, ValueError):
        return None
    if status != 200 or not isinstance(health, dict):
        raise RuntimeError(f"GET /api/v1/health answered {status}: {health}")
    switches = health.get("switches", {})
    if health.get("switches_listed") == "not_reconciled":  # a large MSP: only those not reconciled are listed
        if len(switches) >= LISTED_ALL_UP_TO:
            return None  # more than the report lists: which ones is not known yet
        return sum(1 for dpid in dpids if dpid not in switches)
    return sum(1 for dpid in dpids if switches.get(dpid, {}).get("reconciled"))


def wait_reconciled(controller: Controller, rest: Rest, dpids: set[str], started: float, timeout: float,
                    log: Any) -> float:
    last_report = started
    while True:
        done = reconciled_mspmbs(rest, dpids)
        now = time.monotonic()
        if done == len(dpids):
            return now - started
        if controller.process is None or controller.process.poll() is not None:
            raise RuntimeError(f"the controller exited:\n{controller.log_tail()}")
        if now - started > timeout:
            raise TimeoutError(f"{done} of {len(dpids)} MSPMBs reconciled after {timeout:g} s")
        if now - last_report >= 10:
            log(f"real: {done if done is not None else '?'} of {len(dpids)} MSPMBs reconciled "
                f"after {now - started:.0f} s")
            last_report = now
        time.sleep(POLL_S)


def create(rest: Rest, index: int, result: RealResult) -> None:
    result.create_status, result.create_answer = rest.call("POST", "/api/v1/homenets",
                                                           homenet_table(index, REAL_V4_POOL))
    if result.create_status not in (200, 201):
        raise RuntimeError(f"POST /api/v1/homenets answered {result.create_status}: {result.create_answer}")


def wait_flows(box: OvsNamespace, bridge: str, started: float, timeout: float) -> tuple[float, int] | None:
    """(ms since `started`, flows) once the bridge holds flows; None after timeout s."""
    while time.monotonic() - started < timeout:
        flows = box.flow_count(bridge)
        if flows:
            return round((time.monotonic() - started) * 1000, 1), flows
        time.sleep(FLOW_POLL_S)
    return None


def create_and_wait_flows(rest: Rest, box: OvsNamespace, index: int, target: str, timeout: float,
                          result: RealResult, log: Any) -> None:
    """POST homenet `index`, then poll its bridge (connected since before) until it holds
    flows. If none come, reconnect the bridge and time that too: it tells a controller
    that ignores an already-connected switch from one that cannot program it at all."""
    bridge = f"sb{index}"
    started = time.monotonic()
    create(rest, index, result)
    found = wait_flows(box, bridge, started, timeout)
    if found is not None:
        result.create_to_flows_ms, result.created_flows = found
        log(f"real: REST create of hn{index} answered {result.create_status}; its bridge held "
            f"{result.created_flows} flows {result.create_to_flows_ms:.0f} ms after the request")
        return
    problem = (f"POST /api/v1/homenets answered {result.create_status} (applied: "
               f"{_applied(result.create_answer)}), but {bridge}, connected before the create, "
               f"held no flows {timeout:g} s later")
    result.errors.append(problem)
    log(f"real: FAILED: {problem}")
    started = time.monotonic()
    box.reconnect(bridge, target)
    found = wait_flows(box, bridge, started, timeout)
    if found is not None:
        result.reconnect_to_flows_ms, result.created_flows = found
    log(f"real: after a reconnect of {bridge}: "
        + (f"{found[1]} flows in {found[0]:.0f} ms" if found else f"still no flows after {timeout:g} s"))


def _applied(answer: Any) -> Any:
    return answer.get("applied") if isinstance(answer, dict) else None


def write_config(run_dir: pathlib.Path, count: int) -> tuple[pathlib.Path, dict[str, Any], str]:
    """The config (no BGP: nobody to peer with) with one operator token, which is also
    written beside it where topologies.controller looks for it; returns (path, data, token)."""
    token = new_token()
    data = config_dict(count, REAL_V4_POOL, bgp=False)
    data["api"] = {"tokens": [{"name": "bench", "role": "operator", "sha256": digest(token)}]}
    path = run_dir / "msp.toml"
    path.write_text(to_toml(data))
    token_file = run_dir / "msp-operator.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return path, data, token


def run(count: int, reconcile_timeout: float, create_timeout: float, log: Any) -> RealResult:
    result = RealResult(real_bridges=count)
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="msp-bench-scale-", dir="/run"))
    config_path, data, token = write_config(run_dir, count)
    address = data["msp"].get("controller_address", "198.19.0.1")
    target = f"tcp:{address}:{data['msp'].get('controller_port', 6653)}"
    guard = LeakGuard()
    try:
        with guard, ExitStack() as stack:
            if control_ns.ensure(address):  # ours: removed last
                stack.callback(control_ns.remove)
            box = stack.enter_context(OvsNamespace(run_dir / "ovs"))
            started = time.monotonic()
            box.add_bridges([(f"sb{i}", mspmb_dpid(i)) for i in range(1, count + 2)], target)
            log(f"real: {count + 1} bridges in one OVS instance in {time.monotonic() - started:.1f} s "
                f"(files in {run_dir})")
            controller = Controller(config_path, run_dir / "controller.log", state_path=run_dir / "state.sqlite")
            stack.callback(controller.stop)
            _measure(controller, Rest(controller.url, token), box, count, target, reconcile_timeout,
                     create_timeout, result, log)
    except LeakError as err:
        result.errors.append(str(err))
    except Exception as err:  # the set-up failed (cleaned up by now): report, keep Part 1
        result.errors.append(f"set-up: {err}")
        log(f"real: FAILED to set up: {err}")
    result.leaked_packets = guard.final_count
    return result


def _measure(controller: Controller, rest: Rest, box: OvsNamespace, count: int, target: str,
             reconcile_timeout: float, create_timeout: float, result: RealResult, log: Any) -> None:
    dpids = {f"{mspmb_dpid(i):016x}" for i in range(1, count + 1)}
    started = time.monotonic()
    controller.start(timeout=120)
    result.real_listening_s = round(time.monotonic() - started, 2)
    try:
        result.real_reconciled_s = round(wait_reconciled(controller, rest, dpids, started, reconcile_timeout, log), 2)
        log(f"real: controller listening after {result.real_listening_s:.1f} s, all {count} MSPMBs "
            f"reconciled {result.real_reconciled_s:.1f} s after its start")
        create_and_wait_flows(rest, box, count + 1, target, create_timeout, result, log)
    except (RuntimeError, OSError) as err:  # OSError: TimeoutError and urllib's errors too
        result.errors.append(str(err))
        log(f"real: FAILED: {err}")
