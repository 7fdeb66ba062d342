"""Helpers for the testinfra checks: HTTP requests made inside the web host,
to nginx on 127.0.0.1, as a user would with curl."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

import pytest


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    curl_rc: int = 0

    def json(self):
        return json.loads(self.body)


def _parse(raw: str, rc: int) -> Response:
    if rc != 0 or not raw:
        return Response(status=0, curl_rc=rc)
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        key = key.strip().lower()
        # a repeated header is folded into one, as HTTP allows
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return Response(status=status, headers=headers, body=body)


@pytest.fixture
def http(host):
    """http(path, host_header) -> Response, fetched through nginx on port 80."""

    def get(path: str, domain: str, port: int = 80) -> Response:
        cmd = host.run(
            "curl -s -i --max-time 10 -H %s %s",
            f"Host: {domain}",
            f"http://127.0.0.1:{port}{path}",
        )
        return _parse(cmd.stdout, cmd.rc)

    return get


@pytest.fixture
def marker() -> str:
    """A unique string to find one request in the logs."""
    return uuid.uuid4().hex
