"""workers: auto (roles/gunicorn/filter_plugins/workers.py) on the machines
the seeds ran on."""

from __future__ import annotations

import pytest
from plugin_modules import load

workers = load("roles/gunicorn/filter_plugins/workers.py")


@pytest.mark.parametrize(
    ("cores", "memory_mb", "apps", "expected"),
    [
        (1, 1024, 1, 3),     # 1 GB VM (t2.micro): 2n+1 = 3 fits in (1024-256)/128 = 6
        (1, 512, 1, 2),      # t2.nano: memory caps it at (512-256)/128 = 2
        (1, 512, 2, 1),      # two apps share that budget: 1 each
        (2, 1024, 2, 3),     # (1024-256)/128/2 = 3 < 5
        (1, 300, 1, 1),      # never fewer than one
        (8, 32768, 1, 17),   # a big machine: the CPU rule decides
        (0, 2048, 1, 3),     # a fact reporting 0 cores counts as one
    ],
)
def test_auto_workers(cores, memory_mb, apps, expected):
    assert workers.gunicorn_workers(cores, memory_mb, 128, 256, apps) == expected


def test_never_more_workers_than_fit_in_memory():
    for memory in range(256, 4096, 64):
        n = workers.gunicorn_workers(4, memory, 128, 256)
        assert n == 1 or n * 128 <= memory - 256
