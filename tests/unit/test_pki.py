"""msp-pki makes a CA whose box certificates verify and name their datapath id."""
from __future__ import annotations

import pathlib
import shutil
import ssl
import stat
import subprocess

import pytest

from msp_controller.identity import binding, pki

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    directory = tmp_path_factory.mktemp("pki")
    assert pki.main(["init", str(directory)]) == 0
    assert pki.main(["box", str(directory), "--dpid", "0x101", "--name", "home1"]) == 0
    return directory


def verify(ca: pathlib.Path, cert: pathlib.Path, purpose: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile", str(ca), str(cert)],
                          capture_output=True, text=True, check=False)


def test_controller_and_box_certificates_verify_against_the_ca(pki_dir: pathlib.Path) -> None:
    ca = pki_dir / "ca" / "cacert.pem"
    assert verify(ca, pki_dir / "controller" / "cert.pem", "sslserver").returncode == 0
    assert verify(ca, pki_dir / "boxes" / "home1" / "cert.pem", "sslclient").returncode == 0
    # The box folder carries the CA certificate the box needs to check the controller.
    assert (pki_dir / "boxes" / "home1" / "cacert.pem").read_bytes() == ca.read_bytes()


def test_a_certificate_from_another_ca_does_not_verify(pki_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    pki.init(tmp_path)
    pki.box(tmp_path, 0x101, "home1")
    assert verify(pki_dir / "ca" / "cacert.pem", tmp_path / "boxes" / "home1" / "cert.pem",
                  "sslclient").returncode != 0


def test_the_box_subject_names_its_datapath_id(pki_dir: pathlib.Path) -> None:
    cert = pki_dir / "boxes" / "home1" / "cert.pem"
    subject = pki.certificate_subject(cert)
    assert "CN=dpid:0000000000000101" in subject and "OU=msp-box" in subject and "name=home1" in subject
    # What Python's ssl module reports for this certificate is what binding.py reads.
    decoded = ssl._ssl._test_decode_cert(str(cert))  # type: ignore[attr-defined]
    assert binding.certificate_dpid(decoded) == 0x101


def test_private_keys_are_readable_by_their_owner_only(pki_dir: pathlib.Path) -> None:
    for key in (pki_dir / "ca" / "private" / "cakey.pem", pki_dir / "controller" / "key.pem",
                pki_dir / "boxes" / "home1" / "key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_init_refuses_to_replace_a_ca_without_force(pki_dir: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (pki_dir / "ca" / "cacert.pem").read_bytes()
    assert pki.main(["init", str(pki_dir)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (pki_dir / "ca" / "cacert.pem").read_bytes() == before


def test_enrolling_the_same_box_again_changes_nothing(pki_dir: pathlib.Path) -> None:
    cert = pki_dir / "boxes" / "home1" / "cert.pem"
    before = cert.read_bytes()
    assert pki.box(pki_dir, 0x101, "home1") is False
    assert cert.read_bytes() == before


@pytest.mark.parametrize("dpid, name, problem", [
    (0x102, "home1", "enrolled with datapath id 0000000000000101"),  # same name, other id
    (0x101, "home2", "already enrolled as box 'home1'"),  # same id, other name
    (0x103, "bad/name", "--name"),
])
def test_conflicting_enrolments_are_refused(pki_dir: pathlib.Path, dpid: int, name: str, problem: str) -> None:
    with pytest.raises(pki.PkiError, match=problem):
        pki.box(pki_dir, dpid, name)
    assert not (pki_dir / "boxes" / name / "cert.pem").exists() or name == "home1"


@pytest.mark.parametrize("text, value", [("0x101", 0x101), ("257", 257), ("0000000000000101", 0x101),
                                         ("0xffffffffffffffff", 2**64 - 1)])
def test_datapath_ids_in_the_usual_spellings(text: str, value: int) -> None:
    assert pki.parse_dpid(text) == value


@pytest.mark.parametrize("text, problem", [("home1", "is not a datapath id"), ("0x", "is not a datapath id"),
                                           ("0", "out of range"), ("-5", "out of range"),
                                           ("0x10000000000000000", "out of range")])
def test_bad_datapath_ids_get_a_clear_error(text: str, problem: str, tmp_path: pathlib.Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(pki.PkiError, match=problem):
        pki.parse_dpid(text)
    assert pki.main(["box", str(tmp_path), "--dpid", text, "--name", "x"]) == 2
    assert f"--dpid {text!r}" in capsys.readouterr().err
    assert not (tmp_path / "boxes").exists()


def test_a_box_needs_a_ca_first(tmp_path: pathlib.Path) -> None:
    with pytest.raises(pki.PkiError, match="msp-pki init"):
        pki.box(tmp_path, 0x101, "home1")
