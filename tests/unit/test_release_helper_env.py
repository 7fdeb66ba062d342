"""The release helper's `begin` finds a release's environment by the python_env
role's key (issue 12): the name it computes must be the one env.yml computes
with Ansible's filters, or every code-only deploy would build (or fail to
link) the environment it should reuse. Runs the helper's own function on a
temporary release; the Jinja side is the environment's name and key input
in roles/python_env/vars/main.yml (_python_env_dir, _python_env_key_input)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.machinery
import importlib.util
import os
from pathlib import Path

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "roles/app/files/flask-stack-release"
LOCK = "requirements.txt"
TEXT = "flask==3.1.0 \\\n    --hash=sha256:0123\n"


def helper():
    loader = importlib.machinery.SourceFileLoader("flask_stack_release", str(HELPER))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def render(expression: str, checksum: str = "", envs_dir: str = "") -> str:
    """expression rendered by Ansible with the role's vars (vars/main.yml)
    for a venv app (uv) whose lock input has sha256 `checksum` (as
    env_host.yml's stat of a git source's lock reports it)."""
    role_vars = yaml.safe_load((ROOT / "roles/python_env/vars/main.yml").read_text())
    variables = {
        **{name: trust_as_template(value) if isinstance(value, str) else value for name, value in role_vars.items()},
        "python_env_app": {"python": {"kind": "venv", "lock_format": "requirements"}, "envs_dir": envs_dir},
        "python_env_installer": "uv", "python_env_python": "python3",
        "python_env_conda_platform": "linux-64", "python_env_conda_channels": ["conda-forge"],
        "_python_env_lock_stat": {"stat": {"exists": True, "isreg": True, "checksum": checksum}},
    }
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expression))


def env_yml_name(envs_dir: Path, checksum: str) -> str:
    """The environment env.yml names (_python_env_dir, the role's one
    definition, for a lock input read on the host)."""
    return render("{{ _python_env_dir }}", checksum, str(envs_dir))


def key_input() -> str:
    """The key input env_plan.yml hands to the helper (--env-key)."""
    return render("{{ _python_env_key_input }}")


def begin_args(envs_dir: Path, key_input: str) -> argparse.Namespace:
    return argparse.Namespace(env_lock=LOCK, env_key=key_input, env_prefix=f"{envs_dir}/venv-",
                              env_link=".python", env_read=True)


def test_begin_names_links_and_reads_the_environment_env_yml_names(tmp_path):
    release, envs = tmp_path / "releases/1-abc", tmp_path / "envs"
    release.mkdir(parents=True)
    (release / LOCK).write_text(TEXT)
    checksum = hashlib.sha256(TEXT.encode()).hexdigest()
    expected = env_yml_name(envs, checksum)
    Path(expected).mkdir(parents=True)
    (Path(expected) / ".flask-stack-complete").write_text("done\n")
    assert "{lock_sha256}" in key_input()
    found, changed = helper().release_env(begin_args(envs, key_input()), str(release))
    assert found["dir"] == expected
    assert found["complete"] and found["linked"] and changed
    assert os.readlink(release / ".python") == expected
    assert found["lock"]["checksum"] == checksum and found["lock"]["isreg"]
    assert base64.b64decode(found["lock"]["content"]).decode() == TEXT
    # linked already: nothing changes the second time
    again, changed = helper().release_env(begin_args(envs, key_input()), str(release))
    assert again["dir"] == expected and not changed


def test_begin_leaves_an_unfinished_environment_and_a_missing_lock_to_the_role(tmp_path):
    release, envs = tmp_path / "releases/1-abc", tmp_path / "envs"
    release.mkdir(parents=True)
    (release / LOCK).write_text(TEXT)
    # not finished (no mark): not linked, env.yml builds it
    found, changed = helper().release_env(begin_args(envs, key_input()), str(release))
    assert not found["complete"] and not found["linked"] and not changed
    assert not (release / ".python").exists()
    # no lock input: reported as missing, env.yml's check names it
    (release / LOCK).unlink()
    found, changed = helper().release_env(begin_args(envs, key_input()), str(release))
    assert found["lock"] == {"exists": False, "isreg": False} and found["dir"] == "" and not changed
