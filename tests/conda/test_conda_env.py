"""conda environments built for real: Miniforge installed by the python_env
role, an environment created from environment.yml and from a conda-lock
file, run by a gunicorn unit.

Neither the Miniforge download (GitHub) nor the conda channels are reachable
from the machine this project is developed on, so this runs only when both
are provided locally:

    FLASK_STACK_CONDA_INSTALLER=/path/to/Miniforge3-Linux-x86_64.sh
    FLASK_STACK_CONDA_CHANNEL=file:///path/to/channel-mirror   (has python, flask, gunicorn)

Both inputs are built: `environment_file` (environment.yml, solved on the
host) and `lock_file` (conda-lock.yml, installed without a solver). The lock
file is made from the environment the first build produced (`conda list
--explicit --md5`), so it names packages the local channel really has.

Otherwise the build tests report `skipped` with that reason (pytest -rs
shows it). What runs offline: the rendered unit's interpreter and PATH
(test_unit_for_conda_app below), the conversion that turns an explicit
list into the conda-lock.yml the gated test feeds the role, read back by the
role's own filter (test_lock_made_by_this_test_is_one_the_role_reads), and
elsewhere argument validation (tests/unit/test_apps_model.py) and lock
parsing (tests/unit/test_conda_lock.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml
from playbook import Run
from playbook import run as run_playbook

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


def explicit_to_conda_lock(explicit: str, platform: str = "linux-64") -> str:
    """A conda-lock (format 1) file from `conda list --explicit --md5` output."""
    packages = []
    for line in explicit.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "@")):
            continue
        url, _, md5 = line.partition("#")
        filename = url.rsplit("/", 1)[1]
        stem = filename.removesuffix(".conda").removesuffix(".tar.bz2")
        name, version, _build = stem.rsplit("-", 2)
        packages.append({"name": name, "version": version, "manager": "conda", "platform": platform,
                         "dependencies": {}, "url": url, "hash": {"md5": md5}, "category": "main",
                         "optional": False})
    assert packages, f"no packages in: {explicit!r}"
    return yaml.safe_dump({"version": 1, "metadata": {"platforms": [platform], "sources": ["environment.yml"]},
                           "package": packages}, sort_keys=False)


def _conda_lock_filter():
    import importlib.util

    spec = importlib.util.spec_from_file_location("conda_lock", ROOT / "roles/python_env/filter_plugins/conda_lock.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_lock_made_by_this_test_is_one_the_role_reads():
    """Offline: the conda-lock.yml the gated lock_file build uses, read back
    by the role's filter, installs exactly the packages it was made from."""
    explicit = (
        "# platform: linux-64\n@EXPLICIT\n"
        "file:///mirror/linux-64/python-3.11.9-hb806964_0_cpython.conda#ac68acfa8b558ed406c75e98d3428d7b\n"
        "file:///mirror/noarch/flask-3.1.3-pyhd8ed1ab_0.conda#0123456789abcdef0123456789abcdef\n"
        "file:///mirror/linux-64/libzlib-1.3.1-hb9d3cd8_2.tar.bz2#fedcba9876543210fedcba9876543210\n"
    )
    lock = explicit_to_conda_lock(explicit)
    specs = _conda_lock_filter().conda_lock_specs(lock, "linux-64", "conda-lock.yml")
    wanted = [line for line in explicit.splitlines() if line.startswith("file://")]
    assert specs["conda"].splitlines()[0] == "@EXPLICIT"
    assert sorted(specs["conda"].splitlines()[1:]) == sorted(wanted)
    assert specs["pip"] == ""
    names = [p["name"] for p in yaml.safe_load(lock)["package"]]
    assert sorted(names) == ["flask", "libzlib", "python"]


