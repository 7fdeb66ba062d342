"""Inventory groups of a multi-host setup (lb, web, worker, redis): who reaches
whom, at which address. A one-host inventory (only `web`) gets what it had
before: loopback for the broker and no group rules."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError


def _group(groups: Any, name: str) -> list[str]:
    return list((groups or {}).get(name) or [])


def flask_stack_address(host: str, hostvars: Any) -> str:
    """The address other hosts use to reach ``host``: its inventory variable
    ``private_address``, else its default IPv4 address (facts)."""
    hv = hostvars[host]
    address = hv.get("private_address") or (hv.get("ansible_default_ipv4") or {}).get("address")
    if not address:
        raise AnsibleFilterError(
            f"private_address of host {host!r} is not set and it has no default IPv4 address in its facts: "
            "set private_address in the inventory (the address the other hosts reach it at)")
    return str(address)


def flask_stack_worker_hosts(groups: Any) -> list[str]:
    """Hosts that run the apps' Celery worker and beat: the `worker` group;
    the `web` group when the inventory has no (or an empty) `worker` group, as
    on one VM. Beat runs on the first of them that has the app."""
    return _group(groups, "worker") or _group(groups, "web")


def flask_stack_public_web(groups: Any, host: str) -> bool:
    """Whether ``host`` opens the web ports to everyone: a load balancer; without
    load balancers a `web` host (one VM, as before). Not an app host behind load
    balancers, nor a host that is only a worker or Redis host (it serves no web)."""
    if host in _group(groups, "lb"):
        return True
    if _group(groups, "lb"):
        return False
    if host in _group(groups, "web"):
        return True
    return host not in _group(groups, "worker") + _group(groups, "redis")


def flask_stack_group_problems(groups: Any) -> list[str]:
    """What is wrong with the groups as a whole, one sentence each ([] = fine)."""
    problems = []
    web = _group(groups, "web")
    apart = [h for h in _group(groups, "worker") if h not in web]
    if apart and not _group(groups, "redis"):
        problems.append(
            f"inventory group worker: hosts {apart} are not in group web, so the web hosts and the workers need "
            "one shared broker: add a redis group (one host) to the inventory")
    return problems


def flask_stack_broker_host(groups: Any, host: str, hostvars: Any) -> str:
    """Where ``host`` reaches Redis: loopback when there is no `redis` group or
    ``host`` is in it, else the private address of the first `redis` host."""
    redis = _group(groups, "redis")
    if not redis or host in redis:
        return "127.0.0.1"
    return flask_stack_address(redis[0], hostvars)


def flask_stack_redis_clients(groups: Any, host: str) -> list[str]:
    """The other hosts that use the broker on ``host`` (web and worker hosts),
    when ``host`` is the `redis` group's broker; [] otherwise."""
    redis = _group(groups, "redis")
    if not redis or host != redis[0]:
        return []
    clients = _group(groups, "web") + flask_stack_worker_hosts(groups)
    return [h for h in dict.fromkeys(clients) if h != host]


def flask_stack_behind_lb(groups: Any, host: str) -> bool:
    """True for an app host that is not itself a load balancer, when there are load balancers."""
    lbs = _group(groups, "lb")
    return bool(lbs) and host not in lbs


def flask_stack_group_rules(groups: Any, host: str, hostvars: Any, web_ports: list[Any],
                            redis_port: Any) -> list[dict[str, Any]]:
    """Firewall rules the groups imply for ``host``: the web ports from each
    load balancer (a `web` host behind them), the Redis port from each web and
    worker host (the broker host). Each as {port, proto, from, comment}."""
    rules: list[dict[str, Any]] = []
    if flask_stack_behind_lb(groups, host) and host in _group(groups, "web"):
        for lb in _group(groups, "lb"):
            for port in web_ports:
                rules.append({"port": int(port), "proto": "tcp", "from": flask_stack_address(lb, hostvars),
                              "comment": f"web from lb {lb}"})
    if int(redis_port or 0):
        for client in flask_stack_redis_clients(groups, host):
            rules.append({"port": int(redis_port), "proto": "tcp", "from": flask_stack_address(client, hostvars),
                          "comment": f"redis from {client}"})
    return rules


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "flask_stack_address": flask_stack_address,
            "flask_stack_worker_hosts": flask_stack_worker_hosts,
            "flask_stack_public_web": flask_stack_public_web,
            "flask_stack_group_problems": flask_stack_group_problems,
            "flask_stack_broker_host": flask_stack_broker_host,
            "flask_stack_redis_clients": flask_stack_redis_clients,
            "flask_stack_behind_lb": flask_stack_behind_lb,
            "flask_stack_group_rules": flask_stack_group_rules,
        }
