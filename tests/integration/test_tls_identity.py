"""OpenFlow over TLS with the real controller and a real Open vSwitch, in one namespace of the
test's own (msp-tls-<pid>), with certificates from msp-pki:

    namespace msp-tls-<pid>, loopback only
    ryu-manager msp_controller.app  ssl:127.0.0.1:6653  (--ctl-privkey --ctl-cert --ca-certs)
        ^-- ovs-vswitchd with home1's certificate:  br-home  claims 0x101 (home1's own id)
        |                                            br-fake  claims 0xe1 (edge1's id)
        '-- a TLS client with a certificate from another CA

(a) br-home is admitted and reconciled (flows appear); (b) br-fake is refused, logged with
both ids, and gets no flows; (c) the stranger fails the TLS handshake and never hears OpenFlow.
"""
from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest

from tests.integration.conftest import NEEDS

pytestmark = [*NEEDS, pytest.mark.skipif(not os.path.exists("/usr/bin/openssl"), reason="needs openssl")]

from bench.edge_ovs import OvsInstance
from msp_controller.identity import pki
from topologies.ovsbox import wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]
PORT = 6653
HOME1, EDGE1 = 0x101, 0xE1

STRANGER = """
import socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.load_verify_locations(sys.argv[1])  # the real CA: the stranger does trust the controller
context.load_cert_chain(sys.argv[2], sys.argv[3])
try:
    with context.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[4])), timeout=5)) as conn:
        data = conn.recv(8)  # the server sends OFPT_HELLO at once to a switch it admitted
        print("received", data.hex())
except (ssl.SSLError, OSError) as err:
    print("refused", type(err).__name__, err)
"""


def config_without_bgp(target: pathlib.Path) -> None:
    """The reference config minus BGP: no speaker, nothing but OpenFlow on loopback."""
    kept, skipping = [], False
    for line in (REPO / "etc" / "reference.toml").read_text().splitlines():
        if line.startswith("["):
            skipping = line.strip() == "[bgp]"
        if not skipping and not line.startswith("bgp_neighbors"):
            kept.append(line)
    target.write_text("\n".join(kept) + "\n")


def flow_count(ovs: OvsInstance, bridge: str) -> int:
    return len([line for line in ovs.ofctl("dump-flows", bridge).splitlines() if "actions=" in line])


@pytest.fixture()
def tls_network(tmp_path: pathlib.Path):
    pki.init(tmp_path / "pki")
    pki.box(tmp_path / "pki", HOME1, "home1")
    config = tmp_path / "msp.toml"
    config_without_bgp(config)
    ovs = OvsInstance(f"msp-tls-{os.getpid()}", tmp_path / "ovs")
    controller: subprocess.Popen[bytes] | None = None
    log_path = tmp_path / "controller.log"
    try:
        ovs.start()
        keys = tmp_path / "pki" / "controller"
        with open(log_path, "wb") as log:
            controller = subprocess.Popen(
                ["ip", "netns", "exec", ovs.namespace, str(pathlib.Path(sys.executable).parent / "ryu-manager"),
                 "--ofp-listen-host", "127.0.0.1", "--ofp-ssl-listen-port", str(PORT),
                 "--ctl-privkey", str(keys / "key.pem"), "--ctl-cert", str(keys / "cert.pem"),
                 "--ca-certs", str(tmp_path / "pki" / "ca" / "cacert.pem"),
                 "--wsapi-host", "127.0.0.1", "--wsapi-port", "18080", "msp_controller.app"],
                cwd=REPO, env=dict(os.environ, MSP_CONFIG=str(config), MSP_STATE=str(tmp_path / "state.sqlite"),
                                   PYTHONUNBUFFERED="1"),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: f"127.0.0.1:{PORT}" in ovs.ns("ss", "-ltn") or controller.poll() is not None, 30,
                 what="the controller to listen")
        assert controller.poll() is None, log_path.read_text()
        box = tmp_path / "pki" / "boxes" / "home1"
        ovs.vsctl("set-ssl", str(box / "key.pem"), str(box / "cert.pem"), str(box / "cacert.pem"))
        yield ovs, log_path, tmp_path
    finally:
        if controller is not None and controller.poll() is None:
            os.killpg(controller.pid, signal.SIGTERM)
            try:
                controller.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(controller.pid, signal.SIGKILL)
                controller.wait(timeout=10)
        ovs.stop()  # its daemons by PID, then the namespace by name


def add_bridge(ovs: OvsInstance, bridge: str, dpid: int) -> None:
    ovs.vsctl("add-br", bridge, "--", "set", "bridge", bridge, "datapath_type=netdev", "fail_mode=secure",
              "protocols=OpenFlow13", f"other-config:datapath-id={dpid:016x}",
              "--", "set-controller", bridge, f"ssl:127.0.0.1:{PORT}",
              "--", "set", "controller", bridge, "max_backoff=1000")


def test_only_a_box_with_its_own_certificate_is_admitted(tls_network) -> None:
    ovs, log_path, tmp_path = tls_network
    add_bridge(ovs, "br-home", HOME1)
    add_bridge(ovs, "br-fake", EDGE1)  # home1's certificate, edge1's datapath id

    # (a) home1 is admitted and reconciled.
    wait_for(lambda: flow_count(ovs, "br-home") > 0, 60, what="home1's flows")
    log = log_path.read_text()
    assert re.search(r"mspmb home1 \(0000000000000101\) connected", log), log[-3000:]

    # (b) the bridge claiming edge1's id is refused, with both ids in one warning, and left bare.
    refusal = wait_for(lambda: re.search(r"refused a switch claiming datapath id 00000000000000e1 .*"
                                         r"dpid:0000000000000101.*", log_path.read_text()), 60,
                       what="the refusal of br-fake")
    assert "not 00000000000000e1" in str(refusal.group(0))  # type: ignore[union-attr]
    wait_for(lambda: len(re.findall("claiming datapath id 00000000000000e1", log_path.read_text())) >= 2, 30,
             what="br-fake's second attempt (it keeps retrying and keeps being refused)")
    assert flow_count(ovs, "br-fake") == 0
    assert "edge edge1" not in log_path.read_text()  # the core never heard of it

    # (c) a certificate from another CA fails the TLS handshake: no OpenFlow HELLO comes back.
    pki.init(tmp_path / "rogue")
    pki.box(tmp_path / "rogue", HOME1, "home1")
    rogue = tmp_path / "rogue" / "boxes" / "home1"
    answer = ovs.ns(sys.executable, "-c", STRANGER, str(tmp_path / "pki" / "ca" / "cacert.pem"),
                    str(rogue / "cert.pem"), str(rogue / "key.pem"), str(PORT))
    assert answer.startswith("refused"), answer
    assert "unknown ca" in answer.lower() or "certificate" in answer.lower(), answer
    # and the admitted box is still there, untouched.
    assert flow_count(ovs, "br-home") > 0
