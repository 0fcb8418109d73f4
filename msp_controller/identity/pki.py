"""msp-pki: the certificate authority that ties each box to its datapath id.

    msp-pki init DIR [--force]                      the CA and the controller's key and certificate
    msp-pki box DIR --dpid 0x101 --name home1       a box's key and certificate, signed by the CA

Layout of DIR (private keys are 0600, their folders 0700):
    ca/cacert.pem  ca/private/cakey.pem
    controller/cert.pem  controller/key.pem
    boxes/<name>/cert.pem  boxes/<name>/key.pem  boxes/<name>/cacert.pem   (what the box needs)

A box's subject is O=msp, OU=msp-box, CN=dpid:<16 hex digits>, name=<name>: the controller
reads the datapath id from the CN (msp_controller/identity/binding.py). The work is done by
Debian's `openssl` command, so no Python dependency is added.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

from msp_controller.identity.binding import BOX_UNIT, dpid_common_name

RSA_BITS = 2048  # what every OVS build accepts
CA_DAYS, CERT_DAYS = 3650, 825
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class PkiError(Exception):
    """A refused request: the message names what is wrong; nothing was written."""


def parse_dpid(text: str) -> int:
    """0x101, 257, or OVS's 16 hex digits (0000000000000101) -> 257."""
    value = text.strip()
    try:
        dpid = int(value, 16) if re.fullmatch(r"[0-9a-fA-F]{16}", value) else int(value, 0)
    except ValueError:
        raise PkiError(f"--dpid {text!r} is not a datapath id (give 0x101, 257 or 16 hex digits)") from None
    if not 0 < dpid < 2**64:
        raise PkiError(f"--dpid {text!r} is out of range: a datapath id is 1..2^64-1")
    return dpid


def _openssl(*args: str) -> str:
    try:
        done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False, timeout=120)
    except FileNotFoundError:
        raise PkiError("the `openssl` command is missing (apt-get install openssl)") from None
    if done.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def _private_dir(path: pathlib.Path) -> pathlib.Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _new_key(path: pathlib.Path) -> None:
    """A fresh private key, 0600 from its first byte (umask), never readable by others."""
    old = os.umask(0o077)
    try:
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{RSA_BITS}", "-out", str(path))
    finally:
        os.umask(old)
    path.chmod(0o600)


def _subject(*parts: tuple[str, str]) -> str:
    for _, value in parts:
        if "/" in value or "=" in value:
            raise PkiError(f"{value!r} cannot go in a certificate subject ('/' and '=' are not allowed)")
    return "".join(f"/{key}={value}" for key, value in parts)


def _sign(ca_dir: pathlib.Path, key: pathlib.Path, cert: pathlib.Path, subject: str, usage: str) -> None:
    """A certificate for key, signed by the CA; usage is serverAuth or clientAuth."""
    with tempfile.TemporaryDirectory() as scratch:
        csr, extensions = pathlib.Path(scratch, "req.csr"), pathlib.Path(scratch, "ext.cnf")
        _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
        extensions.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                              f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_dir / "cacert.pem"),
                 "-CAkey", str(ca_dir / "private" / "cakey.pem"), "-CAserial", str(ca_dir / "serial"),
                 "-CAcreateserial", "-days", str(CERT_DAYS), "-sha256", "-extfile", str(extensions),
                 "-out", str(cert))


