#!/usr/bin/python
"""Self-signed stand-in certificates for the TLS servers (nginx, HAProxy), all
apps of a host in one module run."""

from __future__ import annotations

DOCUMENTATION = r"""
module: selfsigned
short_description: Keep a self-signed key and certificate per app, and the app's certificate link
description:
  - For each app of O(apps), keeps C(<tls_dir>/selfsigned/privkey.pem) (mode 0600) and
    C(<tls_dir>/selfsigned/fullchain.pem), a self-signed certificate for the app's domains,
    and points the link C(<tls_dir>/cert) at C(<tls_dir>/selfsigned) where nothing better exists.
  - "Where C(<tls_dir>/cert) already leads to another certificate (the Let's Encrypt lineage)
    and the app's C(tls_mode) is not C(selfsigned), the app is left alone: no stand-in
    is made or renewed."
  - A certificate is made again when it is missing, ends within O(renew_within_days),
    names other hosts than the app's domains, or does not belong to the key.
  - One module run for every app of the host (the community.crypto modules take five).
options:
  apps:
    description:
      - The apps, as the apps model gives them (the flask_stack_apps filter). Read of each
        are C(tls_dir) (the app's TLS directory, root only), C(domains) (the certificate's
        names; the first is its common name) and C(tls_mode) (C(selfsigned) keeps the
        link on the stand-in even where it leads to another certificate).
    type: list
    elements: dict
    required: true
  key_type:
    description: C(ECC) (P-256) or C(RSA) (3072 bits).
    type: str
    choices: [ECC, RSA]
    default: ECC
  days:
    description: Validity of a new certificate, in days.
    type: int
    default: 825
  renew_within_days:
    description: Make the certificate again when it ends within this many days.
    type: int
    default: 30
requirements: [python3-cryptography on the host]
author: flask-stack
"""

EXAMPLES = r"""
- name: Self-signed stand-ins
  flask_stack.core.selfsigned:
    apps:
      - tls_dir: /etc/flask-stack/tls/hello
        domains: [hello.example.org, www.hello.example.org]
        tls_mode: letsencrypt
  notify: Reload nginx
"""

RETURN = r"""
changed_paths:
  description: Files and links written (keys are never returned, only their paths).
  type: list
  elements: str
  returned: always
"""

import datetime
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - reported by the module
    HAS_CRYPTOGRAPHY = False


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _not_after(cert) -> datetime.datetime:
    """The certificate's end as naive UTC (cryptography < 42 has no *_utc)."""
    value = getattr(cert, "not_valid_after_utc", None)
    return value.replace(tzinfo=None) if value is not None else cert.not_valid_after


