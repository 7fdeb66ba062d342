"""The host's resolved settings in the converge's fingerprint
(roles/converge/lookup_plugins/flask_stack_settings.py): what counts, and
that a value read by a lookup counts by its value."""

from __future__ import annotations

import re

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from playbook import ROOT, ansible_env, run
from plugin_modules import load

settings = load("roles/converge/lookup_plugins/flask_stack_settings.py")


def lookup(variables: dict, *terms: str):
    loader = DataLoader()
    module = settings.LookupModule(loader=loader, templar=Templar(loader=loader, variables=variables))
    return module.run(list(terms), variables=variables)[0]


BASE = {"apps": [{"name": "hello"}], "gunicorn_timeout": 30, "ansible_host": "203.0.113.7", "ansible_user": "admin"}


def test_settings_and_connection_count_magic_facts_and_the_switch_do_not():
    base = lookup(BASE)
    assert lookup(dict(BASE)) == base
    assert lookup({**BASE, "gunicorn_timeout": 31}) != base
    assert lookup({**BASE, "ansible_host": "203.0.113.8"}) != base
    assert lookup({**BASE, "ansible_memtotal_mb": 512, "inventory_hostname": "x", "groups": {"web": ["x"]},
                   "_deploy_fast": True, "converge_full": True, "omit": "__omit_place_holder__1"}) == base
    assert lookup(BASE, "names") == ["ansible_host", "ansible_user", "apps", "gunicorn_timeout"]


def test_facts_the_fact_cache_brings_back_do_not_count():
    # a run after a full converge finds getent's facts (and the gathered ones) in the fact cache
    cached = {"getent_passwd": {"root": ["x", "0"]}, "distribution": "Debian"}
    assert lookup({**BASE, "ansible_facts": cached, "getent_passwd": cached["getent_passwd"],
                   "ansible_distribution": "Debian"}) == lookup(BASE)


def test_a_templated_value_counts_by_what_it_resolves_to():
    # _source stands for what only templating sees (a run's own fact here)
    variables = {**BASE, "redis_password": trust_as_template("{{ _source }}"), "_source": "first-password-0123"}
    first = lookup(variables)
    assert lookup({**variables, "_source": "second-password-0123"}) != first


def test_a_password_read_from_the_environment_counts_in_a_real_run(tmp_path):
    """A real ansible-playbook run (controller only): an env lookup's value
    changes the hash."""
    (tmp_path / "inv.yml").write_text("web: {hosts: {h1: {ansible_connection: local}}}\n")
    (tmp_path / "p.yml").write_text(
        "- hosts: web\n  gather_facts: false\n  vars:\n"
        "    redis_password: \"{{ lookup('ansible.builtin.env', 'FLASK_STACK_TEST_PW') }}\"\n"
        "  tasks:\n    - ansible.builtin.debug: {msg: \"settings: {{ lookup('flask_stack_settings') }}\"}\n")
    lookups = str(ROOT / "roles/converge/lookup_plugins")

    def digest(password: str) -> str:
        result = run(tmp_path / "inv.yml", tmp_path / "p.yml",
                     env=ansible_env(FLASK_STACK_TEST_PW=password, ANSIBLE_LOOKUP_PLUGINS=lookups))
        assert result.rc == 0, result.out[-2000:]
        return re.search(r"settings: ([0-9a-f]{64})", result.out).group(1)

    first = digest("first-password-0123")
    assert digest("first-password-0123") == first
    assert digest("second-password-0123") != first


def test_a_value_that_needs_facts_counts_by_its_text():
    variables = {**BASE, "gunicorn_workers": trust_as_template("{{ ansible_facts.processor_vcpus * 2 }}")}
    assert len(lookup(variables)) == 64
