"""The redis role on a real systemd container (the project's base image).

One container for the module: bad settings first (they must fail in the
checks, before the package is installed), then a converge, a second converge
that must report changed=0, and the checks a client would make: no
unauthenticated PING, loopback only, noeviction, dangerous commands refused,
the stock unit masked. Finally the unix socket variant (a config change that
restarts Redis). About two minutes (most of it apt and the converges).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import systemd_opts
from playbook import Run, ansible_env
from playbook import run as run_playbook

PLAYBOOK = Path(__file__).with_name("converge.yml")
IMAGE = os.environ.get("FLASK_STACK_IMAGE", "flask-stack/debian12:latest")
PASSWORD = "test-" + "0123456789abcdef" * 2
INSTANCE = "broker"
# systemd as PID 1 without --privileged, with the molecule scenarios' options
SYSTEMD_OPTS = systemd_opts.docker_run_args()
RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


class Host:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["docker", "exec", self.name, *args], capture_output=True,
                              text=True, timeout=120, check=False, **kw)
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def cli(self, *args: str, auth: bool = True, sock: str | None = None) -> str:
        target = ["-s", sock] if sock else ["-h", "127.0.0.1", "-p", "6379"]
        env = ["env", f"REDISCLI_AUTH={PASSWORD}"] if auth else []
        proc = self.run(*env, "redis-cli", *target, *args, check=False)
        return (proc.stdout + proc.stderr).strip()

    def converge(self, tmp_path: Path, **overrides: Any) -> tuple[Run, dict[str, int]]:
        # no user namespaces in a container: PrivateUsers off
        settings = {"redis_password": PASSWORD, "redis_private_users": False, **overrides}
        env = ansible_env(ANSIBLE_FACT_CACHING_CONNECTION=str(tmp_path / "facts"))
        proc = run_playbook(f"{self.name},", PLAYBOOK, "-c", "community.docker.docker", extra_vars=settings,
                            vars_dir=tmp_path, env=env, timeout=300)
        match = RECAP.search(proc.stdout)
        recap = dict(zip(("ok", "changed", "unreachable", "failed"),
                         map(int, match.groups()), strict=True)) if match else {}
        return proc, recap


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    if shutil.which("docker") is None or subprocess.run(
            ["docker", "image", "inspect", IMAGE], capture_output=True, check=False).returncode != 0:
        pytest.fail(f"needs docker and the image {IMAGE} (scripts/ensure-docker.sh, "
                    "molecule/resources/build-image.sh)")
    name = f"flask-stack-redis-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, "--hostname", "redis-test", *SYSTEMD_OPTS,
                    IMAGE, "/lib/systemd/systemd"], check=True, capture_output=True, timeout=60)
    try:
        box = Host(name)
        deadline = time.monotonic() + 60
        while box.run("systemctl", "is-system-running", check=False).stdout.strip() not in (
                "running", "degraded"):
            if time.monotonic() > deadline:
                pytest.fail("the container's systemd did not come up in 60 s")
            time.sleep(1)
        yield box
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False, timeout=60)


# Each run carries several mistakes: the check reports all of them at once.
BAD = {
    "empty-password-and-more": (
        {"redis_password": "", "redis_bind": ["127.0.0.1", "0.0.0.0"], "redis_unixsocket": "/tmp/redis.sock",
         "redis_acl_rules": "~* +@all nopass", "redis_maxmemory": "lots"},
        ["redis_password: empty; set it in the vault",
         "redis_bind[1]: '0.0.0.0' is not a loopback address",
         "redis_unixsocket: '/tmp/redis.sock' must be a file name in /run/redis-broker/",
         "redis_acl_rules: '~* +@all nopass' has ['nopass']",
         "redis_maxmemory: 'lots' is not bytes"]),
    "password-with-quote-and-more": (
        {"redis_password": 'abcdefghijklmnop"q', "redis_bind": ["localhost"], "redis_port": 0,
         "redis_instance": "flask-stack"},
        ["redis_password: has characters other than A-Z a-z 0-9 . _ ~ -",
         "redis_bind[0]: 'localhost' is not an IPv4/IPv6 address",
         "redis_port: 0 and redis_unixsocket empty",
         "redis_instance: 'flask-stack' is not 1-32 lower-case letters and digits"]),
    "password-with-space": ({"redis_password": "a" * 20 + " b"},
                            ["redis_password: has characters other than"]),
    "password-too-short": ({"redis_password": "short"},
                           ["redis_password: 5 characters; at least 16 are required"]),
    # the argument spec catches this one, before the role's own checks
    "bad-persistence": ({"redis_persistence": "both"}, ["redis_persistence must be one of: aof, rdb, none"]),
}


def test_bad_settings_fail_before_any_change(host: Host, tmp_path: Path) -> None:
    for case, (overrides, messages) in BAD.items():
        proc, recap = host.converge(tmp_path, **overrides)
        assert proc.returncode != 0, case
        assert recap.get("failed") == 1 and recap.get("changed") == 0, (case, proc.stdout[-2000:])
        for message in messages:
            assert message in proc.stdout, (case, message, proc.stdout[-3000:])
        password = overrides.get("redis_password")
        if password:
            assert password not in proc.stdout + proc.stderr, case
    # nothing was installed by any of them
    assert host.run("dpkg-query", "-W", "redis-server", check=False).returncode != 0


def test_converge_then_idempotent(host: Host, tmp_path: Path) -> None:
    proc, recap = host.converge(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert recap["changed"] > 0
    assert PASSWORD not in proc.stdout + proc.stderr
    proc, recap = host.converge(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap["changed"] == 0, proc.stdout[-3000:]


def test_refuses_unauthenticated_clients(host: Host) -> None:
    assert "NOAUTH" in host.cli("PING", auth=False)
    assert "NOAUTH" in host.cli("SET", "k", "v", auth=False)
    assert host.cli("PING") == "PONG"
    wrong = host.run("redis-cli", "-h", "127.0.0.1", "-p", "6379", "--no-auth-warning",
                     "-a", "not-the-password", "PING", check=False)
    assert "WRONGPASS" in wrong.stdout + wrong.stderr


def listening(host: Host) -> set[str]:
    """Local addresses of the TCP listeners, sshd's port 22 aside."""
    lines = host.run("ss", "-Hltn").stdout.splitlines()
    return {line.split()[3] for line in lines} - {"0.0.0.0:22", "[::]:22"}


