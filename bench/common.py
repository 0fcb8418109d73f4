"""Shared bits of the benchmarks: a REST client for the controller, waiting for steady state."""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from msp_controller.api.openapi import METRICS_PATH
from topologies.controller import Controller, wait_for

DEFAULT_POLICY = {"egress": {"mode": "failover", "order": ["ispA", "ispB"]},
                  "ingress": {"mode": "failover", "order": ["ispA", "ispB"]}}


def api(controller: Controller, method: str, path: str, body: Any = None,
        token: str | None = None) -> tuple[int, Any]:
    """One REST call with the controller's operator token (or `token`; "" for none)."""
    # bytes are sent as they are (a test's malformed body); anything else as JSON.
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    token = controller.token if token is None else token
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(controller.url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def metric_total(controller: Controller, family: str) -> float:
    """The sum of one metric family's samples on the controller's /metrics (operator token)."""
    request = urllib.request.Request(controller.url + METRICS_PATH,
                                     headers={"Authorization": f"Bearer {controller.token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return sum(sample.value for metric in text_string_to_metric_families(text) if metric.name == family
               for sample in metric.samples if sample.name == f"{family}_total")


def homenet(controller: Controller) -> dict[str, Any]:
    return api(controller, "GET", "/api/v1/homenets/home1")[1]


def path_info(controller: Controller, isp: str, edge: str = "edge1") -> dict[str, Any]:
    return next(p for p in homenet(controller)["paths"] if p["isp"] == isp and p["edge"] == edge)


def wait_all_paths_healthy(controller: Controller, timeout: float = 60.0) -> None:
    """Every tunnel live and its probe window free of the losses of start-up."""
    wait_for(lambda: all(p["live"] and p["loss_pct"] == 0 for p in homenet(controller)["paths"]),
             timeout, interval=0.5, what="every path live with no probe loss")


def class_path(controller: Controller, name: str, direction: str = "egress") -> str | None:
    return next(c[direction] for c in homenet(controller)["classes"] if c["name"] == name)


@contextlib.contextmanager
def run_directory(prefix: str) -> Iterator[str]:
    """A fresh directory under /run for one benchmark's network and logs: removed when the
    benchmark succeeds, kept (and named on stderr) when it fails, for its logs."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/run")
    try:
        yield path
    except BaseException:
        print(f"benchmark failed: its logs are in {path}", file=sys.stderr)
        raise
    shutil.rmtree(path, ignore_errors=True)
