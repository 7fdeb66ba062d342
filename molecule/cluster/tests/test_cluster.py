"""The cluster as a user sees it: one HTTPS address (the load balancer) in
front of two app hosts, one Redis, deploys that roll host by host."""

from __future__ import annotations

import time

from playbook import ROOT, ansible_env, run

from conftest import (LB, PROBE, REDIS, WEBS, WORKERS, Load, address, assert_each_host_back_up_by_its_checks, edit,
                      exec_in, hook_runs, hostname, lb_request, lb_server_events, playbook, release, rotation, servers,
                      wait_for)

WEB_NAMES = ["flask-stack-cluster-web1", "flask-stack-cluster-web2"]


def test_an_unchanged_converge_ends_on_every_host_after_one_check(pytestconfig):
    """First, while the hosts are as molecule's last (full) converge left
    them: site.yml with the default converge_full=false takes the fast path
    on all four hosts at once (README, "The no-op converge's fast path")."""
    result = run(pytestconfig.option.ansible_inventory, ROOT / "site.yml", "-e", "converge_full=false",
                 env=ansible_env(project_config=False), timeout=1800)
    print(f"\nno-op site.yml on the fast path, 4 hosts: {result.seconds:.1f} s")
    assert result.rc == 0, result.out[-4000:]
    assert result.out.count("Converge path: fast") == 4, result.out[-4000:]
    assert {c["changed"] for c in result.recap().values()} == {0} and len(result.recap()) == 4, result.recap()
    assert "TASK [haproxy" not in result.out and "TASK [redis" not in result.out, result.out[-4000:]


def test_https_at_the_lb_with_a_pebble_certificate_hsts_and_a_redirect():
    status, headers, body = lb_request("GET", "/healthz")  # verified against Pebble's root
    assert status == 200 and body["status"] == "OK", (status, body)
    assert headers.get("strict-transport-security", headers.get("Strict-Transport-Security", "")).startswith("max-age=")
    script = ("import http.client; c = http.client.HTTPConnection('hello.test', 80, timeout=10);"
              "c.request('GET', '/x?y=1'); r = c.getresponse(); print(r.status, r.getheader('Location'))")
    r = exec_in(PROBE, "python3", "-c", script)
    assert r.stdout.split() == ["301", "https://hello.test/x?y=1"], r.stdout + r.stderr
    # an unknown Host header gets no app
    script = ("import http.client, ssl; c = http.client.HTTPSConnection('hello.test', 443, timeout=10,"
              " context=ssl._create_unverified_context()); c.request('GET', '/', headers={'Host': 'other.test'});"
              " print(c.getresponse().status)")
    assert exec_in(PROBE, "python3", "-c", script).stdout.strip() == "421"


def test_requests_spread_over_both_web_hosts():
    answered = [lb_request("GET", "/healthz")[2]["host"] for _ in range(10)]
    print(f"\nhosts that answered 10 requests: {answered}")
    assert set(answered) == {hostname(w) for w in WEBS}, answered


def test_runtime_api_is_root_only_and_both_servers_are_up():
    assert rotation() == {name: "UP" for name in WEB_NAMES}, servers()
    mode = exec_in(LB, "stat", "-c", "%a %U", "/run/haproxy/admin.sock").stdout.split()
    assert mode == ["600", "root"], mode
    r = exec_in(LB, "setpriv", "--reuid=haproxy", "--regid=haproxy", "--clear-groups", "sh", "-c",
                "echo 'show stat' | socat stdio unix-connect:/run/haproxy/admin.sock")
    assert r.returncode != 0 and "Permission denied" in r.stderr, (r.returncode, r.stderr)


def test_a_drained_server_stays_drained_across_a_reload():
    sock = "socat stdio unix-connect:/run/haproxy/admin.sock"
    try:
        assert exec_in(LB, "sh", "-c", f"echo 'disable server app_hello/{WEB_NAMES[1]}' | {sock}").returncode == 0
        assert servers()[WEB_NAMES[1]] == "MAINT"
        assert exec_in(LB, "systemctl", "reload", "haproxy").returncode == 0
        time.sleep(1)
        assert servers()[WEB_NAMES[1]] == "MAINT", servers()
    finally:
        exec_in(LB, "sh", "-c", f"echo 'enable server app_hello/{WEB_NAMES[1]}' | {sock}")
    assert wait_for(lambda: servers()[WEB_NAMES[1]] == "UP", 15), servers()


