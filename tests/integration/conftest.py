"""Integration tests need root, Open vSwitch and Mininet; they skip cleanly elsewhere."""
from __future__ import annotations

import os
import shutil

import pytest

NEEDS = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs Open vSwitch"),
    pytest.mark.skipif(shutil.which("mnexec") is None, reason="needs Mininet's mnexec"),
]


@pytest.fixture(scope="module")
def msp(tmp_path_factory):
    """The reference network and its controller, for one test module; h1 reaches the server."""
    pytest.importorskip("mininet")
    from topologies.measure import SERVER4, wait_reachable
    from topologies.scenario import running

    run_dir = str(tmp_path_factory.mktemp("msp"))
    with running(run_dir) as (net, controller):
        wait_reachable(net["h1"], SERVER4, timeout=60)
        yield net, controller


@pytest.fixture(scope="session", autouse=True)
def no_packet_leaves_the_machine():
    """Every integration test runs under the leak guard: the session fails, naming what tried
    to leave, if any packet of the project headed off this machine (and the guard dropped it)."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        yield None
        return
    from topologies.leak_guard import LeakGuard

    with LeakGuard() as guard:
        yield guard
