"""Run the MSP controller (`ryu-manager msp_controller.app`) as a child process.

It runs inside the controller's own network namespace (topologies/control_ns.py), which has
no route off this machine: OpenFlow on the management address, REST on the operator link.
Used by the demo, the integration tests and the benchmarks; it is stopped by its PID.
"""
from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import tomllib

from msp_controller.model.config import DEFAULT_CONTROLLER_ADDRESS

from . import control_ns
from .ovsbox import wait_for

REPO = pathlib.Path(__file__).resolve().parent.parent


__all__ = ["Controller", "wait_for"]  # wait_for: re-exported for the tests and benches


class Controller:
    """ryu-manager with the MSP app, logging to a file."""

    def __init__(self, config_path: str | os.PathLike[str], log_path: str | os.PathLike[str],
                 port: int = 6653, rest_port: int = 8080, state_path: str | os.PathLike[str] | None = None) -> None:
        """state_path: the controller's store (default: state.sqlite beside the log, so that a
        restart in the same run directory finds what REST changed)."""
        self.config_path = str(config_path)
        self.log_path = pathlib.Path(log_path)
        self.state_path = pathlib.Path(state_path) if state_path else self.log_path.parent / "state.sqlite"
        self.token = operator_token(self.config_path)
        self.listen_host = controller_address(self.config_path)
        self.port = port
        self.rest_port = rest_port
        self.process: subprocess.Popen[bytes] | None = None
        self._created_namespace = False

    def start(self, timeout: float = 20.0) -> None:
        ryu_manager = pathlib.Path(sys.executable).parent / "ryu-manager"
        env = dict(os.environ, MSP_CONFIG=self.config_path, MSP_STATE=str(self.state_path), PYTHONUNBUFFERED="1")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._created_namespace = control_ns.ensure(self.listen_host) or self._created_namespace
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            control_ns.exec_argv(
                [str(ryu_manager), "--ofp-listen-host", self.listen_host, "--ofp-tcp-listen-port",
                 str(self.port), "--wsapi-host", control_ns.OPERATOR_NS_IP, "--wsapi-port",
                 str(self.rest_port), "msp_controller.app"]),
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_for(lambda: self._listening() or self._died(), timeout, what="the controller to listen")
        if self.process.poll() is not None:
            raise RuntimeError(f"controller exited with {self.process.returncode}:\n{self.log_tail()}")

    def _died(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def _listening(self) -> bool:
        try:
            with socket.create_connection((control_ns.OPERATOR_NS_IP, self.rest_port), timeout=0.2):
                pass
        except OSError:
            return False
        return control_ns.listening(self.port, self.listen_host)

    @property
    def url(self) -> str:
        return f"http://{control_ns.OPERATOR_NS_IP}:{self.rest_port}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(timeout=10)
            self.process = None
        if self._created_namespace:  # else it belongs to whoever made it (scenario, network)
            self._created_namespace = False
            control_ns.remove()

    def __enter__(self) -> Controller:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def controller_address(config_path: str) -> str:
    """msp.controller_address, read without validating the rest (a bad config must still reach
    the controller, which names the bad field)."""
    try:
        with open(config_path, "rb") as handle:
            address = tomllib.load(handle).get("msp", {}).get("controller_address")
    except (OSError, tomllib.TOMLDecodeError):
        address = None
    return address if isinstance(address, str) else DEFAULT_CONTROLLER_ADDRESS


def operator_token(config_path: str) -> str | None:
    """The REST token a run uses: $MSP_TOKEN, else <config>-operator.token beside the config
    (etc/reference-operator.token for the reference topology), else none."""
    if os.environ.get("MSP_TOKEN"):
        return os.environ["MSP_TOKEN"]
    path = pathlib.Path(config_path)
    try:
        return path.with_name(f"{path.stem}-operator.token").read_text().strip() or None
    except OSError:
        return None
