"""HTTPS as a user (and an auditor) would check it: a certificate from the
ACME CA (Pebble here, Let's Encrypt in production) for every domain, HTTP
redirected, HTTP/2, Mozilla's intermediate TLS profile, security headers, and
a renewal through certbot.timer's own service that no client notices.

Most probes run from this machine through the ports published on 127.0.0.1;
some from inside the web host."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import subprocess
import threading
import time

import pytest
from conftest import HTTP_PORT, HTTPS_PORT, ROOT_ON_WEB, tls_probe

testinfra_hosts = ["ansible://web"]

APPS = {"hello": ["hello.test", "www.hello.test"], "second": ["second.test"]}
DOMAINS = [(domain, name) for name, domains in APPS.items() for domain in domains]


def s_client(*args: str, domain: str | None = "hello.test") -> subprocess.CompletedProcess:
    """openssl s_client from this machine to the published HTTPS port."""
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{HTTPS_PORT}"]
    cmd += ["-servername", domain] if domain else ["-noservername"]
    return subprocess.run([*cmd, *args], input="", capture_output=True, text=True, timeout=30)


# --- the certificate ------------------------------------------------------------

@pytest.mark.parametrize(("domain", "name"), DOMAINS)
def test_certificate_chains_to_the_ca_root_and_covers_every_domain_of_the_app(pebble_root, domain, name):
    info = tls_probe(domain, pebble_root)  # verifies the chain and the name, or raises
    assert sorted(info.san) == sorted(APPS[name])
    assert "Pebble" in info.issuer.get("CN", ""), info.issuer  # issued by the CA, not self-signed


def test_openssl_verifies_the_served_chain(pebble_root):
    out = s_client("-CAfile", str(pebble_root), "-verify_return_error", "-verify_hostname", "hello.test")
    assert out.returncode == 0, out.stderr
    assert "Verify return code: 0 (ok)" in out.stdout


@pytest.mark.parametrize(("domain", "name"), DOMAINS)
def test_https_from_the_web_host_itself(host, pebble_root, domain, name):
    cmd = host.run(
        "curl -sS -o /dev/null -w '%%{http_code} %%{ssl_verify_result} %%{http_version}' --max-time 10 "
        "--cacert %s --resolve %s https://%s/healthz",
        ROOT_ON_WEB, f"{domain}:443:127.0.0.1", domain,
    )
    assert cmd.stdout == "200 0 2", cmd.stderr


@pytest.mark.parametrize("name", sorted(APPS))
def test_nginx_reads_the_lets_encrypt_lineage_of_the_app(host, name):
    link = host.file(f"/etc/flask-stack/tls/{name}/cert")
    assert link.is_symlink
    assert link.linked_to == f"/etc/letsencrypt/live/{name}"
    assert host.file(f"/etc/flask-stack/tls/{name}/cert/fullchain.pem").linked_to.startswith(
        f"/etc/letsencrypt/archive/{name}/"
    )
    listing = host.run("certbot certificates --cert-name %s", name)
    assert listing.rc == 0
    domains = re.search(r"Domains: (.+)", listing.stdout).group(1).split()
    assert sorted(domains) == sorted(APPS[name])


@pytest.mark.parametrize("name", sorted(APPS))
def test_private_keys_are_readable_by_root_only(host, name):
    for path in (f"/etc/flask-stack/tls/{name}/cert/privkey.pem", f"/etc/flask-stack/tls/{name}/selfsigned/privkey.pem"):
        key = host.file(host.file(path).linked_to)
        assert key.user == "root", path
        assert key.mode & 0o077 == 0, f"{path}: {oct(key.mode)}"
    assert host.file(f"/etc/flask-stack/tls/{name}/selfsigned").mode == 0o700


def test_unknown_server_names_get_no_certificate():
    for domain in ("unknown.example", None):  # another name, and no SNI at all
        out = s_client(domain=domain)
        assert out.returncode != 0, domain
        assert "BEGIN CERTIFICATE" not in out.stdout, domain
        # refused by nginx itself (ssl_reject_handshake), not a dead port
        assert re.search(r"unrecognized name.*SSL alert number 112", out.stderr), (domain, out.stderr)


# --- HTTP -> HTTPS ------------------------------------------------------------------

@pytest.mark.parametrize(("domain", "name"), DOMAINS)
def test_http_redirects_to_https_permanently(http, domain, name):
    r = http("/api/add?a=1&b=2", domain, scheme="http")
    assert r.status == 301
    assert r.headers["location"] == f"https://{domain}/api/add?a=1&b=2"


def test_http_redirect_seen_from_this_machine():
    conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=10)
    conn.request("GET", "/healthz", headers={"Host": "www.hello.test"})
    resp = conn.getresponse()
    assert resp.status == 301
    assert resp.getheader("Location") == "https://www.hello.test/healthz"


def test_acme_challenge_path_is_answered_over_plain_http(host, http, marker):
    token = f"/var/www/acme-challenge/.well-known/acme-challenge/molecule-{marker}"
    host.run("mkdir -p /var/www/acme-challenge/.well-known/acme-challenge && echo %s > %s", marker, token)
    try:
        for domain in ("hello.test", "second.test"):
            r = http(f"/.well-known/acme-challenge/molecule-{marker}", domain, scheme="http")
            assert r.status == 200, domain
            assert r.body.strip() == marker
    finally:
        host.run("rm -f %s", token)


# --- protocol -------------------------------------------------------------------------

def test_http2_is_negotiated(pebble_root):
    assert tls_probe("hello.test", pebble_root).alpn == "h2"
    out = subprocess.run(
        ["curl", "-sS", "--http2", "--max-time", "10", "--cacert", str(pebble_root),
         "--resolve", f"hello.test:{HTTPS_PORT}:127.0.0.1", "-o", "/dev/null", "-w", "%{http_version}",
         f"https://hello.test:{HTTPS_PORT}/healthz"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.stdout == "2", out.stderr


@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_tls_1_0_and_1_1_are_refused_by_the_server(version):
    # SECLEVEL=0 lets this OpenSSL 3 client offer the old protocol, so the
    # refusal has to come from nginx (a protocol_version alert).
    out = s_client(version, "-cipher", "DEFAULT:@SECLEVEL=0")
    assert out.returncode != 0
    assert "alert protocol version" in out.stderr, out.stderr


@pytest.mark.parametrize(("version", "label"), [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_tls_1_2_and_1_3_are_accepted(version, label):
    out = s_client(version)
    assert out.returncode == 0, out.stderr
    assert f"Protocol  : {label}" in out.stdout or f"New, {label}," in out.stdout


@pytest.mark.parametrize("suite", ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-CCM"])
def test_tls_1_2_refuses_non_aead_suites(suite):
    out = s_client("-tls1_2", "-cipher", f"{suite}:@SECLEVEL=0")
    assert out.returncode != 0, f"{suite} was accepted"
    # the server answered, with a handshake_failure alert: no suite in common
    assert re.search(r"alert handshake failure.*SSL alert number 40", out.stderr), out.stderr


@pytest.mark.parametrize("suite", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"])
def test_tls_1_2_accepts_the_ecdhe_aead_suites(suite):
    out = s_client("-tls1_2", "-cipher", suite)
    assert out.returncode == 0, out.stderr
    assert suite in out.stdout


# --- headers ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/healthz", "/static/style.css", "/static/favicon.svg", "/api/nope", "/static/nope"])
def test_security_headers_are_on_every_response(http, path):
    r = http(path, "hello.test")
    assert r.status in (200, 404), r
    h = r.headers
    # the README: HSTS for 2 years (nginx_hsts_max_age 63072000, includeSubDomains off by default)
    assert h.get("strict-transport-security") == "max-age=63072000", h.get("strict-transport-security")
    assert h.get("x-content-type-options") == "nosniff"
    assert h.get("x-frame-options") == "DENY"
    assert h.get("referrer-policy") == "strict-origin-when-cross-origin"
    csp = h.get("content-security-policy", "")
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "base-uri 'self'", "form-action 'self'"):
        assert directive in csp, csp
    if path.startswith("/static/") and r.status == 200:
        assert h.get("cache-control") == "public, max-age=2592000"


def test_the_apps_own_pages_satisfy_the_content_security_policy(http):
    page = http("/", "hello.test")
    assert page.status == 200
    html = page.body
    # nothing inline that default-src 'self' would block
    assert not re.search(r"<script(?![^>]*\bsrc=)", html, re.I)
    assert "<style" not in html.lower()
    assert not re.search(r"\sstyle=|\son[a-z]+=", html, re.I)
    # every resource is same-origin, and loads
    resources = re.findall(r'<(?:link|script|img)[^>]+(?:href|src)="([^"]+)"', html, re.I)
    assert resources, "the page loads no resources; the check would be void"
    for url in resources:
        assert url.startswith("/") and not url.startswith("//"), url
        assert http(url, "hello.test").status == 200, url


# --- renewal ----------------------------------------------------------------------------

def test_renewal_is_scheduled_by_certbot_timer_alone(host):
    timer = host.service("certbot.timer")
    assert timer.is_enabled and timer.is_running
    env = host.run("systemctl show -p Environment --value certbot.service").stdout
    assert "REQUESTS_CA_BUNDLE=/etc/flask-stack/acme-ca.pem" in env
    hook = host.file("/etc/letsencrypt/renewal-hooks/deploy/50-reload-nginx")
    assert hook.mode == 0o755 and hook.user == "root"
    assert "nginx -t" in hook.content_string and "systemctl reload nginx" in hook.content_string
    # Debian's cron entry stands down when systemd runs: the timer is the only scheduler
    assert r"\! -d /run/systemd/system" in host.file("/etc/cron.d/certbot").content_string
    others = host.run("grep -rls certbot /etc/crontab /etc/cron.hourly /etc/cron.daily /var/spool/cron").stdout.split()
    assert others == []


def _fetch(root, domain: str = "hello.test") -> tuple[int, str]:
    """One HTTPS request on a new connection (a new handshake each time):
    status and the serial of the certificate that was served."""
    ctx = ssl.create_default_context(cafile=str(root))
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=domain) as tls:
            serial = tls.getpeercert()["serialNumber"].lstrip("0")
            tls.sendall(f"GET /healthz HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n".encode())
            status_line = tls.recv(4096).split(b"\r\n", 1)[0].decode()
            return int(status_line.split()[1]), serial


def test_renewal_through_certbot_service_is_served_without_a_failed_request(host, pebble_root):
    """certbot.timer starts certbot.service; start that same service (its CA
    bundle drop-in included) with --force-renewal added, under load."""
    _, before = _fetch(pebble_root)
    dropin = "/run/systemd/system/certbot.service.d/zz-molecule-force.conf"
    exec_start = host.run("systemctl show -p ExecStart --value certbot.service").stdout
    argv = re.search(r"argv\[\]=([^;]+);", exec_start).group(1).strip()
    host.run("mkdir -p /run/systemd/system/certbot.service.d")
    host.run("printf %s > %s", f"[Service]\nExecStart=\nExecStart={argv} --force-renewal\n", dropin)
    host.run("systemctl daemon-reload")

    results: list[tuple[float, int, str, str]] = []
    stop = threading.Event()

    def load() -> None:  # bounded: 200 requests or 30 s
        deadline = time.monotonic() + 30
        while len(results) < 200 and time.monotonic() < deadline and not stop.is_set():
            try:
                status, serial = _fetch(pebble_root)
                results.append((time.monotonic(), status, serial, ""))
            except (OSError, ssl.SSLError, ValueError, IndexError) as exc:
                results.append((time.monotonic(), 0, "", repr(exc)))
            time.sleep(0.05)

    worker = threading.Thread(target=load)
    try:
        worker.start()
        time.sleep(1)
        renew = host.run("systemctl start certbot.service")
        time.sleep(1.5)
    finally:
        stop.set()
        worker.join(40)
        host.run("rm -f %s && systemctl daemon-reload", dropin)

    journal = host.run("journalctl -u certbot.service --no-pager -n 30 -o cat").stdout
    assert renew.rc == 0, journal
    _, after = _fetch(pebble_root)
    failures = [r for r in results if r[1] != 200]
    serials = [r[2] for r in results if r[1] == 200]
    assert after != before, "the served certificate did not change"
    assert len(results) >= 20, f"only {len(results)} requests; the check would be void"
    assert failures == [], failures[:5]
    assert before in serials and after in serials, "the requests did not span the reload"
    print(f"renewal under load: {len(results)} requests, 0 failed, serial {before} -> {after}")