def init(directory: pathlib.Path, force: bool = False) -> None:
    """Make the CA and the controller's key and certificate in directory."""
    ca_dir = directory / "ca"
    if (ca_dir / "cacert.pem").exists() and not force:
        raise PkiError(f"{ca_dir / 'cacert.pem'} exists: a new CA would orphan every enrolled box "
                       "(give --force to replace it anyway)")
    _private_dir(ca_dir / "private")
    _new_key(ca_dir / "private" / "cakey.pem")
    _openssl("req", "-x509", "-new", "-key", str(ca_dir / "private" / "cakey.pem"), "-sha256",
             "-days", str(CA_DAYS), "-subj", _subject(("O", "msp"), ("OU", "msp-ca"), ("CN", "msp CA")),
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", str(ca_dir / "cacert.pem"))
    controller = _private_dir(directory / "controller")
    _new_key(controller / "key.pem")
    _sign(ca_dir, controller / "key.pem", controller / "cert.pem",
          _subject(("O", "msp"), ("OU", "msp-controller"), ("CN", "msp-controller")), "serverAuth")


def certificate_subject(cert: pathlib.Path) -> str:
    return _openssl("x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "RFC2253").strip()


def enrolled_dpid(cert: pathlib.Path) -> int | None:
    match = re.search(r"CN=dpid:([0-9a-f]{16})", certificate_subject(cert))
    return int(match.group(1), 16) if match else None


def box(directory: pathlib.Path, dpid: int, name: str, force: bool = False) -> bool:
    """Enrol a box: its key and certificate in boxes/<name>. Returns False when the box is
    already enrolled with this dpid (nothing is written)."""
    if not NAME.match(name):
        raise PkiError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (at most 63)")
    ca_dir = directory / "ca"
    if not (ca_dir / "cacert.pem").exists():
        raise PkiError(f"no CA in {directory}: run `msp-pki init {directory}` first")
    boxes = directory / "boxes"
    for other in sorted(boxes.glob("*/cert.pem")) if boxes.exists() else []:
        holder = other.parent.name
        if holder != name and enrolled_dpid(other) == dpid and not force:
            raise PkiError(f"datapath id {dpid:016x} is already enrolled as box {holder!r}: "
                           "two boxes cannot share an id")
    box_dir = boxes / name
    if (box_dir / "cert.pem").exists() and not force:
        current = enrolled_dpid(box_dir / "cert.pem")
        if current == dpid:
            return False
        shown = "none" if current is None else f"{current:016x}"
        raise PkiError(f"box {name!r} is enrolled with datapath id {shown}, not {dpid:016x} "
                       "(give --force to re-enrol it)")
    _private_dir(box_dir)
    _new_key(box_dir / "key.pem")
    _sign(ca_dir, box_dir / "key.pem", box_dir / "cert.pem",
          _subject(("O", "msp"), ("OU", BOX_UNIT), ("CN", dpid_common_name(dpid)), ("name", name)), "clientAuth")
    shutil.copyfile(ca_dir / "cacert.pem", box_dir / "cacert.pem")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="msp-pki", description="Certificates that tie boxes to datapath ids.")
    commands = parser.add_subparsers(dest="command", required=True)
    init_cmd = commands.add_parser("init", help="make the CA and the controller's certificate")
    init_cmd.add_argument("dir", type=pathlib.Path)
    init_cmd.add_argument("--force", action="store_true", help="replace an existing CA")
    box_cmd = commands.add_parser("box", help="enrol a box (edge or MSPMB) under its datapath id")
    box_cmd.add_argument("dir", type=pathlib.Path)
    box_cmd.add_argument("--dpid", required=True, help="the box's datapath id: 0x101, 257 or 16 hex digits")
    box_cmd.add_argument("--name", required=True, help="the box's name (its folder under boxes/)")
    box_cmd.add_argument("--force", action="store_true", help="re-enrol (new key) even if enrolled")
    args = parser.parse_args(argv)
    try:
        if args.command == "init":
            init(args.dir, args.force)
            print(f"CA: {args.dir / 'ca' / 'cacert.pem'}\ncontroller: {args.dir / 'controller'}/{{key,cert}}.pem")
        else:
            dpid = parse_dpid(args.dpid)
            made = box(args.dir, dpid, args.name, args.force)
            where = args.dir / "boxes" / args.name
            print(f"box {args.name} ({dpid:016x}): {where}/{{key,cert,cacert}}.pem"
                  + ("" if made else " (already enrolled; unchanged)"))
    except PkiError as err:
        print(f"msp-pki: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
