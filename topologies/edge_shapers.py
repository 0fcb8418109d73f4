"""The edges' shapers in the reference network: each edge's downstream shaping comes from the
controller's REST API, as in production (msp_controller/box/edge_shaper.py), not from tc
commands the topology runs itself.

Each edge reaches REST over the management network: the controller's namespace holds the
REST address (control_ns.OPERATOR_NS_IP) and accepts it on its management bridge, so the
edge needs only a host route to it through the controller's management address. The
shapers are stopped by PID; their logs are <run_dir>/<edge>-shaper.log, their journals
<run_dir>/<edge>-shaper.journal.
"""
from __future__ import annotations

import os
import subprocess
from typing import Any

from . import control_ns
from .controller import controller_address
from .measure import PYTHON, REPO
from .ovsbox import run


class EdgeShapers:
    """One edge shaper per edge of the network, for as long as the context lasts."""

    def __init__(self, net: Any, controller: Any, run_dir: str) -> None:
        self.net, self.controller, self.run_dir = net, controller, run_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> EdgeShapers:
        via = controller_address(self.controller.config_path)
        env = dict(os.environ, MSP_TOKEN=self.controller.token or "")
        try:
            for edge in self.net.config.edges:
                node = self.net[edge.name]
                run(["ip", "route", "replace", f"{control_ns.OPERATOR_NS_IP}/32", "via", via], node)
                with open(os.path.join(self.run_dir, f"{edge.name}-shaper.log"), "ab") as log:
                    self.processes.append(subprocess.Popen(
                        ["mnexec", "-a", str(node.pid), PYTHON, "-m", "msp_controller.box.edge_shaper",
                         "--api", self.controller.url, "--edge", edge.name, "--port", edge.underlay_port,
                         "--journal", os.path.join(self.run_dir, f"{edge.name}-shaper.journal")],
                        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
        except BaseException:
            self.__exit__()  # the ones already started
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
        self.processes = []
