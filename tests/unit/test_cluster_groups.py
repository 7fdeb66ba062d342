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
