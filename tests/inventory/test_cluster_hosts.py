"""Which plays run on which hosts of a cluster inventory with worker-only
hosts, read from `ansible-playbook --list-hosts` of the real playbooks (no
host is contacted; it lists a play's hosts unordered), the order a rolling
play takes them in (its hosts pattern resolved by Ansible's inventory, as
the play does), and the refusal of worker hosts without a shared broker
(site.yml against a throwaway target: it must stop in preflight)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from playbook import ROOT, ansible_env, ansible_playbook
from playbook import run as run_playbook
from plugin_modules import load

CONVERGE = load("plugins/filter/flask_stack_converge.py")

THROWAWAY = {"ansible_connection": "community.docker.docker", "ansible_host": "flask-stack-no-such-container",
             "ansible_python_interpreter": "/usr/bin/python3"}
GROUPS = {"lb": ["lb1"], "web": ["web1", "web2"], "worker": ["work1", "web2"], "redis": ["redis1"]}


def inventory(tmp_path: Path, groups: dict[str, list[str]]) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    children = {g: {"hosts": {h: THROWAWAY for h in hosts}} for g, hosts in groups.items()}
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": children}}))
    (inv / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump({"apps": [
        {"name": "hello", "domains": ["hello.example.com"], "src": str(ROOT / "app"), "wsgi": "hello.wsgi:app",
         "celery_app": "hello.tasks:celery", "worker": {"enabled": True}, "beat": {"enabled": True}}],
        "redis_password": "a-test-password-of-some-length", "letsencrypt_email": "ops@example.com"}))
    return inv


def plays(inv: Path, playbook: str) -> dict[str, set[str]]:
    """{play name: its hosts} from --list-hosts."""
    out = subprocess.run([ansible_playbook(), "-i", str(inv), str(ROOT / playbook), "--list-hosts"],
                         cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=120, check=True).stdout
    result: dict[str, set[str]] = {}
    for block in re.split(r"\n\s*play #\d+ ", out)[1:]:
        name = re.match(r"\(.*?\): (.*?)\tTAGS", block).group(1)
        result[name] = set(re.findall(r"^ {6}(\S+)$", block, re.M))
    return result


def rolling_order(inv: Path, playbook: str, play: str) -> list[str]:
    """The hosts of ``play`` in the order its serial batches take them."""
    pattern = next(p["hosts"] for p in yaml.safe_load((ROOT / playbook).read_text()) if p.get("name") == play)
    manager = InventoryManager(loader=DataLoader(), sources=[str(inv)])
    # a play of the converge: its pattern through flask_stack_converging (no fast path here)
    converging = re.fullmatch(r"\{\{ '([^']+)' \| flask_stack_converging\(groups\) \}\}", pattern)
    if converging:
        pattern = CONVERGE.flask_stack_converging(converging.group(1), manager.get_groups_dict())
    return [h.name for h in manager.get_hosts(pattern, order="inventory")]


def test_worker_only_hosts_get_the_app_but_no_web_server(tmp_path):
    inv = inventory(tmp_path, GROUPS)
    site = plays(inv, "site.yml")
    assert site["Web server"] == {"web1", "web2"}
    assert site["Harden the host"] == {"web1", "web2", "work1", "redis1", "lb1"}
    assert site["Deploy the apps"] == {"web1", "web2", "work1"}
    assert plays(inv, "playbooks/rollback.yml")["Roll back an app"] == {"web1", "web2", "work1"}
    # web hosts roll first, then the worker-only host
    assert rolling_order(inv, "playbooks/deploy.yml", "Deploy the apps") == ["web1", "web2", "work1"]
    assert rolling_order(inv, "playbooks/rollback.yml", "Roll back an app") == ["web1", "web2", "work1"]


def test_one_host_inventory_keeps_its_plays():
    site = plays(ROOT / "inventories/local", "site.yml")
    assert site["Web server"] == {"demo"}
    assert site["Deploy the apps"] == {"demo"}


def test_worker_hosts_without_a_redis_group_stop_in_preflight(tmp_path):
    groups = {k: v for k, v in GROUPS.items() if k != "redis"}
    result = run_playbook(inventory(tmp_path, groups), ROOT / "site.yml",
                          env=ansible_env(ANSIBLE_FACT_CACHING_CONNECTION=str(tmp_path / "facts")), timeout=300)
    assert result.rc != 0
    assert "inventory group worker: hosts ['work1'] are not in group web" in result.out, result.out[-3000:]
    assert "add a redis group" in result.out
    # stopped before any play that touches a host
    assert "TASK [base" not in result.out and "Gathering Facts" not in result.out
