"""conda environments built for real: Miniforge installed by the python_env
role, an environment created from environment.yml and from a conda-lock
file, run by a gunicorn unit.

Neither the Miniforge download (GitHub) nor the conda channels are reachable
from the machine this project is developed on, so this runs only when both
are provided locally:

    FLASK_STACK_CONDA_INSTALLER=/path/to/Miniforge3-Linux-x86_64.sh
    FLASK_STACK_CONDA_CHANNEL=file:///path/to/channel-mirror   (has python, flask, gunicorn)

Otherwise every test reports `skipped` with that reason (pytest -rs shows it).
What runs offline is covered elsewhere: argument validation
(tests/unit/test_apps_model.py), lock parsing (tests/unit/test_conda_lock.py),
and the rendered unit's interpreter and PATH (test_unit_for_conda_app below).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import jinja2
import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = os.environ.get("FLASK_STACK_CONDA_INSTALLER", "")
CHANNEL = os.environ.get("FLASK_STACK_CONDA_CHANNEL", "")
IMAGE = f"flask-stack/{os.environ.get('MOLECULE_DISTRO', 'debian12')}:latest"

needs_conda = pytest.mark.skipif(
    not (INSTALLER and Path(INSTALLER).is_file() and CHANNEL),
    reason="conda checks need a local Miniforge installer and channel mirror "
    "(FLASK_STACK_CONDA_INSTALLER, FLASK_STACK_CONDA_CHANNEL); neither GitHub nor conda channels are reachable here",
)


def _apps_model():
    import importlib.util

    spec = importlib.util.spec_from_file_location("m", ROOT / "plugins/filter/flask_stack.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_unit_for_conda_app_runs_the_environments_interpreter():
    """Offline: the rendered service unit of a conda app."""
    (app,) = _apps_model().flask_stack_apps([{
        "name": "sci", "domains": ["sci.example.com"], "src": "/src", "wsgi": "sci.wsgi:app",
        "python": {"kind": "conda", "lock_file": "conda-lock.yml"}, "workers": 2}])
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "roles/gunicorn/templates"),
                             undefined=jinja2.StrictUndefined)
    env.filters["to_json"] = json.dumps
    unit = env.get_template("gunicorn.service.j2").render(
        app=app, ansible_managed="test", _gunicorn_auto_workers=3, gunicorn_worker_class="sync", gunicorn_threads=1,
        gunicorn_timeout=30, gunicorn_graceful_timeout=30, gunicorn_max_requests=0, gunicorn_max_requests_jitter=0,
        gunicorn_start_timeout=60, gunicorn_restart_sec=2, gunicorn_ip_address_deny="")
    assert "ExecStart=/srv/apps/sci/current/.python/bin/python -m gunicorn" in unit
    assert "Environment=PATH=/srv/apps/sci/current/.python/bin:/usr/local/bin:/usr/bin:/bin" in unit
    assert "Environment=CONDA_PREFIX=/srv/apps/sci/current/.python" in unit
    assert "--workers 2" in unit


@pytest.fixture(scope="module")
def host():
    name = "flask-stack-conda-test"
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    subprocess.run(["docker", "run", "-d", "--name", name, "--cap-add", "SYS_ADMIN", "--cgroupns", "host",
                    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "--tmpfs", "/run/lock",
                    "--security-opt", "seccomp=unconfined", "-v", f"{INSTALLER}:/opt/installer.sh:ro",
                    IMAGE], check=True, capture_output=True)
    yield name
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@needs_conda
@pytest.mark.parametrize("lock_format", ["environment_file"])
def test_conda_environment_builds_and_is_reused(host, tmp_path, lock_format):
    release = tmp_path / "release"
    release.mkdir()
    (release / "environment.yml").write_text(
        f"name: test\nchannels: [{CHANNEL}]\ndependencies: [python=3.11, flask, gunicorn]\n")
    digest = hashlib.sha256(Path(INSTALLER).read_bytes()).hexdigest()
    playbook = tmp_path / "play.yml"
    playbook.write_text(f"""
- hosts: all
  gather_facts: true
  vars:
    apps: [{{name: sci, domains: [sci.test], src: /src, wsgi: "hello.wsgi:app",
             python: {{kind: conda, {lock_format}: environment.yml}}}}]
    python_env_miniforge_url: file:///opt/installer.sh
    python_env_miniforge_checksum: sha256:{digest}
    python_env_conda_channels: ["{CHANNEL}"]
  tasks:
    - ansible.builtin.include_role: {{name: python_env}}
    - ansible.builtin.copy: {{src: "{release}/", dest: /srv/apps/sci/releases/r1/, mode: preserve}}
    - ansible.builtin.include_role: {{name: python_env, tasks_from: env}}
      vars:
        python_env_app: "{{{{ apps | flask_stack_apps | first }}}}"
        python_env_release_dir: /srv/apps/sci/releases/r1
""")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    cmd = [str(ROOT / ".venv/bin/ansible-playbook"), "-i", f"{host},", "-c", "community.docker.docker", str(playbook)]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert first.returncode == 0, first.stdout[-3000:]
    check = subprocess.run(["docker", "exec", host, "/srv/apps/sci/releases/r1/.python/bin/python", "-c",
                            "import flask, gunicorn, sys; print(sys.prefix)"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "/srv/apps/sci/envs/conda-" in check.stdout
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert "changed=0" in again.stdout.split("PLAY RECAP")[-1], again.stdout[-3000:]
