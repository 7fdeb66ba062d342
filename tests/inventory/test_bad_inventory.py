"""A bad inventory fails in the preflight play, before the first change,
with a message that names the variable. Runs the real site.yml against a
host on the local connection; nothing gets that far."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"name": "hello", "domains": ["hello.example.com"], "src": str(ROOT / "app"), "wsgi": "hello.wsgi:app"}


def run(tmp_path: Path, apps, playbook: str = "site.yml", **extra) -> subprocess.CompletedProcess:
    inv = tmp_path / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump(
        {"all": {"children": {"web": {"hosts": {"web1": {"ansible_connection": "local"}}}}}}))
    (inv / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump({"apps": apps, **extra}))
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_FACT_CACHING_CONNECTION": str(tmp_path / "facts")}
    ansible = Path(sys.executable).parent / "ansible-playbook"
    return subprocess.run([str(ansible), "-i", str(inv), str(ROOT / playbook)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def without(key):
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    ("apps", "expected"),
    [
        ([without("name")], r"name"),
        ([without("domains")], r"domains"),
        ([{**GOOD, "domains": ["bad..example.com"]}], r"apps\[0\] \(hello\)\.domains\[0\]: 'bad\.\.example\.com' is not a valid domain"),
        ([{**GOOD, "name": "../evil"}], r"apps\[0\]\.name: '\.\./evil' must match"),
        ([{**GOOD, "name": "a/b"}], r"apps\[0\]\.name: 'a/b' must match"),
        ([GOOD, {**GOOD, "name": "two"}], r"apps\[1\] \(two\)\.domains: 'hello\.example\.com' is already claimed by app 'hello'"),
        ([{**GOOD, "python": {"kind": "pipenv"}}], r"apps\[0\] \(hello\)\.python\.kind: 'pipenv' is not a known kind"),
        ([{**GOOD, "celery_app": "hello.tasks:celery", "worker": {"enabled": True, "concurrency": -1}}],
         r"apps\[0\] \(hello\)\.worker\.concurrency: -1 must be an integer"),
        ([{**GOOD, "celery_app": "hello.tasks:celery", "worker": {"enabled": True}}],
         r"redis_password: apps hello enable worker or beat, so the Redis broker needs a password"),
    ],
    ids=["missing-name", "missing-domains", "invalid-domain", "name-dotdot", "name-slash", "duplicate-domain",
         "unknown-python-kind", "bad-worker-concurrency", "broker-without-password"],
)
def test_bad_inventory_fails_before_any_change(tmp_path, apps, expected):
    result = run(tmp_path, apps)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert re.search(expected, out), out
    assert "apps" in out
    # it stopped in the preflight play: no task of any later play ran
    assert "TASK [base" not in out and "TASK [nginx" not in out, out
    recap = re.search(r"web1\s+: ok=\d+\s+changed=(\d+)", out)
    assert recap and recap.group(1) == "0", out


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"tls_mode_default": "sometimes"}, r"tls_mode_default"),
        ({"apps": [{**GOOD, "tls_mode": "https"}]}, r"tls_mode"),
        ({"letsencrypt_email": "not-an-address"}, r"letsencrypt_email: \"not-an-address\""),
        ({"letsencrypt_email": ""}, r"letsencrypt_email: \"\" - the production CA needs an e-mail address"),
        ({"letsencrypt_server": "http://acme.example/dir", "letsencrypt_email": "ops@example.com"},
         r"letsencrypt_server: \"http://acme.example/dir\" is neither production, staging nor an\s+ACME directory URL"),
    ],
    ids=["unknown-tls-mode-default", "unknown-tls-mode", "invalid-email", "production-without-email", "acme-url-not-https"],
)
def test_bad_https_settings_fail_before_any_change(tmp_path, settings, expected):
    apps = settings.pop("apps", [GOOD])
    result = run(tmp_path, apps, **settings)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert re.search(expected, out), out
    assert "TASK [base" not in out and "TASK [nginx" not in out, out
    recap = re.search(r"web1\s+: ok=\d+\s+changed=(\d+)", out)
    assert recap and recap.group(1) == "0", out


def test_good_inventory_passes_preflight(tmp_path):
    # only the preflight play: the rest of site.yml would configure this machine
    result = run(tmp_path, [GOOD, {**GOOD, "name": "two", "domains": ["two.example.com"]}], "playbooks/preflight.yml",
                 letsencrypt_email="ops@example.com")
    assert result.returncode == 0, result.stdout + result.stderr
