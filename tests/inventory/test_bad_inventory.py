"""A bad inventory fails in the preflight play, before the first change,
with a message that names the variable path and the bad value. Runs the
real site.yml against a throwaway target: a host reached through the docker
connection to a container that does not exist, so if anything ever got past
the preflight it would fail as unreachable instead of changing this machine.
The expected message is looked for in the failure output only (the task
titles are removed first), so a task title that happens to contain
"domains" cannot pass for the message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from playbook import ROOT, Run, ansible_env
from playbook import run as run_playbook

# never this machine: a container name no one runs (connecting fails at once)
THROWAWAY = {"ansible_connection": "community.docker.docker", "ansible_host": "flask-stack-no-such-container",
             "ansible_python_interpreter": "/usr/bin/python3"}
GOOD = {"name": "hello", "domains": ["hello.example.com"], "src": str(ROOT / "app"), "wsgi": "hello.wsgi:app"}


def run(tmp_path: Path, apps, playbook: str = "site.yml", **extra) -> Run:
    inv = tmp_path / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump(
        {"all": {"children": {"web": {"hosts": {"web1": THROWAWAY}}}}}))
    (inv / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump({"apps": apps, **extra}))
    env = ansible_env(ANSIBLE_FACT_CACHING_CONNECTION=str(tmp_path / "facts"))
    return run_playbook(inv, ROOT / playbook, env=env, timeout=300)


def failure_text(out: str) -> str:
    """The output without its PLAY/TASK title lines, whitespace folded."""
    kept = [line for line in out.splitlines() if not re.match(r"\s*(PLAY|TASK) \[", line)]
    return " ".join(" ".join(kept).split())


def assert_stopped_in_preflight(result, expected: str) -> None:
    """The run failed with `expected` in its failure text, in the preflight
    play: no host unreachable, no task of a later play, changed=0."""
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert re.search(expected, failure_text(out)), out
    assert "UNREACHABLE" not in out, out
    assert "TASK [base" not in out and "TASK [nginx" not in out, out
    recap = re.search(r"web1\s+: ok=\d+\s+changed=(\d+)", out)
    assert recap and recap.group(1) == "0", out


def without(key):
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    ("apps", "expected"),
    [
        # structural checks come from the preflight role's argument spec, in Ansible's words
        ([without("name")], r"Validation of arguments failed: missing required arguments: name found in apps"),
        ([without("domains")], r"Validation of arguments failed: missing required arguments: domains found in apps"),
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
    assert_stopped_in_preflight(result, expected)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"tls_mode_default": "sometimes"},
         r"value of tls_mode_default must be one of: letsencrypt, selfsigned, none, , got: sometimes"),
        ({"apps": [{**GOOD, "tls_mode": "https"}]},
         r"value of tls_mode must be one of: letsencrypt, selfsigned, none, got: https found in apps"),
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
    assert_stopped_in_preflight(result, expected)


def test_good_inventory_passes_preflight(tmp_path):
    # the preflight plays touch no host; the rest of site.yml would (and here finds nothing to touch)
    result = run(tmp_path, [GOOD, {**GOOD, "name": "two", "domains": ["two.example.com"]}], "playbooks/preflight.yml",
                 letsencrypt_email="ops@example.com")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_good_inventory_gets_past_the_preflight_and_only_then_reaches_for_the_host(tmp_path):
    """The control for the cases above: the same site.yml run with a good
    inventory passes the preflight and then fails to reach the throwaway
    target, so the preflight is what stopped the bad ones."""
    result = run(tmp_path, [GOOD], letsencrypt_email="ops@example.com")
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "UNREACHABLE!" in out, out
    assert re.search(r"web1\s+: ok=\d+\s+changed=0\s+unreachable=1", out), out
