"""conda-lock parsing (roles/python_env/filter_plugins/conda_lock.py): what a
host installs from a lock file, offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "conda_lock_filter", HERE.parents[1] / "roles/python_env/filter_plugins/conda_lock.py"
)
conda_lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conda_lock)
LOCK = (HERE / "fixtures/conda-lock.yml").read_text()


def test_linux_section_becomes_explicit_conda_and_hashed_pip_lists():
    specs = conda_lock.conda_lock_specs(LOCK, "linux-64")
    lines = specs["conda"].splitlines()
    assert lines[0] == "@EXPLICIT"
    assert sorted(lines[1:]) == sorted([
        "https://conda.anaconda.org/conda-forge/linux-64/numpy-1.26.4-py311h64a7726_0.conda#a502d7aad449a1206efb366d6a12c52d",
        "https://conda.anaconda.org/conda-forge/linux-64/python-3.11.9-hb806964_0_cpython.conda#ac68acfa8b558ed406c75e98d3428d7b",
    ])
    assert "osx-arm64" not in specs["conda"]
    assert specs["pip"] == (
        "flask @ https://files.pythonhosted.org/packages/py3/f/flask/flask-3.1.3-py3-none-any.whl"
        " --hash=sha256:f4bcbefc124291925f1a26446da31a5178f9483862233b23c0c96a20701f670c\n"
    )


def test_lock_without_a_linux_section_names_the_platforms():
    with pytest.raises(AnsibleFilterError, match=r"conda-lock.yml: has no linux-aarch64 section \(platforms: linux-64, osx-arm64\)"):
        conda_lock.conda_lock_specs(LOCK, "linux-aarch64")


def test_osx_only_lock_is_refused_for_linux():
    osx_only = LOCK.split("  - name: python\n    version: 3.11.9\n    manager: conda\n    platform: osx-arm64")[1]
    text = "version: 1\nmetadata: {platforms: [osx-arm64]}\npackage:\n  - name: python\n    manager: conda\n    platform: osx-arm64" + osx_only
    with pytest.raises(AnsibleFilterError, match="has no linux-64 section"):
        conda_lock.conda_lock_specs(text, "linux-64")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not yaml", "not valid YAML"),
        ("name: env\ndependencies: [python]\n", "not a conda-lock file"),
        ("version: 2\npackage: []\n", "format version 2 is not supported"),
        ("version: 1\npackage:\n  - {name: x, manager: conda, platform: linux-64, url: u, hash: {}}\n", "conda package 'x' (linux-64) has no md5"),
        ("version: 1\npackage:\n  - {name: y, manager: pip, platform: linux-64, url: u, hash: {md5: m}}\n", "pip package 'y' (linux-64) has no sha256"),
        ("version: 1\npackage:\n  - {name: z, manager: conda, platform: linux-64, hash: {md5: m}}\n", "package 'z' (linux-64) has no url"),
    ],
)
def test_bad_lock_files(text, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        conda_lock.conda_lock_specs(text, "linux-64")
