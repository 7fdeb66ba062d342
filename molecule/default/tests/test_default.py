"""What a user would check by hand on a freshly converged web host.

Pages are fetched over HTTPS (certificates verified against the scenario's
ACME CA); the TLS specifics are in test_tls.py."""

from __future__ import annotations

import re

import pytest

testinfra_hosts = ["ansible://web"]

APPS = {"hello": ["hello.test", "www.hello.test"], "second": ["second.test"]}


# --- the sample app through nginx -------------------------------------------

def test_home_page_is_html(http):
    r = http("/", "hello.test")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "<html" in r.body.lower()
    assert "/static/style.css" in r.body


def test_every_domain_of_an_app_answers(http):
    for domain in APPS["hello"]:
        assert http("/healthz", domain).status == 200, domain


def test_api_add(http):
    r = http("/api/add?a=5&b=6", "hello.test")
    assert r.status == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"status": "OK", "sum": 11}


def test_api_add_rejects_bad_input_with_json_400(http):
    r = http("/api/add?a=x", "hello.test")
    assert r.status == 400
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["status"] == "error"


def test_unknown_api_path_is_json_404(http):
    r = http("/api/nope", "hello.test")
    assert r.status == 404
    assert r.json()["status"] == "error"


def test_healthz_reports_the_running_release(host, http):
    r = http("/healthz", "hello.test")
    assert r.status == 200
    body = r.json()
    assert body["status"] == "OK"
    current = host.file("/srv/apps/hello/current")
    assert current.is_symlink
    release_id = current.linked_to.rsplit("/", 1)[-1]
    assert body["release"] == release_id


def test_forwarding_headers_reach_the_app(http):
    r = http("/api/whoami", "hello.test")
    assert r.status == 200
    assert r.json()["client"] == "127.0.0.1"
    assert r.json()["scheme"] == "https"


def test_static_file_is_served_by_nginx_with_cache_headers(host, http, marker):
    r = http(f"/static/style.css?{marker}", "hello.test")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/css")
    assert r.headers.get("cache-control") == "public, max-age=2592000"
    # gunicorn logs every request it serves to the journal; this one it never saw
    api = http(f"/api/add?a=1&b=2&m={marker}", "hello.test")
    assert api.status == 200
    log = host.run("journalctl -u gunicorn-hello.service --no-pager -o cat --since -5min").stdout
    assert f"m={marker}" in log, "gunicorn access log not found; the check below would be void"
    assert f"style.css?{marker}" not in log


def test_unknown_host_gets_no_answer(http):
    r = http("/", "unknown.example", scheme="http")
    assert r.status == 0
    assert r.curl_rc == 52  # empty reply: nginx closed the connection (444)


def test_server_does_not_advertise_its_version(http):
    r = http("/healthz", "hello.test")
    assert r.headers["server"] == "nginx"


# --- two apps, two sockets, two units ---------------------------------------

@pytest.mark.parametrize("name", sorted(APPS))
def test_each_app_answers_through_its_own_unit(host, http, marker, name):
    for domain in APPS[name]:
        assert http(f"/healthz?m={marker}", domain).status == 200
    own = host.run(f"journalctl -u gunicorn-{name}.service --no-pager -o cat --since -5min").stdout
    assert f"m={marker}" in own
    for other in set(APPS) - {name}:
        log = host.run(f"journalctl -u gunicorn-{other}.service --no-pager -o cat --since -5min").stdout
        assert f"m={marker}" not in log


@pytest.mark.parametrize("name", sorted(APPS))
def test_socket_and_service_are_active_and_enabled(host, name):
    for unit in (f"gunicorn-{name}.socket", f"gunicorn-{name}.service"):
        svc = host.service(unit)
        assert svc.is_running, unit
        assert svc.is_enabled, unit


@pytest.mark.parametrize("name", sorted(APPS))
def test_socket_only_lets_nginx_connect(host, name):
    sock = host.file(f"/run/gunicorn/{name}.sock")
    assert sock.is_socket
    assert sock.user == "www-data"
    assert sock.mode == 0o600
    probe = "curl -s -o /dev/null -w %{http_code} --unix-socket " + f"/run/gunicorn/{name}.sock http://x/healthz"
    assert host.run(f"runuser -u www-data -- {probe}").stdout == "200"
    refused = host.run(f"runuser -u nobody -- {probe}")
    assert refused.stdout in ("000", "")
    assert refused.rc != 0