def test_listens_on_loopback_only(host: Host) -> None:
    # Redis on the bound address only, and nothing else (no stock instance)
    assert listening(host) == {"127.0.0.1:6379"}


def test_noeviction_and_persistence(host: Host) -> None:
    conf = host.run("cat", f"/etc/redis/redis-{INSTANCE}.conf").stdout
    assert re.search(r"^maxmemory-policy noeviction$", conf, re.M)
    assert re.search(r"^maxmemory 256mb$", conf, re.M)
    assert re.search(r"^appendonly yes$", conf, re.M)
    assert PASSWORD not in conf  # only its SHA-256
    mode = host.run("stat", "-c", "%a %U %G", f"/etc/redis/redis-{INSTANCE}.conf").stdout.split()
    assert mode == ["640", "root", "redis"]
    # the running server took the file (AOF written in the instance's dir)
    assert host.cli("SET", "flask-stack-test", "1") == "OK"
    aof = host.run("ls", f"/var/lib/redis/{INSTANCE}/appendonlydir").stdout
    assert "appendonly.aof" in aof


@pytest.mark.parametrize("command", [["CONFIG", "GET", "maxmemory-policy"], ["FLUSHALL"], ["DEBUG", "SLEEP", "0"],
                                     ["KEYS", "*"], ["ACL", "LIST"], ["SHUTDOWN"]])
def test_dangerous_commands_refused(host: Host, command: list[str]) -> None:
    answer = host.cli(*command)
    # DEBUG is also off by itself (enable-debug-command no), checked first
    assert answer.startswith(("NOPERM", "ERR DEBUG command not allowed")), answer
    assert host.cli("PING") == "PONG"


def test_broker_commands_allowed(host: Host) -> None:
    """What kombu and Celery's result backend do: lists, sorted sets, hashes,
    pub/sub, scripts, expiry."""
    assert host.cli("LPUSH", "celery", "job") == "1"
    assert host.cli("BRPOP", "celery", "1").splitlines() == ["celery", "job"]
    assert host.cli("ZADD", "unacked_index", "1", "tag") == "1"
    assert host.cli("HSET", "unacked", "tag", "x") == "1"
    assert host.cli("SETEX", "celery-task-meta-x", "60", "{}") == "OK"
    assert host.cli("PUBLISH", "celery-task-meta-x", "{}") == "0"
    assert host.cli("EVAL", "return redis.call('GET', KEYS[1])", "1", "celery-task-meta-x") == "{}"
    assert host.cli("SELECT", "1") == "OK"


def test_units(host: Host) -> None:
    assert host.run("systemctl", "is-active", f"redis-server@{INSTANCE}", check=False).stdout.strip() == "active"
    assert host.run("systemctl", "is-enabled", f"redis-server@{INSTANCE}", check=False).stdout.strip() == "enabled"
    assert host.run("systemctl", "is-active", "redis-server", check=False).stdout.strip() == "inactive"
    assert host.run("systemctl", "is-enabled", "redis-server", check=False).stdout.strip() == "masked"
    # the stock config file is Debian's, untouched
    assert host.run("dpkg", "--verify", "redis-server").stdout.strip() == ""


def test_unix_socket_variant(host: Host, tmp_path: Path) -> None:
    sock = f"/run/redis-{INSTANCE}/redis.sock"
    proc, recap = host.converge(tmp_path, redis_unixsocket=sock, redis_port=0)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert recap["changed"] >= 1  # the config file, then the handler's restart
    assert "RUNNING HANDLER [redis : Restart redis]" in proc.stdout
    stat = host.run("stat", "-c", "%A %U %G", sock).stdout.split()
    assert stat == ["srwxrwx---", "redis", "redis"]
    assert host.cli("PING", sock=sock) == "PONG"
    assert "NOAUTH" in host.cli("PING", auth=False, sock=sock)
    assert listening(host) == set()
    # data survived the restart (AOF)
    assert host.cli("GET", "flask-stack-test", sock=sock) == "1"
