"""Is the switch on this connection the box it claims to be?

A box's certificate (made by `msp-pki box`) names its datapath id in its subject
(CN=dpid:<16 hex digits>, OU=msp-box). The datapath id a switch claims in FEATURES_REPLY is
accepted only when the config knows it and it belongs to the same box as the certificate's id:
a box's other bridges (its underlay bridges) share the box's certificate, because one OVS
instance presents one certificate for all its bridges. Pure: no Ryu, no sockets opened.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from msp_controller.core.registry import Role

BOX_UNIT = "msp-box"
DPID_PREFIX = "dpid:"

# The owner of a datapath id ("homenet:home1", "edge:edge1"), or None when the config does not know it.
Owner = Callable[[int], "str | None"]


@dataclass(frozen=True)
class Admission:
    accepted: bool
    reason: str  # why, for the log
    subject: str  # the certificate's subject as text ("" when there is none)


def dpid_common_name(dpid: int) -> str:
    return f"{DPID_PREFIX}{dpid:016x}"


def owner_of(role: Role | None) -> str | None:
    """The box a registry role lives on: an MSPMB and its uplink underlays are one box, an edge
    and its underlay another."""
    if role is None:
        return None
    if role.homenet is not None:
        return f"homenet:{role.homenet}"
    return f"edge:{role.edge}" if role.edge is not None else None


def subject_attributes(cert: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The subject of an ssl getpeercert() dict as (name, value) pairs, in order."""
    return [(str(name), str(value)) for rdn in cert.get("subject", ()) for name, value in rdn]


def subject_text(cert: Mapping[str, Any]) -> str:
    return ",".join(f"{name}={value}" for name, value in subject_attributes(cert))


def certificate_dpid(cert: Mapping[str, Any]) -> int | None:
    """The one datapath id a box certificate names, or None (not a box certificate, or ambiguous)."""
    attributes = subject_attributes(cert)
    if ("organizationalUnitName", BOX_UNIT) not in attributes:
        return None
    names = [value for name, value in attributes if name == "commonName" and value.startswith(DPID_PREFIX)]
    if len(names) != 1:
        return None
    digits = names[0][len(DPID_PREFIX):]
    if len(digits) != 16:
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None


def decide(cert: Mapping[str, Any] | None, claimed: int, owner: Owner) -> Admission:
    """Accept the switch claiming `claimed` only if its certificate is a box certificate of the
    same box, and the config knows the id."""
    if not cert:
        return Admission(False, "no verified client certificate (OpenFlow must run over TLS with --ca-certs)", "")
    subject = subject_text(cert)
    named = certificate_dpid(cert)
    if named is None:
        return Admission(False, f"the certificate names no datapath id ({DPID_PREFIX}<16 hex digits>, "
                                f"OU={BOX_UNIT})", subject)
    claimed_owner = owner(claimed)
    if claimed_owner is None:
        return Admission(False, f"datapath id {claimed:016x} is unknown to the config", subject)
    if named != claimed and owner(named) != claimed_owner:
        return Admission(False, f"the certificate is for datapath id {named:016x}, not {claimed:016x} "
                                f"({claimed_owner})", subject)
    return Admission(True, f"certificate for {named:016x} ({claimed_owner})", subject)


def admit_switch(sock: object, claimed: int, owner: Owner) -> Admission:
    """decide() for the certificate the peer of sock presented (an ssl socket's getpeercert())."""
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return decide(None, claimed, owner)
    try:
        cert = getpeercert()
    except ValueError:  # the handshake never finished
        cert = None
    return decide(cert if isinstance(cert, Mapping) else None, claimed, owner)


def tls_mode(private_key: str | None, certificate: str | None, ca_certs: str | None) -> bool:
    """Whether Ryu serves OpenFlow over TLS with client certificates, from its --ctl-privkey,
    --ctl-cert and --ca-certs. Half a configuration would let every box in unauthenticated
    (Ryu asks for no client certificate without --ca-certs), so it is an error."""
    given = {"--ctl-privkey": private_key, "--ctl-cert": certificate, "--ca-certs": ca_certs}
    if not any(given.values()):
        return False
    missing = [option for option, value in given.items() if not value]
    if missing:
        raise ValueError(f"TLS needs all of --ctl-privkey, --ctl-cert and --ca-certs; missing {', '.join(missing)}")
    return True