@pytest.mark.parametrize("name", sorted(APPS))
def test_gunicorn_runs_as_the_apps_own_unprivileged_user(host, name):
    pids = host.run(f"systemctl show -p MainPID --value gunicorn-{name}.service").stdout.strip()
    assert pids not in ("", "0")
    procs = host.run(f"ps -o user:32=,args= --ppid {pids} -p {pids}").stdout.strip().splitlines()
    assert len(procs) >= 2  # master + at least one worker
    for line in procs:
        assert line.split()[0] == f"app-{name}", line
    user = host.user(f"app-{name}")
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000  # a system user
    assert f"/srv/apps/{name}/current/.python/bin/python" in procs[0]


def test_workers_setting_is_applied(host):
    workers = host.run("pgrep -c -u app-second -f 'gunicorn'").stdout.strip()
    assert int(workers) == 3  # master + workers: 2


def test_app_restarts_after_a_crash(host, http):
    old = host.run("systemctl show -p MainPID --value gunicorn-second.service").stdout.strip()
    host.run(f"kill -9 {old}")
    for _ in range(30):
        new = host.run("systemctl show -p MainPID --value gunicorn-second.service").stdout.strip()
        if new not in ("0", old) and http("/healthz", "second.test").status == 200:
            break
        host.run("sleep 0.5")
    assert new not in ("0", old)
    assert http("/healthz", "second.test").status == 200


def test_preload_imports_the_app_in_the_master_before_the_fork(host):
    """apps[].preload: second's gunicorn master has imported the app (the C
    extension its Flask stack loads, markupsafe's speedups, is mapped in the
    master itself); hello's master, preload off, never imports the app (only
    its workers do)."""
    def master_maps(unit):
        pid = host.check_output("systemctl show -p MainPID --value %s", unit).strip()
        assert pid not in ("", "0"), unit
        return host.check_output("cat /proc/%s/maps", pid)
    assert "markupsafe/_speedups" in master_maps("gunicorn-second.service")
    assert "markupsafe/_speedups" not in master_maps("gunicorn-hello.service")
    assert "--preload" in host.check_output("systemctl show -p ExecStart --value gunicorn-second.service")


def test_app_environment_file_is_private(host):
    env = host.file("/etc/flask-stack/hello.env")
    assert env.user == "root"
    assert env.group == "app-hello"
    assert env.mode == 0o640


# --- what listens --------------------------------------------------------------

def test_only_nginx_and_sshd_listen_on_tcp(host):
    listeners = host.run("ss -Htlnp").stdout.strip().splitlines()
    seen = set()
    for line in listeners:
        local, proc = line.split()[3], line.split()[-1]
        if local.startswith("127.0.0.11:"):
            continue  # Docker's embedded DNS on the scenario network (not a process of the host)
        port = int(local.rsplit(":", 1)[1])
        name = re.search(r'"([^"]+)"', proc).group(1)
        seen.add((port, name))
    assert seen <= {(80, "nginx"), (443, "nginx"), (22, "sshd")}, seen
    assert {(80, "nginx"), (443, "nginx")} <= seen


def test_nginx_config_is_valid_and_enabled(host):
    assert host.run("nginx -t").rc == 0
    assert host.service("nginx").is_enabled


# --- base system ----------------------------------------------------------------

def test_admin_user_has_the_operators_key_and_sudo(host):
    user = host.user("deploy")
    assert "sudo" in user.groups
    keys = host.file("/home/deploy/.ssh/authorized_keys")
    assert keys.mode == 0o600
    assert "molecule@flask-stack" in keys.content_string
    assert host.run("visudo -cf /etc/sudoers.d/deploy").rc == 0


def test_journal_is_persistent(host):
    assert host.file("/var/log/journal").is_directory
    conf = host.run("systemd-analyze cat-config systemd/journald.conf").stdout
    assert "Storage=persistent" in conf
