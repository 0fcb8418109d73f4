"""Unit-test fixtures: the controller core driving fake switches."""
from __future__ import annotations

import pytest

from tests.harness import Harness


@pytest.fixture
def net(config) -> Harness:
    """Every switch of the reference network connected and reconciled; hosts and upstream
    routers learned (as after their first ARP/ND)."""
    harness = Harness(config)
    harness.connect_all()
    harness.learn_hosts_and_upstream()
    return harness
