"""The project's Python plugins (filters) as modules for unit tests, loaded
from their files: `load("plugins/filter/flask_stack.py")`."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load(relpath: str) -> ModuleType:
    """A fresh module object of ROOT/relpath (not registered in sys.modules)."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(f"flask_stack_test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
