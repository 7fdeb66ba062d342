"""Inventory groups (plugins/filter/flask_stack_cluster.py): a single VM
keeps what it had; several hosts get the broker address and firewall rules
their groups imply."""

from __future__ import annotations

import pytest
from plugin_modules import load

cluster = load("plugins/filter/flask_stack_cluster.py")

HOSTVARS = {
    "lb1": {"ansible_default_ipv4": {"address": "10.0.0.1"}},
    "web1": {"ansible_default_ipv4": {"address": "10.0.0.11"}},
    "web2": {"private_address": "10.1.0.12", "ansible_default_ipv4": {"address": "203.0.113.12"}},
    "redis1": {"ansible_default_ipv4": {"address": "10.0.0.21"}},
}
CLUSTER = {"all": list(HOSTVARS), "lb": ["lb1"], "web": ["web1", "web2"], "redis": ["redis1"], "ungrouped": []}
ONE_VM = {"all": ["demo"], "web": ["demo"], "ungrouped": []}


def test_one_vm_keeps_loopback_and_no_group_rules():
    assert cluster.flask_stack_broker_host(ONE_VM, "demo", {}) == "127.0.0.1"
    assert cluster.flask_stack_redis_clients(ONE_VM, "demo") == []
    assert cluster.flask_stack_behind_lb(ONE_VM, "demo") is False
    assert cluster.flask_stack_group_rules(ONE_VM, "demo", {}, [80, 443], 6379) == []
    assert cluster.flask_stack_worker_hosts(ONE_VM) == ["demo"]


def test_app_hosts_reach_the_redis_host_at_its_private_address():
    assert cluster.flask_stack_broker_host(CLUSTER, "web1", HOSTVARS) == "10.0.0.21"
    assert cluster.flask_stack_broker_host(CLUSTER, "redis1", HOSTVARS) == "127.0.0.1"


def test_app_hosts_take_web_ports_from_the_lb_only():
    rules = cluster.flask_stack_group_rules(CLUSTER, "web2", HOSTVARS, [80, 443], 6379)
    assert [(r["port"], r["from"]) for r in rules] == [(80, "10.0.0.1"), (443, "10.0.0.1")]
    assert cluster.flask_stack_group_rules(CLUSTER, "lb1", HOSTVARS, [80, 443], 6379) == []


def test_redis_host_takes_its_port_from_web_and_worker_hosts_at_their_private_addresses():
    rules = cluster.flask_stack_group_rules(CLUSTER, "redis1", HOSTVARS, [80, 443], 6379)
    # web2's private_address wins over its public default address
    assert [(r["port"], r["from"]) for r in rules][-2:] == [(6379, "10.0.0.11"), (6379, "10.1.0.12")]
    workers = {**CLUSTER, "worker": ["web1", "redis1"]}
    assert cluster.flask_stack_redis_clients(workers, "redis1") == ["web1", "web2"]


def test_a_host_without_an_address_is_named():
    with pytest.raises(Exception, match="private_address of host 'r'"):
        cluster.flask_stack_broker_host({"web": ["web1"], "redis": ["r"]}, "web1", {"r": {}})


# --- worker-only hosts: which processes of an app each host runs ---

model = load("plugins/filter/flask_stack.py")
(HELLO,) = model.flask_stack_apps([{
    "name": "hello", "domains": ["hello.test"], "src": "/srv/src/hello", "wsgi": "hello.wsgi:app",
    "celery_app": "hello.tasks:celery", "worker": {"enabled": True}, "beat": {"enabled": True}}])
WEB_UNIT, WORKER_UNIT, BEAT_UNIT = "gunicorn-hello.service", "celery-hello-worker.service", "celery-hello-beat.service"


def processes(groups, host):
    """What the roles run on ``host``: the call of roles/app and roles/celery."""
    hostvars = {h: {"apps": [{"name": "hello"}]} for h in groups["all"]}
    return model.flask_stack_processes(HELLO, host, cluster.flask_stack_worker_hosts(groups), hostvars,
                                       groups.get("web", []))


