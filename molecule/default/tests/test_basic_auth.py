"""Basic auth on /admin/ (apps[].basic_auth): nginx asks for a password,
checks it against a bcrypt htpasswd file, never lets it reach the app,
keeps /healthz open, and fail2ban bans an address that keeps guessing.

The requests that must succeed run inside the web host to nginx on
127.0.0.1 (never banned: ignoreip); the guessing burst comes from the acme
container on the scenario network, and its ban is lifted at the end so
the later ACME tests can still reach the web host."""

from __future__ import annotations

import re
import time

import pytest
from conftest import ROOT_ON_WEB

testinfra_hosts = ["ansible://web"]

USER, PASSWORD = "ops", "molecule-admin-not-a-secret"
HTPASSWD = "/etc/nginx/htpasswd/hello.admin"
JAIL = "nginx-http-auth"

# Runs inside the acme container: `count` GETs of https://hello.test<path>
# with the given credentials, prints one status per line (0 = no connection).
_CLIENT = r"""
import base64, ssl, sys, urllib.request, urllib.error
path, user, password, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl._create_unverified_context()
for _ in range(count):
    req = urllib.request.Request("https://hello.test" + path)
    if user:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        status = urllib.request.urlopen(req, context=ctx, timeout=5).status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = 0
    print(status, flush=True)
"""


def curl(host, path: str, *auth: str):
    """GET https://hello.test<path> from the web host itself; returns (status, headers)."""
    args = ["-u", f"{auth[0]}:{auth[1]}"] if auth else []
    cmd = host.run(
        "curl -s -i -o - --max-time 10 --cacert %s --resolve hello.test:443:127.0.0.1 "
        + " ".join(["%s"] * len(args)) + " %s",
        ROOT_ON_WEB, *args, f"https://hello.test{path}",
    )
    assert cmd.rc == 0, cmd.stderr
    head = cmd.stdout.replace("\r\n", "\n").split("\n\n", 1)[0].split("\n")
    return int(head[0].split()[1]), head[1:]


def from_acme(acme_host, path: str, user: str, password: str, count: int) -> list[int]:
    cmd = acme_host.run("timeout 120 python3 -c %s %s %s %s %s", _CLIENT, path, user, password, str(count))
    assert cmd.rc == 0, cmd.stderr
    return [int(line) for line in cmd.stdout.split()]


def test_no_credentials_get_401_and_a_basic_challenge(host, pebble_root):
    status, headers = curl(host, "/admin/")
    assert status == 401
    assert any(re.fullmatch(r'(?i)www-authenticate: basic realm="Restricted"', h.strip()) for h in headers), headers


def test_right_credentials_get_the_page_and_a_secure_session_cookie(host, pebble_root):
    status, headers = curl(host, "/admin/", USER, PASSWORD)
    assert status == 200
    cookies = [h for h in headers if h.lower().startswith("set-cookie:")]
    assert len(cookies) == 1 and cookies[0].split(":", 1)[1].strip().startswith("session="), headers
    flags = {f.strip().split("=")[0].lower(): f.strip() for f in cookies[0].split(";")[1:]}
    assert "secure" in flags and "httponly" in flags, cookies
    assert re.fullmatch(r"(?i)samesite=(lax|strict)", flags.get("samesite", "")), cookies


def test_every_listed_user_gets_in(host, pebble_root):
    assert curl(host, "/admin/", "second-op", "molecule-second-admin")[0] == 200


@pytest.mark.parametrize(("user", "password"), [(USER, "wrong-password"), ("nobody", PASSWORD), (USER, "")])
def test_wrong_credentials_get_401(host, pebble_root, user, password):
    assert curl(host, "/admin/", user, password)[0] == 401


def test_the_health_path_needs_no_password(host, pebble_root):
    assert curl(host, "/healthz")[0] == 200
    # and the rest of the app stays public
    assert curl(host, "/")[0] == 200


def test_the_password_file_holds_bcrypt_hashes_readable_by_nginx_only(host):
    f = host.file(HTPASSWD)
    assert (f.user, f.group, f.mode) == ("root", "www-data", 0o640)
    lines = host.check_output("cat %s", HTPASSWD).splitlines()
    assert sorted(line.split(":", 1)[0] for line in lines) == ["ops", "second-op"]
    assert all(re.match(r"^[^:]+:\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$", line) for line in lines), lines
    assert PASSWORD not in "\n".join(lines)


def test_the_jail_reads_the_error_logs_nginx_writes(host):
    status = host.check_output("fail2ban-client status %s", JAIL)
    assert "/var/log/nginx/hello.error.log" in status, status
    # the log line the filter matches is the one nginx writes for a wrong password
    assert curl(host, "/admin/", USER, "wrong-password")[0] == 401
    log = host.check_output("tail -n 5 /var/log/nginx/hello.error.log")
    assert re.search(r'user "ops": password mismatch, client: 127\.0\.0\.1', log), log


@pytest.fixture
def acme_address(host, acme_host):
    address = acme_host.check_output("hostname -I").split()[0]
    yield address
    # lift the ban so that the ACME tests (HTTP-01 from this container) keep working
    host.run("fail2ban-client set %s unbanip %s", JAIL, address)
    assert from_acme(acme_host, "/healthz", "", "", 1) == [200]


def test_a_burst_of_wrong_passwords_gets_the_address_banned(host, acme_host, acme_address):
    assert from_acme(acme_host, "/healthz", "", "", 1) == [200]  # reachable before
    statuses = from_acme(acme_host, "/admin/", USER, "guess", 8)  # maxretry 5
    assert statuses[0] == 401, statuses
    deadline = time.monotonic() + 30
    banned = ""
    while acme_address not in banned and time.monotonic() < deadline:
        time.sleep(1)
        banned = host.check_output("fail2ban-client status %s", JAIL)
    assert re.search(rf"Banned IP list:.*\b{re.escape(acme_address)}\b", banned), banned
    # banned: not even the public health check answers that address now...
    assert from_acme(acme_host, "/healthz", "", "", 1) == [0]
    # ...while everyone else is still served
    assert curl(host, "/healthz")[0] == 200
