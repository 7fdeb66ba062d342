"""flask_stack.core.selfsigned on real files in a temporary directory: the
stand-in key, certificate and link of nginx and HAProxy, in one module run."""

from __future__ import annotations

import datetime
import importlib.util
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "selfsigned_module", ROOT / "collections/ansible_collections/flask_stack/core/plugins/modules/selfsigned.py"
)
mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mod)


def _app(tmp_path: Path, domains=("hello.example.org", "www.hello.example.org"), tls_mode="letsencrypt") -> dict:
    return {"name": "hello", "tls_dir": str(tmp_path / "tls" / "hello"), "domains": list(domains), "tls_mode": tls_mode}


def _run(app: dict, check_mode: bool = False, key_type: str = "ECC", days: int = 825):
    entry = mod.app_entry(app)
    assert isinstance(entry, dict), entry
    return mod.ensure(entry, key_type, days, 30, check_mode)


def _cert(app: dict) -> x509.Certificate:
    return x509.load_pem_x509_certificate((Path(app["tls_dir"]) / "cert" / "fullchain.pem").read_bytes())


def test_first_run_makes_key_certificate_and_link_then_nothing(tmp_path):
    app = _app(tmp_path)
    changed, _ = _run(app)
    base = Path(app["tls_dir"])
    assert set(changed) >= {str(base / "selfsigned/privkey.pem"), str(base / "selfsigned/fullchain.pem"), str(base / "cert")}
    assert stat.S_IMODE(os.stat(base / "selfsigned/privkey.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(base / "selfsigned").st_mode) == 0o700
    assert os.readlink(base / "cert") == str(base / "selfsigned")
    cert = _cert(app)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "hello.example.org"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["hello.example.org", "www.hello.example.org"]
    assert cert.issuer == cert.subject
    assert _run(app) == ([], [])


def test_new_domain_makes_the_certificate_again_with_the_same_key(tmp_path):
    app = _app(tmp_path)
    _run(app)
    key_before = (Path(app["tls_dir"]) / "selfsigned/privkey.pem").read_bytes()
    changed, why = _run(_app(tmp_path, domains=("hello.example.org", "api.example.org")))
    assert changed == [str(Path(app["tls_dir"]) / "selfsigned/fullchain.pem")]
    assert "names differ" in why[0]
    assert (Path(app["tls_dir"]) / "selfsigned/privkey.pem").read_bytes() == key_before


def test_certificate_ending_within_30_days_is_renewed(tmp_path):
    app = _app(tmp_path)
    _run(app, days=20)
    changed, why = _run(app)
    assert changed == [str(Path(app["tls_dir"]) / "selfsigned/fullchain.pem")]
    assert "ends within 30 days" in why[0]
    assert _cert(app).not_valid_after_utc > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=800)


def test_key_type_change_makes_a_new_pair(tmp_path):
    app = _app(tmp_path)
    _run(app)
    changed, _ = _run(app, key_type="RSA")
    key = serialization.load_pem_private_key((Path(app["tls_dir"]) / "selfsigned/privkey.pem").read_bytes(), None)
    assert key.key_size == 3072
    assert str(Path(app["tls_dir"]) / "selfsigned/fullchain.pem") in changed
    assert _run(app, key_type="RSA") == ([], [])


def _issued_lineage(app: dict) -> Path:
    """What the letsencrypt role leaves: cert -> a live lineage with a certificate."""
    base = Path(app["tls_dir"])
    live = base / "live"
    live.mkdir(parents=True)
    (live / "fullchain.pem").write_text("issued\n")
    if os.path.lexists(base / "cert"):
        os.unlink(base / "cert")
    os.symlink(live, base / "cert")
    return live


def test_issued_certificate_is_left_alone(tmp_path):
    app = _app(tmp_path)
    live = _issued_lineage(app)
    assert _run(app) == ([], [])
    assert os.readlink(Path(app["tls_dir"]) / "cert") == str(live)
    assert not (Path(app["tls_dir"]) / "selfsigned").exists()


def test_missing_issued_certificate_gets_the_stand_in(tmp_path):
    app = _app(tmp_path)
    live = _issued_lineage(app)
    (live / "fullchain.pem").unlink()
    changed, _ = _run(app)
    assert os.readlink(Path(app["tls_dir"]) / "cert") == str(Path(app["tls_dir"]) / "selfsigned")
    assert str(Path(app["tls_dir"]) / "cert") in changed


def test_tls_mode_selfsigned_takes_the_link_back(tmp_path):
    app = _app(tmp_path, tls_mode="selfsigned")
    _issued_lineage(app)
    _run(app)
    assert os.readlink(Path(app["tls_dir"]) / "cert") == str(Path(app["tls_dir"]) / "selfsigned")


def test_check_mode_writes_nothing(tmp_path):
    app = _app(tmp_path)
    changed, _ = _run(app, check_mode=True)
    assert changed
    assert not Path(app["tls_dir"]).exists()


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ({"name": "a", "tls_dir": "relative", "domains": ["a.example"]}, "tls_dir must be an absolute path"),
        ({"name": "a", "tls_dir": "/x", "domains": []}, "domains must be a non-empty list"),
    ],
)
def test_bad_entries_are_named(app, message):
    assert message in mod.app_entry(app)
