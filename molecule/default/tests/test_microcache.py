"""nginx microcaching (apps[].cache: /api/time for 60 s on hello): a cached
hit, and what must never come from the cache (responses that set a cookie or
forbid storing, requests with a cookie or credentials, the operator's bypass)."""

from __future__ import annotations

import json
import uuid

from conftest import ROOT_ON_WEB, _parse

testinfra_hosts = ["ansible://web"]
DOMAIN = "hello.test"


def get(host, path, *headers):
    args = " ".join(f"-H '{h}'" for h in headers)
    cmd = host.run(f"curl -s -i --max-time 10 --cacert {ROOT_ON_WEB} --resolve {DOMAIN}:443:127.0.0.1 "
                   f"{args} 'https://{DOMAIN}{path}'")
    response = _parse(cmd.stdout, cmd.rc)
    assert response.status == 200, cmd.stdout + cmd.stderr
    return response


def ns(response):
    return json.loads(response.body)["ns"]


def fresh():
    return f"/api/time?m={uuid.uuid4().hex}"


def test_a_second_request_is_a_cache_hit_with_the_same_answer(host, pebble_root):
    path = fresh()
    first, second = get(host, path), get(host, path)
    assert first.headers["x-cache-status"] == "MISS"
    assert second.headers["x-cache-status"] == "HIT"
    assert ns(second) == ns(first)
    # the security headers survive in the cached location
    assert "max-age=" in second.headers["strict-transport-security"]


def test_a_response_that_sets_a_cookie_is_never_cached(host, pebble_root):
    path = fresh() + "&cookie=1"
    first, second = get(host, path), get(host, path)
    assert "seen=1" in second.headers["set-cookie"]
    assert second.headers["x-cache-status"] == "MISS"
    assert ns(second) != ns(first)


def test_cache_control_no_store_is_honoured(host, pebble_root):
    path = fresh() + "&nostore=1"
    first, second = get(host, path), get(host, path)
    assert second.headers["x-cache-status"] == "MISS"
    assert ns(second) != ns(first)


def test_cookies_credentials_and_the_bypass_header_skip_the_cache(host, pebble_root):
    path = fresh()
    cached = ns(get(host, path))
    assert get(host, path).headers["x-cache-status"] == "HIT"
    for header in ("Cookie: session=x", "Authorization: Bearer x", "X-Cache-Bypass: 1"):
        skipped = get(host, path, header)
        assert skipped.headers["x-cache-status"] == "BYPASS", header
        assert ns(skipped) != cached, header
    # and the bypass did not replace the cached answer
    assert ns(get(host, path)) == cached


def test_paths_without_cache_are_not_cached(host, pebble_root):
    response = get(host, f"/api/add?a=1&b=2&m={uuid.uuid4().hex}")
    assert "x-cache-status" not in response.headers