def test_unit_for_conda_app_runs_the_environments_interpreter():
    """Offline: the rendered service unit of a conda app."""
    (app,) = _apps_model().flask_stack_apps([{
        "name": "sci", "domains": ["sci.example.com"], "src": "/src", "wsgi": "sci.wsgi:app",
        "python": {"kind": "conda", "lock_file": "conda-lock.yml"}, "workers": 2}])
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROOT / "roles/gunicorn/templates"),
                             undefined=jinja2.StrictUndefined)
    env.filters["to_json"] = json.dumps
    env.filters["bool"] = lambda v: str(v).lower() in ("1", "true", "yes", "on")
    unit = env.get_template("gunicorn.service.j2").render(
        app=app, ansible_managed="test", _gunicorn_auto_workers=3, gunicorn_access_log=False,
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


def _play(tmp_path: Path, release: Path, key: str, value: str, release_id: str) -> Path:
    digest = hashlib.sha256(Path(INSTALLER).read_bytes()).hexdigest()
    playbook = tmp_path / f"play-{key}.yml"
    playbook.write_text(f"""
- hosts: all
  gather_facts: true
  vars:
    apps: [{{name: sci, domains: [sci.test], src: /src, wsgi: "hello.wsgi:app",
             python: {{kind: conda, {key}: {value}}}}}]
    python_env_miniforge_url: file:///opt/installer.sh
    python_env_miniforge_checksum: sha256:{digest}
    python_env_conda_channels: ["{CHANNEL}"]
  tasks:
    - ansible.builtin.include_role: {{name: python_env}}
    - ansible.builtin.copy: {{src: "{release}/", dest: /srv/apps/sci/releases/{release_id}/, mode: preserve}}
    - ansible.builtin.include_role: {{name: python_env, tasks_from: env}}
      vars:
        python_env_app: "{{{{ apps | flask_stack_apps | first }}}}"
        python_env_release_dir: /srv/apps/sci/releases/{release_id}
""")
    return playbook


def _converge(host: str, playbook: Path) -> Run:
    return run_playbook(f"{host},", playbook, "-c", "community.docker.docker", timeout=1800)


def _env_of(host: str, release_id: str) -> str:
    check = subprocess.run(["docker", "exec", host, f"/srv/apps/sci/releases/{release_id}/.python/bin/python", "-c",
                            "import flask, gunicorn, sys; print(sys.prefix)"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "/srv/apps/sci/envs/conda-" in check.stdout, check.stdout
    return check.stdout.strip()


@needs_conda
def test_conda_environment_builds_from_both_inputs_and_is_reused(host, tmp_path):
    """environment_file first; then a conda-lock.yml made from that
    environment (lock_file), installed without a solver into an environment
    of its own. Each re-run changes nothing."""
    release = tmp_path / "r1"
    release.mkdir()
    (release / "environment.yml").write_text(
        f"name: test\nchannels: [{CHANNEL}]\ndependencies: [python=3.11, flask, gunicorn]\n")
    play = _play(tmp_path, release, "environment_file", "environment.yml", "r1")
    first = _converge(host, play)
    assert first.returncode == 0, first.stdout[-3000:]
    env1 = _env_of(host, "r1")
    again = _converge(host, play)
    assert "changed=0" in again.stdout.split("PLAY RECAP")[-1], again.stdout[-3000:]

    # conda where the role installs it (python_env_tools_dir default /opt/flask-stack)
    explicit = subprocess.run(["docker", "exec", host, "/opt/flask-stack/miniforge/bin/conda", "list", "--explicit",
                               "--md5", "-p", env1], capture_output=True, text=True)
    assert explicit.returncode == 0, explicit.stderr
    locked = tmp_path / "r2"
    locked.mkdir()
    (locked / "conda-lock.yml").write_text(explicit_to_conda_lock(explicit.stdout))
    play = _play(tmp_path, locked, "lock_file", "conda-lock.yml", "r2")
    first = _converge(host, play)
    assert first.returncode == 0, first.stdout[-3000:]
    env2 = _env_of(host, "r2")
    assert env2 != env1  # another input, another environment key
    again = _converge(host, play)
    assert "changed=0" in again.stdout.split("PLAY RECAP")[-1], again.stdout[-3000:]
