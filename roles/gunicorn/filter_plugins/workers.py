"""Worker count for `workers: auto`: 2 x cores + 1 (gunicorn's rule of thumb),
capped by the memory left after a reserve, never fewer than one.

    {{ ansible_facts.processor_vcpus | gunicorn_workers(ansible_facts.memtotal_mb, 128, 256) }}
"""

from __future__ import annotations

from typing import Any


def gunicorn_workers(cores: Any, memory_mb: Any, per_worker_mb: Any, reserve_mb: Any, apps: Any = 1) -> int:
    cores, memory_mb, per_worker_mb, reserve_mb = int(cores), int(memory_mb), int(per_worker_mb), int(reserve_mb)
    apps = max(1, int(apps))
    by_cpu = 2 * max(1, cores) + 1
    by_memory = (memory_mb - reserve_mb) // max(1, per_worker_mb) // apps
    return max(1, min(by_cpu, by_memory))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"gunicorn_workers": gunicorn_workers}