def test_one_vm_runs_web_worker_and_beat_and_opens_the_web_ports():
    assert processes(ONE_VM, "demo") == [WEB_UNIT, WORKER_UNIT, BEAT_UNIT]
    assert cluster.flask_stack_public_web(ONE_VM, "demo") is True


def test_without_a_worker_group_every_web_host_runs_workers_and_the_first_one_beat():
    assert processes(CLUSTER, "web1") == [WEB_UNIT, WORKER_UNIT, BEAT_UNIT]
    assert processes(CLUSTER, "web2") == [WEB_UNIT, WORKER_UNIT]


SPLIT = {"all": ["lb1", "web1", "web2", "work1", "work2", "redis1"], "lb": ["lb1"], "web": ["web1", "web2"],
         "worker": ["work1", "work2"], "redis": ["redis1"], "ungrouped": []}


def test_a_worker_group_takes_celery_off_the_web_hosts():
    assert processes(SPLIT, "web1") == [WEB_UNIT]
    assert processes(SPLIT, "web2") == [WEB_UNIT]
    # beat on exactly one host: the first worker host
    assert processes(SPLIT, "work1") == [WORKER_UNIT, BEAT_UNIT]
    assert processes(SPLIT, "work2") == [WORKER_UNIT]
    # a host in both groups runs both
    both = {**SPLIT, "worker": ["web2", "work1"]}
    assert processes(both, "web2") == [WEB_UNIT, WORKER_UNIT, BEAT_UNIT]
    assert processes(both, "web1") == [WEB_UNIT]


def test_worker_hosts_open_no_web_port_and_are_let_into_redis():
    assert [cluster.flask_stack_public_web(SPLIT, h) for h in ("lb1", "web1", "work1", "redis1")] == [
        True, False, False, False]
    hostvars = {h: {"private_address": f"10.0.0.{i}"} for i, h in enumerate(SPLIT["all"], 1)}
    # web ports from the LB on web hosts only, nothing on a worker host
    assert cluster.flask_stack_group_rules(SPLIT, "work1", hostvars, [80, 443], 6379) == []
    assert [r["port"] for r in cluster.flask_stack_group_rules(SPLIT, "web1", hostvars, [80, 443], 6379)] == [80, 443]
    assert cluster.flask_stack_redis_clients(SPLIT, "redis1") == ["web1", "web2", "work1", "work2"]
    # without load balancers a worker-only host still opens no web port; a web host does
    no_lb = {k: v for k, v in SPLIT.items() if k != "lb"}
    assert cluster.flask_stack_public_web(no_lb, "work1") is False
    assert cluster.flask_stack_public_web(no_lb, "web1") is True


def test_worker_hosts_apart_from_the_web_hosts_need_a_redis_group():
    assert cluster.flask_stack_group_problems(ONE_VM) == []
    assert cluster.flask_stack_group_problems(SPLIT) == []
    no_redis = {k: v for k, v in SPLIT.items() if k != "redis"}
    (problem,) = cluster.flask_stack_group_problems(no_redis)
    assert "inventory group worker: hosts ['work1', 'work2'] are not in group web" in problem
    assert "add a redis group" in problem
    # workers on the web hosts themselves share the web hosts' broker as before
    assert cluster.flask_stack_group_problems({**ONE_VM, "worker": ["demo"]}) == []


def test_the_broker_runs_on_the_redis_host_or_on_a_web_host_with_celery_apps():
    assert [h for h in HOSTVARS if cluster.flask_stack_runs_broker(CLUSTER, h, 1)] == ["redis1"]
    assert cluster.flask_stack_runs_broker(ONE_VM, "demo", 1) is True
    assert cluster.flask_stack_runs_broker(ONE_VM, "demo", 0) is False
    # apps that reach a broker elsewhere (redis_host) get none on the host
    assert cluster.flask_stack_runs_broker(ONE_VM, "demo", 1, "10.0.0.21") is False
    assert cluster.flask_stack_runs_broker({"all": ["w"], "worker": ["w"]}, "w", 1) is False