def _write_atomic(path: str, data: bytes, mode: int) -> None:
    """Write `data` to `path` through a temporary file in the same directory,
    with its mode set before it gets its name."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".flask-stack-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _link_atomic(target: str, path: str) -> None:
    tmp = path + ".flask-stack-new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.rename(tmp, path)


def key_matches(key, key_type: str) -> bool:
    if key_type == "RSA":
        return isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    return isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"


def new_key(key_type: str):
    if key_type == "RSA":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return ec.generate_private_key(ec.SECP256R1())


def _public_bytes(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_problem(cert, key, common_name: str, domains: list[str], renew_within_days: int, now=None) -> str | None:
    """Why `cert` must be made again, or None when it is fine."""
    now = now or _utcnow()
    if _public_bytes(key) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return "it does not belong to the key"
    if _not_after(cert) <= now + datetime.timedelta(days=renew_within_days):
        return f"it ends within {renew_within_days} days"
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [common_name]:
        return "its common name differs"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        have = []
    if sorted(have) != sorted(domains):
        return "its names differ"
    return None


def new_cert(key, common_name: str, domains: list[str], days: int, now=None):
    now = now or _utcnow()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in domains]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    return builder.sign(key, hashes.SHA256())


def app_entry(app: dict) -> dict | str:
    """What ensure() needs from one app of the apps model, or why it cannot."""
    domains = app.get("domains")
    if not isinstance(app.get("tls_dir"), str) or not app["tls_dir"].startswith("/"):
        return f"apps entry {app.get('name', '?')!r}: tls_dir must be an absolute path"
    if not isinstance(domains, list) or not domains or not all(isinstance(d, str) and d for d in domains):
        return f"apps entry {app.get('name', '?')!r}: domains must be a non-empty list of names"
    return {
        "dir": app["tls_dir"],
        "common_name": domains[0],
        "domains": list(domains),
        "always": app.get("tls_mode") == "selfsigned",
    }


def ensure(entry: dict, key_type: str, days: int, renew_within_days: int, check_mode: bool) -> tuple[list[str], list[str]]:
    """Bring one entry in line; returns (changed paths, reasons)."""
    base = entry["dir"]
    link = os.path.join(base, "cert")
    standin = os.path.join(base, "selfsigned")
    if not entry["always"] and os.path.exists(os.path.join(link, "fullchain.pem")) and os.path.realpath(link) != os.path.realpath(standin):
        return [], []
    changed, why = [], []
    for directory in (base, standin):
        if not os.path.isdir(directory):
            changed.append(directory)
            if not check_mode:
                os.makedirs(directory, mode=0o700, exist_ok=True)
        elif directory == standin and (os.stat(directory).st_mode & 0o777) != 0o700:
            changed.append(directory)
            if not check_mode:
                os.chmod(directory, 0o700)
    key_path = os.path.join(standin, "privkey.pem")
    cert_path = os.path.join(standin, "fullchain.pem")
    key = None
    if os.path.exists(key_path):
        with open(key_path, "rb") as handle:
            try:
                key = serialization.load_pem_private_key(handle.read(), password=None)
            except ValueError:
                key = None
        if key is not None and not key_matches(key, key_type):
            key = None
        if key is not None and (os.stat(key_path).st_mode & 0o777) != 0o600:
            changed.append(key_path)
            if not check_mode:
                os.chmod(key_path, 0o600)
    if key is None:
        key = new_key(key_type)
        changed.append(key_path)
        why.append(f"{key_path}: new {key_type} key")
        if not check_mode:
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            _write_atomic(key_path, pem, 0o600)
    problem = "it is missing"
    if os.path.exists(cert_path) and cert_path not in changed:
        with open(cert_path, "rb") as handle:
            try:
                problem = cert_problem(
                    x509.load_pem_x509_certificate(handle.read()), key, entry["common_name"], entry["domains"], renew_within_days
                )
            except ValueError:
                problem = "it is not a PEM certificate"
    if problem:
        changed.append(cert_path)
        why.append(f"{cert_path}: made again ({problem})")
        if not check_mode:
            cert = new_cert(key, entry["common_name"], entry["domains"], days)
            _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    if not (os.path.islink(link) and os.readlink(link) == standin):
        changed.append(link)
        why.append(f"{link} -> {standin}")
        if not check_mode:
            _link_atomic(standin, link)
    return changed, why


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "apps": {"type": "list", "elements": "dict", "required": True},
            "key_type": {"type": "str", "choices": ["ECC", "RSA"], "default": "ECC"},
            "days": {"type": "int", "default": 825},
            "renew_within_days": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg="flask_stack.core.selfsigned needs python3-cryptography on the host")
    changed_paths, reasons = [], []
    for app in module.params["apps"]:
        entry = app_entry(app)
        if isinstance(entry, str):
            module.fail_json(msg=entry)
        try:
            paths, why = ensure(
                entry, module.params["key_type"], module.params["days"], module.params["renew_within_days"], module.check_mode
            )
        except OSError as err:
            module.fail_json(msg=f"self-signed certificate in {entry['dir']}: {err}", changed_paths=changed_paths)
        changed_paths += paths
        reasons += why
    module.exit_json(changed=bool(changed_paths), changed_paths=changed_paths, reasons=reasons)


if __name__ == "__main__":
    main()
