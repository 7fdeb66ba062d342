"""flask_stack_source_problems: a local src must be a readable directory
that holds the wsgi module and the environment's lock file."""

from __future__ import annotations

import pytest
from plugin_modules import load

model = load("plugins/filter/flask_stack.py")


def checked(src, **extra):
    app = {"name": "hello", "domains": ["hello.example.com"], "src": str(src), "wsgi": "hello.wsgi:app", **extra}
    return model.flask_stack_source_problems(model.flask_stack_apps([app]))


@pytest.fixture
def src(tmp_path):
    (tmp_path / "hello").mkdir()
    (tmp_path / "hello" / "wsgi.py").write_text("app = None\n")
    (tmp_path / "requirements.txt").write_text("flask==3.1.3 --hash=sha256:00\n")
    return tmp_path


def test_a_complete_source_has_no_problem(src):
    assert checked(src) == []


def test_a_package_module_counts(src):
    (src / "hello" / "wsgi.py").unlink()
    (src / "hello" / "wsgi").mkdir()
    (src / "hello" / "wsgi" / "__init__.py").write_text("app = None\n")
    assert checked(src) == []


def test_missing_path(tmp_path):
    assert checked(tmp_path / "nope") == [f"apps[0] (hello).src: '{tmp_path / 'nope'}' does not exist on the controller"]


def test_a_file_is_not_a_source(src):
    assert checked(src / "requirements.txt") == [f"apps[0] (hello).src: '{src / 'requirements.txt'}' is not a directory"]


def test_missing_module_and_lock(src):
    (src / "hello" / "wsgi.py").unlink()
    (src / "requirements.txt").unlink()
    problems = checked(src)
    assert "needs hello/wsgi.py (or hello/wsgi/__init__.py) there" in problems[0]
    assert "requirements 'requirements.txt' (the venv environment's lock) is missing there" in problems[1]


def test_conda_lock_file_is_looked_for(src):
    problems = checked(src, python={"kind": "conda", "environment_file": "environment.yml"})
    assert problems == [f"apps[0] (hello).src: '{src}' is not the app: python.environment_file 'environment.yml' "
                        "(the conda environment's lock) is missing there"]


def test_git_sources_are_not_looked_at():
    app = {"name": "hello", "domains": ["hello.example.com"], "src": {"git": {"repo": "https://example.com/x.git"}},
           "wsgi": "hello.wsgi:app"}
    assert model.flask_stack_source_problems(model.flask_stack_apps([app])) == []
