"""conda-lock files -> the explicit package lists conda and pip install.

A conda-lock file (format version 1, the unified ``conda-lock.yml``) pins
every package of every platform with its URL and hashes. The host installs
its own platform's section without a solver:

* conda packages become an ``@EXPLICIT`` spec (``url#md5`` per line) for
  ``conda create --file``;
* pip packages become a ``--require-hashes`` requirements list
  (``name @ url --hash=sha256:...``).

    {{ lock_text | conda_lock_specs('linux-64', 'conda-lock.yml') }}
"""

from __future__ import annotations

from typing import Any

import yaml
from ansible.errors import AnsibleFilterError


def conda_lock_specs(text: str, platform: str = "linux-64", source: str = "conda-lock.yml") -> dict[str, str]:
    try:
        lock = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AnsibleFilterError(f"{source}: not valid YAML ({exc})") from exc
    if not isinstance(lock, dict) or not isinstance(lock.get("package"), list):
        raise AnsibleFilterError(f"{source}: not a conda-lock file (no 'package' list; expected conda-lock's unified format)")
    version = lock.get("version")
    if version not in (1, None):
        raise AnsibleFilterError(f"{source}: conda-lock format version {version!r} is not supported (expected 1)")

    declared = (lock.get("metadata") or {}).get("platforms") or []
    packages = [p for p in lock["package"] if isinstance(p, dict) and p.get("platform") == platform]
    if not packages:
        seen = sorted({str(p.get("platform")) for p in lock["package"] if isinstance(p, dict)} | set(declared))
        raise AnsibleFilterError(
            f"{source}: has no {platform} section (platforms: {', '.join(seen) or 'none'}); "
            f"re-lock with `conda-lock -p {platform}`"
        )

    conda_lines = ["@EXPLICIT"]
    pip_lines: list[str] = []
    for pkg in sorted(packages, key=lambda p: (p.get("manager", ""), str(p.get("name")))):
        name, url, hashes = pkg.get("name"), pkg.get("url"), pkg.get("hash") or {}
        if pkg.get("optional") and pkg.get("category", "main") != "main":
            continue
        if not isinstance(url, str) or not url:
            raise AnsibleFilterError(f"{source}: package {name!r} ({platform}) has no url")
        manager = pkg.get("manager", "conda")
        if manager == "conda":
            if not hashes.get("md5"):
                raise AnsibleFilterError(f"{source}: conda package {name!r} ({platform}) has no md5 hash")
            conda_lines.append(f"{url}#{hashes['md5']}")
        elif manager == "pip":
            if not hashes.get("sha256"):
                raise AnsibleFilterError(f"{source}: pip package {name!r} ({platform}) has no sha256 hash")
            pip_lines.append(f"{name} @ {url} --hash=sha256:{hashes['sha256']}")
        else:
            raise AnsibleFilterError(f"{source}: package {name!r} has unknown manager {manager!r}")
    return {"conda": "\n".join(conda_lines) + "\n", "pip": "\n".join(pip_lines) + ("\n" if pip_lines else "")}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"conda_lock_specs": conda_lock_specs}