def test_a_job_posted_through_the_lb_is_executed_by_a_worker():
    status, _, answer = lb_request("POST", "/api/jobs/add", {"a": 40, "b": 2})
    assert status == 202, (status, answer)
    job = answer["id"]

    def done():
        st, _, ans = lb_request("GET", f"/api/jobs/{job}")
        return ans if st == 200 and ans.get("state") in ("SUCCESS", "FAILURE") else None

    result = wait_for(done, 60, step=0.5)
    assert result and result["state"] == "SUCCESS" and result["result"] == 42, result
    # workers on the worker group (the Redis host and both web hosts), beat
    # on the first worker host only (the Redis host: molecule sorts a group's hosts)
    for host in WORKERS:
        assert exec_in(host, "systemctl", "is-active", "celery-hello-worker.service").stdout.strip() == "active"
    beat = [exec_in(h, "systemctl", "is-active", "celery-hello-beat.service").stdout.strip() for h in WORKERS]
    assert beat == ["active", "inactive", "inactive"], beat
    for host in WORKERS[1:]:
        assert exec_in(host, "test", "-e", "/etc/systemd/system/celery-hello-beat.service").returncode != 0, host


def test_a_worker_only_host_runs_celery_and_no_web():
    # the Redis host is in group worker, not web: the app's release (same source as the web hosts), its
    # worker and, as the first worker host, beat; no web units, no nginx
    assert release(REDIS).split("-")[1] == release(WEBS[0]).split("-")[1], (release(REDIS), release(WEBS[0]))
    units = exec_in(REDIS, "systemctl", "list-units", "--all", "--plain", "--no-legend", "gunicorn-*", "nginx*",
                    "celery-*").stdout.split()
    names = sorted(u for u in units if u.endswith((".service", ".socket")))
    assert names == ["celery-hello-beat.service", "celery-hello-worker.service"], units
    assert exec_in(REDIS, "test", "-e", "/etc/systemd/system/gunicorn-hello.socket").returncode != 0
    # no web port on it, from the LB or anyone
    for outsider in (LB, PROBE):
        assert _connects(outsider, address(REDIS), 443).startswith("blocked"), outsider


def _connects(container: str, ip: str, port: int) -> str:
    script = (f"import socket; s = socket.create_connection(('{ip}', {port}), timeout=3);"
              "s.sendall(b'PING\\r\\n'); print(s.recv(100).decode().strip())")
    r = exec_in(container, "python3", "-c", script, timeout=30)
    return r.stdout.strip() if r.returncode == 0 else f"blocked: {r.stderr.strip().splitlines()[-1]}"


def test_redis_answers_only_web_hosts_and_only_with_a_password():
    ip = address(REDIS)
    for web in WEBS:
        # reachable, but nothing without the password
        assert _connects(web, ip, 6379).startswith("-NOAUTH"), web
    for outsider in (LB, PROBE):
        answer = _connects(outsider, ip, 6379)
        print(f"\nredis from {outsider}: {answer}")
        assert answer.startswith("blocked"), (outsider, answer)
    # web ports on the app hosts: from the LB only
    for web in WEBS:
        assert _connects(PROBE, address(web), 443).startswith("blocked"), web


def test_one_web_host_stopped_under_load_leaves_and_rejoins_the_lb():
    load = Load(max_seconds=240)
    time.sleep(3)
    stopped = time.monotonic()
    stopped_at = time.time()
    assert exec_in(WEBS[1], "systemctl", "stop", "nginx").returncode == 0
    out = wait_for(lambda: servers()[WEB_NAMES[1]].startswith("DOWN"), 10, step=0.05)
    took_out = time.monotonic() - stopped
    time.sleep(2)
    back_start = time.monotonic()
    assert exec_in(WEBS[1], "systemctl", "start", "nginx").returncode == 0
    back = wait_for(lambda: servers()[WEB_NAMES[1]] == "UP", 20, step=0.1)
    back_after = time.monotonic() - back_start
    time.sleep(2)
    result = load.stop()
    print(f"\none web host stopped under load: out of the LB after {took_out:.2f} s, back {back_after:.2f} s "
          f"after its nginx returned; {result['sent']} sent, {result['failed']} failed {result['errors']}")
    assert out and took_out <= 3, (took_out, servers())
    assert back, servers()
    assert result["stopped_by"] == "stop-file" and result["first_start"] < stopped_at, result
    assert result["failed"] == 0, result
    answered = {lb_request("GET", "/healthz")[2]["host"] for _ in range(10)}
    assert answered == {hostname(w) for w in WEBS}, answered


