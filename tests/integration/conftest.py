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
