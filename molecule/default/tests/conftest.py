"""Helpers for the testinfra checks: HTTP(S) requests made inside the web host,
to nginx on 127.0.0.1, as a user would with curl; TLS probes from this
machine through the ports the scenario publishes on 127.0.0.1; and Pebble's
root certificate, which the issued certificates chain up to."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import testinfra

# Published on 127.0.0.1 by molecule.yml (same variables, same defaults).
HTTPS_PORT = int(os.environ.get("MOLECULE_WEB_HTTPS_PORT", "18443"))
HTTP_PORT = int(os.environ.get("MOLECULE_WEB_HTTP_PORT", "18080"))
ACME_DIRECTORY = "https://acme:14000/dir"
# Where the tests keep Pebble's root on the web host.
ROOT_ON_WEB = "/root/molecule-pebble-root.pem"


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    curl_rc: int = 0

    def json(self):
        return json.loads(self.body)


def _parse(raw: str, rc: int) -> Response:
    if rc != 0 or not raw:
        return Response(status=0, curl_rc=rc)
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        key = key.strip().lower()
        # a repeated header is folded into one, as HTTP allows
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return Response(status=status, headers=headers, body=body)


def _inventory(pytestconfig) -> str:
    return pytestconfig.option.ansible_inventory


@pytest.fixture(scope="session")
def web_host(pytestconfig):
    """The web host (group web), for session-scoped fixtures."""
    (web,) = testinfra.get_hosts(["ansible://web"], ansible_inventory=_inventory(pytestconfig), connection="ansible")
    return web


@pytest.fixture(scope="session")
def acme_host(pytestconfig):
    """The container that runs Pebble."""
    (acme,) = testinfra.get_hosts(["ansible://acme"], ansible_inventory=_inventory(pytestconfig), connection="ansible")
    return acme


def fetch_pebble_root(web_host, dest: Path) -> Path:
    """Pebble's current root certificate (a new one at every Pebble start),
    fetched from its management endpoint by the web host through the CA
    bundle the letsencrypt role installed; kept on the web host and at dest."""
    cmd = web_host.run(
        "curl -sS --fail --retry 5 --retry-connrefused --retry-delay 1 --max-time 10"
        " --cacert /etc/flask-stack/acme-ca.pem -o %s https://acme:15000/roots/0 && cat %s",
        ROOT_ON_WEB, ROOT_ON_WEB,
    )
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.startswith("-----BEGIN CERTIFICATE-----")
    dest.write_text(cmd.stdout)
    return dest


@pytest.fixture(scope="session")
def pebble_root(web_host, tmp_path_factory) -> Path:
    """Pebble's root as the scenario's converge left it."""
    return fetch_pebble_root(web_host, tmp_path_factory.mktemp("pebble") / "root.pem")


@pytest.fixture
def http(host, pebble_root):
    """http(path, domain, scheme='https') -> Response, fetched through nginx on
    127.0.0.1 inside the web host; HTTPS is verified against Pebble's root."""

    def get(path: str, domain: str, scheme: str = "https") -> Response:
        if scheme == "https":
            cmd = host.run(
                "curl -s -i --max-time 10 --cacert %s --resolve %s %s",
                ROOT_ON_WEB, f"{domain}:443:127.0.0.1", f"https://{domain}{path}",
            )
        else:
            cmd = host.run(
                "curl -s -i --max-time 10 -H %s %s", f"Host: {domain}", f"http://127.0.0.1{path}"
            )
        return _parse(cmd.stdout, cmd.rc)

    return get


@dataclass
class TLSInfo:
    version: str
    alpn: str | None
    serial: str
    subject: dict
    issuer: dict
    san: list[str]
    not_after: str


def tls_context(cafile: Path | None, alpn=("h2", "http/1.1")) -> ssl.SSLContext:
    """A client context offering alpn: with a cafile it verifies the chain
    and the name; without, it accepts any certificate (to look at it)."""
    if cafile is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def tls_probe(domain: str, cafile: Path | None, port: int = HTTPS_PORT, alpn=("h2", "http/1.1")) -> TLSInfo:
    """One TLS handshake from this machine to 127.0.0.1:port with SNI domain.
    With a cafile the chain and the name are verified (ssl.SSLError if not)."""
    ctx = tls_context(cafile, alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=domain) as tls:
            der = tls.getpeercert(binary_form=True)
            info = _decode(der)
            return TLSInfo(version=tls.version(), alpn=tls.selected_alpn_protocol(), **info)


def _decode(der: bytes) -> dict:
    """Decode a certificate with the openssl CLI (ssl's getpeercert() returns
    nothing for an unverified peer)."""
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-serial", "-subject", "-issuer", "-enddate", "-ext", "subjectAltName",
         "-nameopt", "RFC2253"],
        input=pem, capture_output=True, text=True, check=True,
    ).stdout
    lines = out.splitlines()
    fields = {}
    san: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith(("serial=", "subject=", "issuer=", "notAfter=")):
            key, _, value = line.partition("=")
            fields[key] = value.strip()
        elif "Subject Alternative Name" in line and i + 1 < len(lines):
            san = [part.strip().removeprefix("DNS:") for part in lines[i + 1].split(",")]

    def rdns(value: str) -> dict:
        return dict(part.split("=", 1) for part in value.split(",") if "=" in part)

    return {
        "serial": fields["serial"],
        "subject": rdns(fields.get("subject", "")),
        "issuer": rdns(fields.get("issuer", "")),
        "san": san,
        "not_after": fields.get("notAfter", ""),
    }


@pytest.fixture
def marker() -> str:
    """A unique string to find one request in the logs."""
    return uuid.uuid4().hex