def test_rolling_deploy_under_load_drops_no_request(app_copy, deploy):
    edit(app_copy / "hello/templates/index.html", "</", "<!-- cluster roll --></")
    before = [release(w) for w in WEBS]
    hooks_before = sum(hook_runs(w) for w in WEBS)
    load = Load()
    time.sleep(2)
    start = time.time()
    run = deploy(app_copy)
    end = time.time()
    time.sleep(2)
    result = load.stop()
    print(f"\nrolling deploy under load: {result['sent']} sent, {result['failed']} failed")
    print(f"rolling deploy took {end - start:.1f} s for {len(WEBS)} hosts; load summary {result}")
    assert run.rc == 0, run.out[-4000:]
    # release ids are <time shipped>-<source hash>: the hosts ship minutes apart
    after = [release(w) for w in WEBS]
    assert after[0].split("-")[1] == after[1].split("-")[1] and not set(after) & set(before), (before, after)
    # the worker-only host rolled too (last, never drained: it is no LB server)
    assert release(REDIS).split("-")[1] == after[0].split("-")[1], (release(REDIS), after)
    # the roll went host by host: each web host drained, then back UP
    assert run.out.count("TASK [Drain on the load balancers]") == 2, run.out[-3000:]
    # the before_switch hook ran once for the whole deploy
    assert sum(hook_runs(w) for w in WEBS) == hooks_before + 1
    assert result["stopped_by"] == "stop-file", result
    assert result["first_start"] < start and result["last_end"] > end, result
    assert result["failed"] == 0 and result["ok"] == result["sent"], result
    assert rotation() == {name: "UP" for name in WEB_NAMES}, servers()
    # HAProxy's log: web1 was UP on passing health checks before web2 was drained
    assert_each_host_back_up_by_its_checks(lb_server_events(start), WEB_NAMES)


def test_rollback_rolls_host_by_host_under_load(tmp_path):
    before = [release(w) for w in WEBS]
    load = Load()
    time.sleep(2)
    start = time.time()
    run = playbook("rollback.yml", {"rollback_app": "hello"}, tmp_path)
    result = load.stop()
    print(f"\nrollback under load: {result['sent']} sent, {result['failed']} failed")
    assert run.rc == 0, run.out[-4000:]
    after = [release(w) for w in WEBS]
    assert after[0].split("-")[1] == after[1].split("-")[1] and not set(after) & set(before), (before, after)
    assert run.out.count("TASK [Drain on the load balancers]") == 2, run.out[-3000:]
    assert result["failed"] == 0 and result["ok"] == result["sent"], result
    assert rotation() == {name: "UP" for name in WEB_NAMES}, servers()
    assert_each_host_back_up_by_its_checks(lb_server_events(start), WEB_NAMES)


def test_a_bad_release_stops_the_roll_on_the_first_host(app_copy, deploy):
    edit(app_copy / "hello/__init__.py", '    @app.get("/healthz")\n    def healthz() -> Response:\n',
         '    @app.get("/healthz")\n    def healthz() -> Response:\n        raise RuntimeError("bad release")\n')
    before = [release(h) for h in WORKERS]
    run = deploy(app_copy)
    assert run.rc != 0
    assert "failed its health check" in run.out, run.out[-3000:]
    # the first host failed its gate and is back on its old release; the
    # second web host and the worker-only host were never touched: no task of
    # the deploy play ran on them
    assert [release(h) for h in WORKERS] == before
    roll = run.out.split("PLAY [Deploy the apps]", 1)[1].split("PLAY RECAP", 1)[0]
    assert "[flask-stack-cluster-web1" in roll, roll[-3000:]
    untouched = [h for h in (WEBS[1], REDIS) if f"[{h}" in roll or f": {h}]" in roll]
    assert not untouched, (untouched, roll[-3000:])
    assert run.out.count("TASK [Drain on the load balancers]") == 1, run.out[-3000:]
    assert rotation() == {name: "UP" for name in WEB_NAMES}, servers()
    answered = {lb_request("GET", "/healthz")[2]["host"] for _ in range(10)}
    assert answered == {hostname(w) for w in WEBS}, answered

