"""A switch is admitted only with a certificate of its own box and a datapath id the config knows."""
from __future__ import annotations

from typing import Any

import pytest

from msp_controller.core.registry import Kind, Role
from msp_controller.dataplane.pipeline import EDGE, MSPMB, UNDERLAY
from msp_controller.identity.binding import admit_switch, certificate_dpid, decide, owner_of, tls_mode

ROLES = {
    0x101: Role(Kind.MSPMB, "home1", MSPMB, homenet="home1"),
    0x111: Role(Kind.UNDERLAY, "home1/br-up1", UNDERLAY, homenet="home1"),
    0x102: Role(Kind.MSPMB, "home2", MSPMB, homenet="home2"),
    0x1: Role(Kind.EDGE, "edge1", EDGE, edge="edge1"),
}


def owner(dpid: int) -> str | None:
    return owner_of(ROLES.get(dpid))


def box_cert(*subject: tuple[str, str]) -> dict[str, Any]:
    return {"subject": tuple(((name, value),) for name, value in subject)}


def cert_for(dpid: int) -> dict[str, Any]:
    return box_cert(("organizationName", "msp"), ("organizationalUnitName", "msp-box"),
                    ("commonName", f"dpid:{dpid:016x}"), ("name", "box"))


class FakeSocket:
    def __init__(self, cert: Any = None, error: Exception | None = None) -> None:
        self.cert, self.error = cert, error

    def getpeercert(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.cert


def test_a_box_with_its_own_certificate_is_admitted() -> None:
    admission = decide(cert_for(0x101), 0x101, owner)
    assert admission.accepted, admission.reason
    assert "CN=dpid:0000000000000101" in admission.subject.replace("commonName", "CN")


def test_a_box_s_underlay_bridge_shares_the_box_certificate() -> None:
    assert decide(cert_for(0x101), 0x111, owner).accepted
    assert decide(cert_for(0x1), 0x1, owner).accepted


def test_another_box_s_datapath_id_is_refused() -> None:
    admission = decide(cert_for(0x101), 0x102, owner)
    assert not admission.accepted
    assert "0000000000000101" in admission.reason and "0000000000000102" in admission.reason
    assert not decide(cert_for(0x102), 0x111, owner).accepted  # home1's underlay, home2's certificate


def test_an_id_unknown_to_the_config_is_refused_even_with_a_matching_certificate() -> None:
    admission = decide(cert_for(0x999), 0x999, owner)
    assert not admission.accepted and "unknown to the config" in admission.reason


@pytest.mark.parametrize("cert", [None, {}])
def test_no_certificate_is_refused(cert: Any) -> None:
    admission = decide(cert, 0x101, owner)
    assert not admission.accepted and "TLS" in admission.reason


@pytest.mark.parametrize("cert", [
    box_cert(("organizationalUnitName", "msp-controller"), ("commonName", "dpid:0000000000000101")),  # not a box
    box_cert(("organizationalUnitName", "msp-box"), ("commonName", "home1")),
    box_cert(("organizationalUnitName", "msp-box"), ("commonName", "dpid:101")),
    box_cert(("organizationalUnitName", "msp-box"), ("commonName", "dpid:zzzzzzzzzzzzzzzz")),
    box_cert(("organizationalUnitName", "msp-box"), ("commonName", "dpid:0000000000000101"),
             ("commonName", "dpid:0000000000000102")),  # two ids: which one?
])
def test_a_certificate_that_names_no_single_datapath_id_is_refused(cert: dict[str, Any]) -> None:
    assert certificate_dpid(cert) is None
    admission = decide(cert, 0x101, owner)
    assert not admission.accepted and "names no datapath id" in admission.reason


def test_admit_switch_reads_the_peer_certificate_of_the_socket() -> None:
    assert admit_switch(FakeSocket(cert_for(0x101)), 0x101, owner).accepted
    assert not admit_switch(FakeSocket(cert_for(0x101)), 0x102, owner).accepted
    assert not admit_switch(FakeSocket({}), 0x101, owner).accepted
    assert not admit_switch(FakeSocket(error=ValueError("no handshake")), 0x101, owner).accepted
    assert not admit_switch(object(), 0x101, owner).accepted  # a plain TCP socket


def test_tls_mode_needs_all_three_options_or_none() -> None:
    assert tls_mode(None, None, None) is False
    assert tls_mode("key.pem", "cert.pem", "cacert.pem") is True
    with pytest.raises(ValueError, match="missing --ca-certs"):
        tls_mode("key.pem", "cert.pem", None)
