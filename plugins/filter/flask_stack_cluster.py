"""Inventory groups of a multi-host setup (lb, web, worker, redis): who reaches
whom, at which address. A one-host inventory (only `web`) gets what it had
before: loopback for the broker and no group rules."""

from __future__ import annotations

import re
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


def flask_stack_runs_broker(groups: Any, host: str, celery_apps: Any, redis_host: Any = "127.0.0.1") -> bool:
    """Whether ``host`` runs the Redis broker (playbooks/broker.yml; base.yml
    installs its package early): the first `redis` host when the inventory has
    that group; without one, a `web` host whose apps use Celery (``celery_apps``:
    how many do) and reach their broker on the host itself (``redis_host`` a
    loopback name)."""
    redis = _group(groups, "redis")
    if redis:
        return host == redis[0]
    return (host in _group(groups, "web") and bool(celery_apps)
            and str(redis_host or "127.0.0.1") in ("127.0.0.1", "localhost", "::1"))


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


AWS_GROUPS = ("lb", "web", "worker", "redis")


def flask_stack_aws_layout(hosts: Any, prefix: str, single_name: str, single_group: str, ssh_port: Any,
                           public_ports: Any, redis_port: Any, admin_v4: Any, admin_v6: Any) -> dict[str, Any]:
    """The instances and security groups of playbooks/provision.yml (role aws_instance).

    ``hosts`` empty: one instance ``single_name`` in ``single_group`` with one
    security group of the same name (SSH from the admin networks, the public
    ports from anywhere). Otherwise one instance <prefix>-<name> per entry and,
    when one of them is in `lb`, two groups: <prefix>-lb (public ports from
    anywhere) on the lb hosts and <prefix>-app (the public ports from the lb
    group, Redis from the app group itself) on the others; without an lb host
    every host gets the public group. SSH from the admin networks in each.
    Returns {hosts: [{name, groups, security_groups}], security_groups:
    [{name, description, rules}]} in creation order (a group before those
    that refer to it), rules in amazon.aws.ec2_security_group's format."""
    def ssh() -> list[dict[str, Any]]:
        return ([{"proto": "tcp", "ports": [int(ssh_port)], "cidr_ip": list(admin_v4),
                  "rule_desc": "SSH from admin networks"}] if admin_v4 else []) + \
               ([{"proto": "tcp", "ports": [int(ssh_port)], "cidr_ipv6": list(admin_v6),
                  "rule_desc": "SSH from admin networks"}] if admin_v6 else [])

    ports = [int(p) for p in public_ports or []]
    public = ssh() + ([{"proto": "tcp", "ports": ports, "cidr_ip": ["0.0.0.0/0"], "rule_desc": "Public web (IPv4)"},
                       {"proto": "tcp", "ports": ports, "cidr_ipv6": ["::/0"], "rule_desc": "Public web (IPv6)"}]
                      if ports else [])
    if not hosts:
        return {"hosts": [{"name": single_name, "groups": [single_group], "security_groups": [single_name]}],
                "security_groups": [{"name": single_name, "rules": public,
                                     "description": f"{single_name}: SSH from admin networks, public web ports from anywhere"}]}
    problems = []
    for i, host in enumerate(hosts):
        name = host.get("name") if isinstance(host, dict) else None
        groups = host.get("groups") if isinstance(host, dict) else None
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            problems.append(f"aws_instance_hosts[{i}].name: {name!r} must be a short lowercase name such as web1")
        if not isinstance(groups, list) or not groups or any(g not in AWS_GROUPS for g in groups):
            problems.append(f"aws_instance_hosts[{i}].groups: {groups!r} must list some of {list(AWS_GROUPS)}")
    names = [h.get("name") for h in hosts if isinstance(h, dict)]
    problems += [f"aws_instance_hosts: name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    if problems:
        raise AnsibleFilterError("; ".join(problems))
    lb, app = f"{prefix}-lb", f"{prefix}-app"
    with_lb = any("lb" in h["groups"] for h in hosts)
    if not with_lb:
        sgs = [{"name": app, "rules": public, "description": f"{app}: SSH from admin networks, public web ports from anywhere"}]
    else:
        app_rules = ssh() + ([{"proto": "tcp", "ports": ports, "group_name": lb, "rule_desc": "Web from the load balancers"}]
                             if ports else []) \
            + [{"proto": "tcp", "ports": [int(redis_port)], "group_name": app, "rule_desc": "Redis from the app hosts"}]
        sgs = [{"name": lb, "rules": public, "description": f"{lb}: SSH from admin networks, public web ports from anywhere"},
               {"name": app, "rules": app_rules,
                "description": f"{app}: SSH from admin networks, web ports from {lb}, Redis from {app}"}]

    def groups_of(host: dict[str, Any]) -> list[str]:
        if not with_lb:
            return [app]
        return ([lb] if "lb" in host["groups"] else []) + ([app] if set(host["groups"]) - {"lb"} else [])

    return {"hosts": [{"name": f"{prefix}-{h['name']}", "groups": list(h["groups"]), "security_groups": groups_of(h)}
                      for h in hosts],
            "security_groups": sgs}


def flask_stack_lb_pairs(groups: Any, host: str, app_names: Any) -> list[list[str]]:
    """[[lb, app name], ...]: the load balancer servers ``host`` is for its
    apps, which a rolling deploy or rollback drains and enables. Only `web`
    hosts are servers on the load balancers; none without an `lb` group."""
    if host not in _group(groups, "web"):
        return []
    return [[lb, str(name)] for lb in _group(groups, "lb") for name in app_names or []]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "flask_stack_lb_pairs": flask_stack_lb_pairs,
            "flask_stack_address": flask_stack_address,
            "flask_stack_worker_hosts": flask_stack_worker_hosts,
            "flask_stack_public_web": flask_stack_public_web,
            "flask_stack_group_problems": flask_stack_group_problems,
            "flask_stack_aws_layout": flask_stack_aws_layout,
            "flask_stack_broker_host": flask_stack_broker_host,
            "flask_stack_redis_clients": flask_stack_redis_clients,
            "flask_stack_runs_broker": flask_stack_runs_broker,
            "flask_stack_behind_lb": flask_stack_behind_lb,
            "flask_stack_group_rules": flask_stack_group_rules,
        }
