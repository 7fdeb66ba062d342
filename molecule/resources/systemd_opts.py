#!/usr/bin/env python3
"""The `docker run` options that make a container a "VM" with systemd as
PID 1, read from the one place that defines them: the molecule base config
(.config/molecule/config.yml, flask_stack_systemd_platform). Used by
scripts/demo.sh and tests/redis, so they start containers exactly as the
molecule scenarios do.

    molecule/resources/systemd_opts.py     prints one option per line
"""

from __future__ import annotations

from pathlib import Path

import yaml

BASE_CONFIG = Path(__file__).resolve().parents[2] / ".config/molecule/config.yml"


def platform() -> dict:
    """The shared platform options (molecule's docker driver keys)."""
    config = yaml.safe_load(BASE_CONFIG.read_text())
    return config["provisioner"]["inventory"]["host_vars"]["localhost"]["flask_stack_systemd_platform"]


def docker_run_args() -> list[str]:
    """The same options as `docker run` arguments (image and command excluded)."""
    p = platform()
    args: list[str] = []
    for cap in p["capabilities"]:
        args += ["--cap-add", cap]
    args += ["--cgroupns", p["cgroupns_mode"]]
    for volume in p["volumes"]:
        args += ["-v", volume]
    for mount in p["tmpfs"]:
        args += ["--tmpfs", mount]
    for opt in p["security_opts"]:
        args += ["--security-opt", opt]
    return args


if __name__ == "__main__":
    print("\n".join(docker_run_args()))
