"""Certificates over the life of a host, by running the real playbook
(playbooks/web.yml, the nginx + letsencrypt part of site.yml) against the
converged web host with a changed apps list:

- a domain added to an app expands its certificate on the next run;
- with the CA down, a run still succeeds: an app that has a certificate keeps
  serving it, a new app serves a self-signed one, and the play says why for
  each, naming the domains and the CA (or fails, with
  letsencrypt_fail_on_error);
- tls_mode selfsigned and none do what they say;
- a CA that no longer knows the host's ACME account (Pebble restarted: it
  keeps accounts in memory) gets a new account on the next run, which ends
  with real certificates and says what happened.

This module runs last (file order): it stops Pebble, and a restarted Pebble
has a new root and no accounts.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import ssl
import time
from pathlib import Path

import pytest
import yaml
from conftest import ACME_DIRECTORY, HTTP_PORT, HTTPS_PORT, _decode, fetch_pebble_root, tls_context, tls_probe
from playbook import ansible_env
from playbook import run as run_playbook

testinfra_hosts = ["ansible://web"]

PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))


@pytest.fixture(scope="module")
def inventory(pytestconfig) -> Path:
    return Path(pytestconfig.option.ansible_inventory)


@pytest.fixture(scope="module")
def scenario_apps(inventory) -> list[dict]:
    """The apps list molecule.yml gives the web group."""
    return yaml.safe_load((inventory / "group_vars" / "web").read_text())["apps"]


@pytest.fixture(scope="module")
def web_playbook(inventory, tmp_path_factory):
    """web_playbook(apps, *ansible_args, **extra_vars) -> (rc, parsed json-callback output, raw text)."""
    tmp = tmp_path_factory.mktemp("web-playbook")

    def run(apps: list[dict], *args: str, playbook: str = "web.yml", **extra) -> tuple[int, dict, str]:
        # molecule's ansible.cfg (the scenario's inventory), JSON on stdout
        env = ansible_env(project_config=False, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
        proc = run_playbook(inventory, PROJECT / "playbooks" / playbook, *args, extra_vars={"apps": apps, **extra},
                            vars_dir=tmp, env=env, timeout=900)
        start = proc.stdout.find("{")
        report = json.loads(proc.stdout[start:]) if start >= 0 else {}
        return proc.rc, report, proc.out

    return run


def task_results(report: dict, name: str) -> list[dict]:
    """The host results of every task run under this name."""
    found = []
    for play in report.get("plays", []):
        for task in play["tasks"]:
            if task["task"]["name"] == name or task["task"]["name"].endswith(f" : {name}"):
                found.extend(task["hosts"].values())
    return found


def stats(report: dict) -> dict:
    (host_stats,) = report["stats"].values()
    return host_stats


def get(domain: str, path: str = "/healthz", cafile: Path | None = None, tls: bool = True) -> tuple[int, str, dict]:
    """One GET from this machine through the published ports: (status, body,
    certificate served). With a cafile the chain and the name are verified."""
    with socket.create_connection(("127.0.0.1", HTTPS_PORT if tls else HTTP_PORT), timeout=10) as raw:
        conn, cert = raw, {}
        if tls:
            conn = tls_context(cafile, alpn=("http/1.1",)).wrap_socket(raw, server_hostname=domain)
            cert = _decode(conn.getpeercert(binary_form=True))
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {domain}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split()[1]), body, cert


def with_domains(apps: list[dict], name: str, *domains: str) -> list[dict]:
    apps = copy.deepcopy(apps)
    for app in apps:
        if app["name"] == name:
            app["domains"] = [*app["domains"], *domains]
    return apps


def test_a_domain_added_to_an_app_expands_its_certificate(web_playbook, scenario_apps, pebble_root):
    apps = with_domains(scenario_apps, "second", "www.second.test")
    rc, report, raw = web_playbook(apps)
    assert rc == 0, raw[-3000:]
    (second,) = task_results(report, "Run certbot for second")
    assert second.get("changed") is True, second
    (hello,) = task_results(report, "Run certbot for hello")
    assert hello.get("skipped") is True, "certbot ran for an app whose certificate was fine"
    for domain in ("second.test", "www.second.test"):
        info = tls_probe(domain, pebble_root)  # verified chain and name
        assert sorted(info.san) == ["second.test", "www.second.test"]


@pytest.fixture
def pebble_stopped(acme_host):
    assert acme_host.run("systemctl stop pebble").rc == 0
    yield
    acme_host.run("systemctl start pebble")


def test_with_the_ca_down_sites_keep_serving_and_the_play_says_why(
    web_playbook, scenario_apps, pebble_root, pebble_stopped, host
):
    apps = with_domains(with_domains(scenario_apps, "second", "www.second.test"), "hello", "shop.hello.test")
    extra = [
        {**scenario_apps[0], "name": "third", "domains": ["third.test"]},
        {**scenario_apps[0], "name": "internal", "domains": ["internal.test"], "tls_mode": "selfsigned"},
        {**scenario_apps[0], "name": "plain", "domains": ["plain.test"], "tls_mode": "none"},
    ]
    rc, report, raw = web_playbook(apps + extra)
    assert rc == 0, raw[-3000:]
    assert stats(report)["failures"] == 0
    # the new apps get their code too (site.yml's deploy part), so "serving" means the app answers
    rc, _, raw_deploy = web_playbook(apps + extra, playbook="deploy.yml")
    assert rc == 0, raw_deploy[-3000:]

    texts = [" ".join(r["msg"]) for r in task_results(report, "Warn about the refused certificate") if not r.get("skipped")]
    hello_msg = next(t for t in texts if "app hello " in t)
    third_msg = next(t for t in texts if "app third " in t)
    print(hello_msg, third_msg, sep="\n")
    # named: the app, its domains, the CA, why, and what is served meanwhile
    assert "app hello (hello.test, www.hello.test, shop.hello.test)" in hello_msg
    assert ACME_DIRECTORY in hello_msg and "adds shop.hello.test" in hello_msg
    assert "keeps serving HTTPS with the certificate it had" in hello_msg
    assert "app third (third.test)" in third_msg and ACME_DIRECTORY in third_msg
    assert "no certificate yet" in third_msg and "SELF-SIGNED" in third_msg
    assert "acme" in third_msg.lower() and ("connection" in third_msg.lower() or "refused" in third_msg.lower())
    assert not any("internal" in t or "plain" in t for t in texts)
    assert task_results(report, "Run certbot for internal") == []  # selfsigned: certbot never runs

    # hello still serves its CA-issued certificate (verified), for the domains it had, and the app answers
    info = tls_probe("hello.test", pebble_root)
    assert sorted(info.san) == ["hello.test", "www.hello.test"]
    status, body, _ = get("hello.test", cafile=pebble_root)
    assert (status, json.loads(body)["status"]) == (200, "OK"), (status, body)
    # the new app and the selfsigned app serve self-signed certificates for their domains,
    # and the app answers 200 over HTTPS with that stand-in
    for domain in ("third.test", "internal.test"):
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_probe(domain, pebble_root)
        status, body, cert = get(domain)
        assert cert["san"] == [domain] and cert["issuer"] == cert["subject"], cert
        assert status == 200, (domain, status, body)
        assert json.loads(body)["status"] == "OK", body
    # tls_mode none: plain HTTP answered by the app, no redirect, no certificate
    status, body, _ = get("plain.test", tls=False)
    assert status == 200 and json.loads(body)["status"] == "OK", (status, body)
    with pytest.raises(ssl.SSLError):
        tls_probe("plain.test", None)
    assert host.run("nginx -t").rc == 0

    # letsencrypt_fail_on_error: the same situation fails the play, with the same words
    # (nginx is already configured for these apps: only the letsencrypt role's part runs)
    rc, report, raw = web_playbook(apps + extra, "--tags", "letsencrypt", letsencrypt_fail_on_error=True)
    assert rc != 0
    failed = [r for r in task_results(report, "Fail on the refused certificate (letsencrypt_fail_on_error)") if r.get("failed")]
    assert failed and "app hello (hello.test, www.hello.test, shop.hello.test)" in failed[0]["msg"]
    # ... and the site still serves
    assert sorted(tls_probe("hello.test", pebble_root).san) == ["hello.test", "www.hello.test"]


def test_a_ca_that_forgot_the_account_gets_a_new_one(web_playbook, scenario_apps, acme_host, web_host, tmp_path):
    # Pebble keeps accounts in memory: after a restart the host's stored
    # account is unknown to it, as after a deactivation or a copied
    # /etc/letsencrypt. certbot 2.1 then crashes on every run.
    assert acme_host.run("systemctl restart pebble").rc == 0
    root = fetch_pebble_root(web_host, tmp_path / "root.pem")  # the restarted CA's new root

    # a new app needs a certificate (and `second` is back to its own domain)
    apps = [*scenario_apps, {**scenario_apps[0], "name": "third", "domains": ["third.test"]}]
    rc, report, raw = web_playbook(apps)
    assert rc == 0, raw[-3000:]
    refused = [r for r in task_results(report, "Warn about the refused certificate") if not r.get("skipped")]
    assert refused == [], refused

    # the first certbot run of the play met the unknown account, set it aside and retried once
    notes = [r["msg"] for r in report_results(report, "Report the new account") if not r.get("skipped")]
    print(*notes, sep="\n")
    assert len(notes) == 1, notes
    assert f"CA {ACME_DIRECTORY}: The CA no longer knew this host's ACME account (accountDoesNotExist)" in notes[0]
    assert "a new account was registered and certbot retried once successfully" in notes[0]
    aside = web_host.run("ls /etc/letsencrypt/accounts/acme:14000/")
    assert "dir" in aside.stdout.split() and "dir.unknown-to-ca-" in aside.stdout, aside.stdout

    # the new app serves a certificate of the restarted CA (verified chain and name)
    assert tls_probe("third.test", root).san == ["third.test"]
    # every certificate from this CA now renews with the new account: a real
    # renewal of hello (untouched by this run) goes through
    accounts = {
        name: web_host.run("sed -n 's/^account = //p' /etc/letsencrypt/renewal/%s.conf", name).stdout.strip()
        for name in ("hello", "second", "third")
    }
    assert len(set(accounts.values())) == 1 and "" not in accounts.values(), accounts
    renew = web_host.run(
        "REQUESTS_CA_BUNDLE=/etc/flask-stack/acme-ca.pem certbot renew --cert-name hello --force-renewal"
        " --no-random-sleep-on-renew --non-interactive"
    )
    assert renew.rc == 0, renew.stdout + renew.stderr
    # the deploy hook's reload is graceful and asynchronous: old workers may
    # answer a handshake or two before the new certificate is served
    for _ in range(20):
        try:
            assert sorted(tls_probe("hello.test", root).san) == ["hello.test", "www.hello.test"]
            break
        except ssl.SSLCertVerificationError:
            time.sleep(0.5)
    else:
        pytest.fail("hello.test still serves a certificate of the old CA 10 s after its renewal")

    # and the next run has nothing left to do
    rc, report, raw = web_playbook(apps)
    assert rc == 0 and stats(report)["changed"] == 0, raw[-3000:]


def report_results(report: dict, prefix: str) -> list[dict]:
    """The host results of every task whose name starts with prefix."""
    return [
        result
        for play in report.get("plays", [])
        for task in play["tasks"]
        if task["task"]["name"].split(" : ")[-1].startswith(prefix)
        for result in task["hosts"].values()
    ]
