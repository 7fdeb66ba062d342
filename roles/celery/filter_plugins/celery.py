"""Process count for a worker's `concurrency: auto`: one per core (Celery's
own default), capped by the memory left after a reserve and shared by the
apps that size themselves, never fewer than one.

    {{ ansible_facts.processor_vcpus | celery_concurrency(app_memory_mb, 160, 384, 1) }}
"""

from __future__ import annotations

from typing import Any


def celery_concurrency(cores: Any, memory_mb: Any, per_process_mb: Any, reserve_mb: Any, apps: Any = 1) -> int:
    cores, memory_mb, per_process_mb, reserve_mb = int(cores), int(memory_mb), int(per_process_mb), int(reserve_mb)
    by_memory = (memory_mb - reserve_mb) // max(1, per_process_mb) // max(1, int(apps))
    return max(1, min(max(1, cores), by_memory))


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"celery_concurrency": celery_concurrency}
