#!/usr/bin/env python3
"""`make bench`: figures measured in one run on the demo VM, printed as a
table and written to .state/bench/bench.json.

All load runs inside the demo VM against 127.0.0.1 (wrk from Debian), so
nginx and gunicorn are compared on equal terms; every load run is bounded
by wrk's duration (the job runs by job count and time). nginx refuses TLS handshakes for unknown server names,
so the VM's /etc/hosts gets `127.0.0.1 hello.localhost` and wrk uses the
app's name. The demo VM is left serving the sample app's own release.

    scripts/bench.py [--duration 10] [--connections 32] [--skip-converge] [--everyday-only]
    scripts/bench.py --code-deploy-only N

--everyday-only measures only the first converge (unless --skip-converge),
the no-op converge and the code-only deploy, into .state/bench/everyday.json.
--code-deploy-only N runs only N code-only deploys back to back on the demo
VM, into .state/bench/code_deploy.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VM = "flask-stack-demo"
APP = "hello"
DOMAIN = "hello.localhost"
OUT = ROOT / ".state" / "bench"
ANSIBLE = ROOT / ".venv" / "bin" / "ansible-playbook"


def sh(*cmd: str, check: bool = True, timeout: int = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def vm(*cmd: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    return sh("docker", "exec", VM, *cmd, check=check, timeout=timeout)


def log(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


# --- load ---------------------------------------------------------------------

def parse_wrk(text: str) -> dict:
    def seconds(value: str, unit: str) -> float:
        return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]

    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    worst = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = sum(int(x) for x in sock.groups()) if sock else 0
    return {
        "requests": int(total.group(1)) if total else 0,
        "rps": float(rps.group(1)) if rps else 0.0,
        "p99_ms": round(seconds(*p99.groups()) * 1000, 2) if p99 else None,
        "max_ms": round(seconds(*worst.groups()) * 1000, 2) if worst else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors,
        "failed": (int(non2xx.group(1)) if non2xx else 0) + errors,
    }


def wrk(url: str, duration: int, connections: int, headers: tuple[str, ...] = ()) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s"]
    for header in headers:
        cmd += ["-H", header]
    return parse_wrk(vm(*cmd, url, timeout=duration + 60).stdout)


class Background(threading.Thread):
    """wrk in the background; result in .result when joined."""

    def __init__(self, url: str, duration: int, connections: int):
        super().__init__(daemon=True)
        self.args = (url, duration, connections)
        self.result: dict = {}

    def run(self) -> None:
        self.result = wrk(*self.args)


# --- the demo VM ------------------------------------------------------------

def nginx_url() -> str:
    """HTTPS when the demo serves it, plain HTTP otherwise."""
    probe = vm("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", f"https://{DOMAIN}/healthz", check=False)
    return f"https://{DOMAIN}" if probe.stdout == "200" else f"http://{DOMAIN}"


def main_pid() -> str:
    return vm("systemctl", "show", "-p", "MainPID", "--value", f"gunicorn-{APP}.service").stdout.strip()


def deploy_copy(marker: str) -> tuple[float, subprocess.CompletedProcess]:
    """Deploy a changed copy of the sample app (a new release, same lock)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
    try:
        src = tmp / "app"
        shutil.copytree(ROOT / "app", src, ignore=shutil.ignore_patterns("__pycache__", ".*cache"))
        index = src / "hello" / "templates" / "index.html"
        index.write_text(index.read_text() + f"\n{{# {marker} #}}\n")
        start = time.monotonic()
        run = converge("playbooks/deploy.yml", "-e", json.dumps({"apps": demo_apps(src)}))
        return time.monotonic() - start, run
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def demo_apps(src: Path) -> list:
    out = sh(str(ROOT / ".venv/bin/ansible-inventory"), "-i", str(ROOT / "inventories/local"), "--host", "demo").stdout
    apps = json.loads(out)["apps"]
    for app in apps:
        if app["name"] == APP:
            app["src"] = str(src)
    # the inventory's own entries are templated by Ansible; pass the literal values
    return json.loads(json.dumps(apps).replace("{{ inventory_dir | dirname | dirname }}", str(ROOT)))


def converge(playbook: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return sh(str(ANSIBLE), "-i", str(ROOT / "inventories/local"), str(ROOT / playbook), *args, env=env, timeout=1800)


def recap_changed(text: str) -> int:
    m = re.search(r"demo\s+: ok=\d+\s+changed=(\d+)", text)
    return int(m.group(1)) if m else -1


# --- measurements -------------------------------------------------------------

BENCH_HTTP_PORT = 8099
BENCH_SITE = "/etc/nginx/conf.d/zz-flask-stack-bench.conf"
# The app's HTTPS server block, re-listened on plain HTTP on loopback for the
# length of the run: the same proxy settings, headers and access log, no TLS.
_PLAIN_SITE = r"""
import re, sys
text = open(sys.argv[1]).read()
block = text[text.rindex("server {"):]
keep = [l for l in block.splitlines() if not re.match(r"\s*(listen|ssl_|http2 )", l)]
keep.insert(1, "    listen 127.0.0.1:%s;" % sys.argv[2])
open(sys.argv[3], "w").write("\n".join(keep) + "\n")
"""


def unit_flags(argv: str) -> list[str]:
    """The worker model, worker recycling and logging of the app's unit, for
    gunicorn alone on equal terms (a worker replaced every --max-requests
    imports the app again: that cost belongs to both sides)."""
    flags = ["--workers", re.search(r"--workers (\d+)", argv).group(1)]
    for opt in ("--worker-class", "--threads", "--max-requests", "--max-requests-jitter"):
        found = re.search(rf"{opt} (\S+)", argv)
        if found:
            flags += [opt, found.group(1)]
    if "--access-logfile" in argv:
        flags += ["--access-logfile", "-"]
    return flags


def bench_throughput(duration: int, connections: int) -> dict:
    url = nginx_url()
    log(f"/api/add through nginx ({url}), {duration}s, {connections} connections")
    via_nginx = wrk(f"{url}/api/add?a=5&b=6", duration, connections)
    log("static file through nginx")
    static = wrk(f"{url}/static/style.css", duration, connections)

    # nginx over plain HTTP: the app's server block without TLS on a loopback
    # port, so the proxy's own cost is measured apart from TLS.
    site = f"/etc/nginx/sites-enabled/app-{APP}.conf"
    vm("python3", "-c", _PLAIN_SITE, site, str(BENCH_HTTP_PORT), BENCH_SITE)
    try:
        vm("nginx", "-t", "-q")
        vm("systemctl", "reload", "nginx")
        time.sleep(1)
        log(f"/api/add through nginx over plain HTTP (127.0.0.1:{BENCH_HTTP_PORT})")
        via_nginx_http = wrk(f"http://{DOMAIN}:{BENCH_HTTP_PORT}/api/add?a=5&b=6", duration, connections)
    finally:
        vm("rm", "-f", BENCH_SITE)
        vm("systemctl", "reload", "nginx")

    # gunicorn alone: the same release, environment, user, workers, worker
    # class and access logging as the app's unit, on a loopback TCP port for
    # the length of the run, then stopped.
    argv = vm("systemctl", "show", "-p", "ExecStart", "--value", f"gunicorn-{APP}.service").stdout
    flags = unit_flags(argv)
    log(f"/api/add straight to gunicorn ({' '.join(flags)} on 127.0.0.1:9000)")
    with gunicorn_alone(flags):
        direct = wrk("http://127.0.0.1:9000/api/add?a=5&b=6", duration, connections)
    return {
        "url": url,
        "gunicorn_flags": flags,
        "api_via_nginx": via_nginx,
        "api_via_nginx_http": via_nginx_http,
        "api_direct_gunicorn": direct,
        "nginx_over_gunicorn_rps": round(via_nginx["rps"] / direct["rps"], 3) if direct["rps"] else None,
        "nginx_http_over_gunicorn_rps": round(via_nginx_http["rps"] / direct["rps"], 3) if direct["rps"] else None,
        "static_via_nginx": static,
        "static_over_app_rps": round(static["rps"] / via_nginx["rps"], 2) if via_nginx["rps"] else None,
    }


@contextlib.contextmanager
def gunicorn_alone(flags: list[str]):
    """The app's current release under gunicorn with flags on 127.0.0.1:9000
    (a transient unit as the app user, with its env file), until the block ends."""
    vm("systemd-run", "--unit", "bench-gunicorn", "--uid", f"app-{APP}", "--gid", f"app-{APP}",
       "-p", f"WorkingDirectory=/srv/apps/{APP}/current", "-p", f"EnvironmentFile=/etc/flask-stack/{APP}.env",
       f"/srv/apps/{APP}/current/.python/bin/python", "-m", "gunicorn", *flags,
       "--bind", "127.0.0.1:9000", "--no-control-socket", "hello.wsgi:app")
    try:
        for _ in range(100):
            if vm("curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:9000/healthz", check=False).returncode == 0:
                break
            time.sleep(0.1)
        yield
    finally:
        vm("systemctl", "stop", "bench-gunicorn", check=False)


def bench_worker_classes(duration: int, connections: int) -> dict:
    """sync against gthread (and gevent, when the app's environment has it) on
    the I/O-bound /api/sleep?ms=200, gunicorn alone with the unit's worker
    count, so only the worker class differs."""
    argv = vm("systemctl", "show", "-p", "ExecStart", "--value", f"gunicorn-{APP}.service").stdout
    workers = re.search(r"--workers (\d+)", argv).group(1)
    python = f"/srv/apps/{APP}/current/.python/bin/python"
    models = {"sync": ["--worker-class", "sync"], "gthread": ["--worker-class", "gthread", "--threads", "4"]}
    if vm(python, "-c", "import gevent", check=False).returncode == 0:
        models["gevent"] = ["--worker-class", "gevent"]
    out: dict = {"workers": int(workers), "path": "/api/sleep?ms=200", "connections": connections}
    for name, flags in models.items():
        log(f"/api/sleep?ms=200 straight to gunicorn, {name} ({workers} workers)")
        with gunicorn_alone(["--workers", workers, *flags]):
            # a new connection per request, as nginx opens them to a sync
            # app: a kept-alive connection stays with the gthread worker that
            # accepted it, and one greedy worker took all 32 (19.5 req/s, one
            # worker's 4 threads)
            out[name] = wrk("http://127.0.0.1:9000/api/sleep?ms=200", duration, connections,
                            headers=("Connection: close",))
    if out["sync"]["rps"]:
        for name in models:
            out[f"{name}_over_sync_rps"] = round(out[name]["rps"] / out["sync"]["rps"], 2)
    return out


CACHE_PATH = "/api/time"  # a fresh value per request, no Cache-Control, no cookie
CACHE_BYPASS = "X-Cache-Bypass: 1"  # nginx_cache_bypass_header's default


def cache_status(url: str, *headers: str) -> str:
    args = [a for h in headers for a in ("-H", h)]
    head = vm("curl", "-sk", "-o", "/dev/null", "-D", "-", *args, url).stdout
    match = re.search(r"^x-cache-status:\s*(\S+)", head, re.I | re.M)
    return match.group(1) if match else "none"


def bench_cache(duration: int, connections: int) -> dict:
    """nginx microcaching (apps[].cache): /api/time cached for 1 s against the
    same path, same server block and location with the operator's bypass
    header (neither read from nor stored in the cache), through nginx over
    HTTPS. The cache is configured through the nginx role for the length of
    the run (playbooks/web.yml with the apps list plus cache) and removed
    after by the same playbook with the inventory's own apps."""
    url = nginx_url()
    apps = demo_apps(ROOT / "app")
    for app in apps:
        if app["name"] == APP:
            app["cache"] = [{"path": CACHE_PATH, "ttl": 1}]
    log(f"nginx microcache on {CACHE_PATH} (1 s), configured by playbooks/web.yml")
    converge("playbooks/web.yml", "-e", json.dumps({"apps": apps}))
    try:
        cache_status(f"{url}{CACHE_PATH}")  # fills the cache
        seen = {"cached": cache_status(f"{url}{CACHE_PATH}"), "bypass": cache_status(f"{url}{CACHE_PATH}", CACHE_BYPASS)}
        if seen != {"cached": "HIT", "bypass": "BYPASS"}:
            sys.exit(f"the microcache does not answer as configured: X-Cache-Status {seen}")
        log(f"{CACHE_PATH} through nginx, cached")
        cached = wrk(f"{url}{CACHE_PATH}", duration, connections)
        log(f"{CACHE_PATH} through nginx, {CACHE_BYPASS} (not cached)")
        bypass = wrk(f"{url}{CACHE_PATH}", duration, connections, headers=(CACHE_BYPASS,))
    finally:
        log("microcache off again (playbooks/web.yml with the inventory's apps)")
        converge("playbooks/web.yml")
    return {"path": CACHE_PATH, "ttl_s": 1, "x_cache_status": seen, "cached": cached, "uncached": bypass,
            "cached_over_uncached_rps": round(cached["rps"] / bypass["rps"], 1) if bypass["rps"] else None}


def bench_redeploy(connections: int) -> dict:
    url = nginx_url()
    before = vm("curl", "-sk", f"{url}/healthz").stdout
    log("redeploy of a changed release under constant load")
    # wrk cannot be stopped early: give it a window the deploy fits in, and
    # record whether it did (the switch happens at the end of the deploy)
    window = 180
    load = Background(f"{url}/api/add?a=5&b=6", window, connections)
    started = time.monotonic()
    load.start()
    time.sleep(3)
    deploy_s, run = deploy_copy(f"bench {time.time()}")
    covered = time.monotonic() - started < window
    load.join(timeout=window + 60)
    after = vm("curl", "-sk", f"{url}/healthz").stdout
    return {"deploy_s": round(deploy_s, 1), "load_window_s": window, "deploy_inside_load_window": covered,
            "release_before": json.loads(before)["release"],
            "release_after": json.loads(after)["release"], **load.result}


def bench_kill(connections: int) -> dict:
    url = nginx_url()
    log("kill -9 of the gunicorn master under constant load")
    load = Background(f"{url}/api/add?a=5&b=6", 20, connections)
    load.start()
    time.sleep(5)
    old = main_pid()
    killed = time.monotonic()
    vm("kill", "-9", old)
    recovered = None
    while time.monotonic() - killed < 60:
        pid = main_pid()
        if pid not in ("0", old):
            ok = vm("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket",
                    f"/run/gunicorn/{APP}.sock", f"http://{DOMAIN}/healthz", check=False).stdout
            if ok == "200":
                recovered = time.monotonic() - killed
                break
        time.sleep(0.05)
    load.join(timeout=60)
    return {"seconds_until_serving": round(recovered, 2) if recovered else None, **load.result}


def bench_envs() -> dict:
    """Building the sample app's environment with uv and with pip, cold and warm."""
    log("environment build: uv vs pip, cold and warm cache")
    lock = f"/srv/apps/{APP}/current/requirements.txt"
    uv = "/opt/flask-stack/uv/bin/uv"
    results: dict[str, float] = {}
    vm("rm", "-rf", "/tmp/bench-envs")
    uv_env = "UV_NATIVE_TLS=1 UV_PYTHON_DOWNLOADS=never UV_NO_CONFIG=1 UV_CACHE_DIR=/tmp/bench-envs/cache-uv"
    pip_env = "PIP_CACHE_DIR=/tmp/bench-envs/cache-pip PIP_DISABLE_PIP_VERSION_CHECK=1"
    steps = {
        "uv": f"{uv_env} {uv} venv -q --python /usr/bin/python3 $D && {uv_env} {uv} pip sync -q --require-hashes --python $D/bin/python {lock}",
        "pip": f"/usr/bin/python3 -m venv $D && {pip_env} $D/bin/pip install -q --require-hashes -r {lock}",
    }
    for tool, script in steps.items():
        for phase in ("cold", "warm"):
            target = f"/tmp/bench-envs/{tool}-{phase}"
            start = time.monotonic()
            vm("sh", "-c", f"D={target}; {script}", timeout=600)
            results[f"{tool}_{phase}_s"] = round(time.monotonic() - start, 2)
    vm("rm", "-rf", "/tmp/bench-envs")
    results["pip_over_uv_cold"] = round(results["pip_cold_s"] / results["uv_cold_s"], 1)
    results["pip_over_uv_warm"] = round(results["pip_warm_s"] / results["uv_warm_s"], 1)
    return results


def bench_converge() -> dict:
    """The first converge of a fresh demo VM (`scripts/demo.sh up`, which also
    starts Pebble and checks the app afterwards: first_converge_s; site.yml
    alone: first_site_s) with profile_tasks, its ten slowest tasks, its task
    and remote-call counts and its apt transactions; then a no-op re-run."""
    log("first converge on a fresh demo VM (profile_tasks), then a no-op re-run")
    sh(str(ROOT / "scripts/demo.sh"), "down")
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
           "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "10", "PROFILE_TASKS_SORT_ORDER": "descending"}
    start = time.monotonic()
    first = sh(str(ROOT / "scripts/demo.sh"), "up", timeout=1800, env=env)
    first_s = time.monotonic() - start
    load1 = round(os.getloadavg()[0], 2)
    site = re.search(r"converged in (\d+) s", first.stdout + first.stderr)
    tail = first.stdout.split("PLAY RECAP", 1)[-1]
    top = [{"task": m["task"].strip(), "s": float(m["s"])}
           for m in map(PROFILE_LINE.match, tail.splitlines()) if m][:10]
    # apt's history: one entry per apt/dpkg run on the VM since it started
    apt_runs = vm("grep", "-c", "^Start-Date", "/var/log/apt/history.log", check=False).stdout.strip()
    start = time.monotonic()
    again = converge("site.yml")
    return {"first_converge_s": round(first_s, 1), "first_changed": recap_changed(first.stdout),
            "first_site_s": int(site.group(1)) if site else -1, "first_tasks": recap_tasks(first.stdout),
            "first_top10": top, "first_remote_calls": remote_calls(first.stdout),
            "first_apt_transactions": int(apt_runs) if apt_runs.isdigit() else -1, "first_load1": load1,
            "noop_converge_s": round(time.monotonic() - start, 1), "noop_changed": recap_changed(again.stdout)}


# --- everyday operations: no-op converge, code-only deploy, top tasks -----------

PROFILE_LINE = re.compile(r"^(?P<task>.+?) -{2,} (?P<s>\d+\.\d+)s$")  # a long name leaves only "--"


def profiled(playbook: str, *args: str) -> tuple[float, subprocess.CompletedProcess, list]:
    """Run a playbook against the demo VM with ansible.posix.profile_tasks;
    return the wall time, the run and the ten slowest tasks."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
           "PROFILE_TASKS_TASK_OUTPUT_LIMIT": "10", "PROFILE_TASKS_SORT_ORDER": "descending"}
    start = time.monotonic()
    run = sh(str(ANSIBLE), "-i", str(ROOT / "inventories/local"), str(ROOT / playbook), *args,
             env=env, timeout=1800)
    took = time.monotonic() - start
    tail = run.stdout.split("PLAY RECAP", 1)[-1]
    top = [{"task": m["task"].strip(), "s": float(m["s"])}
           for m in map(PROFILE_LINE.match, tail.splitlines()) if m][:10]
    return took, run, top


def recap_tasks(text: str) -> int:
    m = re.search(r"demo\s+: ok=(\d+)\s+changed=\d+\s+unreachable=\d+\s+failed=\d+\s+skipped=(\d+)", text)
    return int(m.group(1)) + int(m.group(2)) if m else -1


def remote_calls(out: str) -> int:
    """Module runs on the host in one run's output (scripts/remote_tasks.py)."""
    with tempfile.NamedTemporaryFile("w", suffix=".log") as log:
        log.write(out)
        log.flush()
        counted = sh(sys.executable, str(ROOT / "scripts/remote_tasks.py"), str(ROOT), log.name).stdout
    m = re.search(r"remote module runs: (\d+)", counted)
    return int(m.group(1)) if m else -1


def switch_steps(out: str) -> dict:
    """The release helper's step times in the switch call of a -v run: seconds
    from the call's start at which each step ended ({} when not found)."""
    block = out.split("Switch through the health check", 1)[-1].split("\nTASK [", 1)[0]
    m = re.search(r'"steps": (\{[^}]*\})', " ".join(block.split()).replace("''", "'").replace('\\"', '"'))
    try:
        return json.loads(m.group(1)) if m else {}
    except json.JSONDecodeError:
        return {}


def bench_code_deploy() -> dict:
    """A code-only deploy (one changed template, the environment reused) on
    the running demo VM, with its ten slowest tasks, its remote calls and the
    steps of its switch call (-v shows the helper's output); still
    health-gated (a new release, trial, switch)."""
    log("code-only deploy (one changed file, same lock)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
    try:
        src = tmp / "app"
        shutil.copytree(ROOT / "app", src, ignore=shutil.ignore_patterns("__pycache__", ".*cache"))
        index = src / "hello" / "templates" / "index.html"
        index.write_text(index.read_text() + f"\n{{# everyday {time.time()} #}}\n")
        before = main_pid()
        load_before = os.getloadavg()[0]
        deploy_s, deploy, deploy_top = profiled("playbooks/deploy.yml", "-v", "-e", json.dumps({"apps": demo_apps(src)}))
        switched = main_pid() != before
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"code_deploy_s": round(deploy_s, 1), "code_deploy_changed": recap_changed(deploy.stdout),
            "code_deploy_switched": switched, "code_deploy_top10": deploy_top,
            "code_deploy_fast_path": "Deploy path: fast" in deploy.stdout,
            "code_deploy_remote_calls": remote_calls(deploy.stdout),
            # every TASK line of the run (skipped tasks and includes too)
            "code_deploy_tasks": len(re.findall(r"^TASK \[", deploy.stdout, re.M)),
            "code_deploy_switch_steps": switch_steps(deploy.stdout),
            "code_deploy_load1_before": round(load_before, 2),
            "code_deploy_load1": round(os.getloadavg()[0], 2)}


def converge_path(text: str) -> str:
    """The path site.yml said it took ("fast", "full (...)"), or "?"."""
    m = re.search(r"Converge path: (fast|full \([^\n]*?\))", text)
    return m.group(1) if m else "?"


def bench_everyday() -> dict:
    """A no-op site.yml (the fast path, then the full path) and a code-only
    deploy on the running demo VM, each with its ten slowest tasks."""
    log("no-op site.yml (profile_tasks)")
    noop_s, noop, noop_top = profiled("site.yml")
    # the same no-op with every role re-checking its part (no fast path)
    log("no-op site.yml, full path (-e converge_full=true)")
    full_s, full, full_top = profiled("site.yml", "-e", "converge_full=true")
    return {"noop_converge_s": round(noop_s, 1), "noop_changed": recap_changed(noop.stdout),
            "noop_tasks": recap_tasks(noop.stdout), "noop_top10": noop_top,
            "noop_path": converge_path(noop.stdout), "noop_remote_calls": remote_calls(noop.stdout),
            "noop_full_converge_s": round(full_s, 1), "noop_full_changed": recap_changed(full.stdout),
            "noop_full_tasks": recap_tasks(full.stdout), "noop_full_top10": full_top,
            "noop_full_remote_calls": remote_calls(full.stdout), **bench_code_deploy()}


# Runs inside the demo VM: posts add jobs through nginx (HTTPS, the VM's own
# hello.localhost) and polls each until SUCCESS/FAILURE. Bounded by --max-jobs
# and --max-seconds; with --stop-file it keeps posting (one job per 0.1 s)
# until that file exists. Prints {"sent", "ok", "failed_posts", "lost", "seconds"}.
JOBS_SCRIPT = r"""
import argparse, json, os, ssl, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
p = argparse.ArgumentParser()
p.add_argument("url"); p.add_argument("--jobs", type=int, default=200)
p.add_argument("--stop-file"); p.add_argument("--max-jobs", type=int, default=2000)
p.add_argument("--max-seconds", type=float, default=300)
a = p.parse_args()
ctx = ssl._create_unverified_context()
def call(method, path, body=None):
    req = urllib.request.Request(a.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=15) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, None
    except OSError:
        return 0, None
start = time.monotonic(); ids = []; failed = 0
def post(i):
    status, answer = call("POST", "/api/jobs/add", {"a": i, "b": 1})
    return answer["id"] if status == 202 else None
if a.stop_file:
    while not os.path.exists(a.stop_file) and len(ids) + failed < a.max_jobs and time.monotonic() - start < a.max_seconds:
        job = post(len(ids)); ids.append(job) if job else None; failed += job is None
        time.sleep(0.1)
else:
    with ThreadPoolExecutor(8) as pool:
        for job in pool.map(post, range(a.jobs)):
            ids.append(job) if job else None; failed += job is None
done = {}
deadline = time.monotonic() + a.max_seconds
while len(done) < len(ids) and time.monotonic() < deadline:
    for job in ids:
        if job not in done:
            status, answer = call("GET", "/api/jobs/" + job)
            if status == 200 and answer["state"] in ("SUCCESS", "FAILURE"):
                done[job] = answer["state"]
    time.sleep(0.2)
seconds = time.monotonic() - start
ok = sum(1 for v in done.values() if v == "SUCCESS")
print(json.dumps({"sent": len(ids), "ok": ok, "failed_posts": failed, "lost": len(ids) - ok, "seconds": round(seconds, 2)}))
"""


def jobs_in_vm(*args: str, background: bool = False):
    subprocess.run(["docker", "exec", "-i", VM, "sh", "-c", "cat > /tmp/bench_jobs.py"], input=JOBS_SCRIPT, text=True, check=True)
    cmd = ["docker", "exec", VM, "python3", "/tmp/bench_jobs.py", f"https://{DOMAIN}", *args]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return json.loads(sh(*cmd, timeout=900).stdout)


def bench_jobs() -> dict:
    """Jobs per second through the queue (enqueue to SUCCESS, concurrency auto),
    and jobs posted during a redeploy of the app (web, worker and beat restart)."""
    log("200 add jobs through nginx, the broker and the worker")
    burst = jobs_in_vm("--jobs", "200")
    unit = vm("systemctl", "cat", f"celery-{APP}-worker.service").stdout
    m = re.search(r"--concurrency (\d+)", unit)
    concurrency = m.group(1) if m else "?"
    log("add jobs posted all through a redeploy")
    vm("rm", "-f", "/tmp/bench_jobs.stop")
    proc = jobs_in_vm("--stop-file", "/tmp/bench_jobs.stop", "--max-seconds", "300", background=True)
    deploy_s, _ = deploy_copy(f"bench jobs {time.time()}")
    vm("touch", "/tmp/bench_jobs.stop")
    out, err = proc.communicate(timeout=600)
    during = json.loads(out) if proc.returncode == 0 else {"error": err[-500:]}
    return {"concurrency": concurrency, "burst": burst,
            "jobs_per_s": round(burst["ok"] / burst["seconds"], 1) if burst["seconds"] else None,
            "during_deploy": during, "deploy_s": round(deploy_s, 1)}


def table(results: dict) -> str:
    t, r, k, e = results.get("throughput", {}), results.get("redeploy", {}), results.get("kill", {}), results.get("envs", {})
    c = results.get("converge", {})
    rows = []
    if t:
        rows += [
            ("/api/add via nginx", f"{t['api_via_nginx']['rps']:.0f} req/s, p99 {t['api_via_nginx']['p99_ms']} ms"),
            ("/api/add direct gunicorn", f"{t['api_direct_gunicorn']['rps']:.0f} req/s, p99 {t['api_direct_gunicorn']['p99_ms']} ms"),
            ("/api/add via nginx, plain HTTP", f"{t['api_via_nginx_http']['rps']:.0f} req/s, p99 {t['api_via_nginx_http']['p99_ms']} ms"),
            ("nginx HTTPS / direct (req/s)", f"{t['nginx_over_gunicorn_rps']}"),
            ("nginx HTTP / direct (req/s)", f"{t['nginx_http_over_gunicorn_rps']}"),
            ("static via nginx", f"{t['static_via_nginx']['rps']:.0f} req/s, p99 {t['static_via_nginx']['p99_ms']} ms"),
            ("static / app (req/s)", f"{t['static_over_app_rps']}"),
        ]
    w = results.get("worker_classes", {})
    if w:
        rows += [(f"{w['path']} gunicorn {name}", f"{w[name]['rps']:.1f} req/s, p99 {w[name]['p99_ms']} ms, "
                  f"{w[name + '_over_sync_rps']}x sync") for name in ("sync", "gthread", "gevent") if name in w]
    m = results.get("cache", {})
    if m:
        rows += [(f"{m['path']} microcached ({m['ttl_s']} s)", f"{m['cached']['rps']:.0f} req/s, p99 {m['cached']['p99_ms']} ms"),
                 (f"{m['path']} bypassing the cache", f"{m['uncached']['rps']:.0f} req/s, p99 {m['uncached']['p99_ms']} ms"),
                 ("cached / uncached (req/s)", f"{m['cached_over_uncached_rps']}x")]
    if r:
        rows += [("redeploy under load", f"{r['requests']} sent, {r['failed']} failed, max {r['max_ms']} ms, deploy {r['deploy_s']} s"
                  f"{'' if r['deploy_inside_load_window'] else ' (DEPLOY OUTLASTED THE LOAD)'}"),
                 ("  release", f"{r['release_before']} -> {r['release_after']}")]
    if k:
        rows += [("kill -9 master under load", f"{k['requests']} sent, {k['failed']} failed, serving again after {k['seconds_until_serving']} s")]
    if e:
        rows += [("env build uv cold/warm", f"{e['uv_cold_s']} s / {e['uv_warm_s']} s"),
                 ("env build pip cold/warm", f"{e['pip_cold_s']} s / {e['pip_warm_s']} s"),
                 ("pip / uv cold, warm", f"{e['pip_over_uv_cold']}x, {e['pip_over_uv_warm']}x")]
    if c:
        rows += [("first converge", f"{c['first_converge_s']} s (changed={c['first_changed']})"),
                 ("no-op re-run", f"{c['noop_converge_s']} s (changed={c['noop_changed']})")]
    j = results.get("jobs", {})
    if j:
        b, d = j["burst"], j["during_deploy"]
        rows += [("jobs through the queue", f"{j['jobs_per_s']} jobs/s (add, {b['sent']} sent, {b['lost']} lost, "
                  f"concurrency auto = {j['concurrency']})"),
                 ("jobs during redeploy", f"{d.get('sent')} sent, {d.get('lost')} lost, {d.get('failed_posts')} posts refused "
                  f"(deploy {j['deploy_s']} s)")]
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a.ljust(width)}  {b}" for a, b in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per throughput run (max 60)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip-converge", action="store_true", help="skip the fresh-VM converge timing")
    parser.add_argument("--only-throughput", action="store_true",
                        help="only the proxy comparison, the worker classes and the microcache; no redeploy, crash or env runs")
    parser.add_argument("--everyday-only", action="store_true",
                        help="only the converge, no-op converge and code-only deploy timings")
    parser.add_argument("--code-deploy-only", type=int, metavar="N", default=0,
                        help="only N code-only deploys on the demo VM (started if needed), into code_deploy.json")
    args = parser.parse_args()
    if args.code_deploy_only:
        code_deploy_report(args.code_deploy_only)
        return
    duration = max(1, min(args.duration, 60))

    results: dict = {"host": {"cores": os.cpu_count()}}
    if not args.skip_converge:
        results["converge"] = bench_converge()
    elif sh("docker", "ps", "-q", "--filter", f"name=^{VM}$").stdout.strip() == "":
        log("the demo VM is not running: make demo")
        sh(str(ROOT / "scripts/demo.sh"), "up", timeout=1800)
    if not args.only_throughput:
        results["everyday"] = bench_everyday()
    if args.everyday_only:
        everyday_report(results)
        return
    vm("sh", "-c", f"grep -q ' {DOMAIN}$' /etc/hosts || echo '127.0.0.1 {DOMAIN}' >> /etc/hosts")
    if vm("sh", "-c", "command -v wrk", check=False).returncode != 0:
        log("installing wrk in the demo VM (apt)")
        vm("apt-get", "install", "-y", "-qq", "wrk", timeout=600)
    results["throughput"] = bench_throughput(duration, args.connections)
    results["worker_classes"] = bench_worker_classes(duration, args.connections)
    results["cache"] = bench_cache(duration, args.connections)
    if args.only_throughput:
        print(json.dumps({k: results[k] for k in ("throughput", "worker_classes", "cache")}, indent=2))
        return
    results["redeploy"] = bench_redeploy(args.connections)
    results["kill"] = bench_kill(args.connections)
    results["envs"] = bench_envs()
    results["jobs"] = bench_jobs()
    log("putting the sample app's own release back")
    converge("playbooks/deploy.yml")

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\n(JSON: {OUT / 'bench.json'})")


def everyday_report(results: dict) -> None:
    """Write and print the everyday-operations figures alone (--everyday-only)."""
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "everyday.json").write_text(json.dumps(results, indent=2) + "\n")
    e = results["everyday"]
    print(f"no-op path: {e['noop_path']}")
    for key, took in (("noop", "noop_converge_s"), ("noop_full", "noop_full_converge_s"),
                      ("code_deploy", "code_deploy_s")):
        print(f"{key}: {e[took]} s, changed={e[key + '_changed']}")
        for t in e[key + "_top10"]:
            print(f"  {t['s']:7.2f} s  {t['task']}")
    c = results.get("converge", {})
    print(json.dumps({k: v for k, v in c.items() if k != "first_top10"}))
    for t in c.get("first_top10", []):
        print(f"  {t['s']:7.2f} s  {t['task']}")
    print(f"\n(JSON: {OUT / 'everyday.json'})")


def code_deploy_report(count: int) -> None:
    """--code-deploy-only N: N code-only deploys back to back (the first may
    take the full path when the setup changed since the demo's last full
    run: it is reported, marked by code_deploy_fast_path), into
    .state/bench/code_deploy.json."""
    if sh("docker", "ps", "-q", "--filter", f"name=^{VM}$").stdout.strip() == "":
        log("the demo VM is not running: make demo")
        sh(str(ROOT / "scripts/demo.sh"), "up", timeout=1800)
    runs = [bench_code_deploy() for _ in range(count)]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "code_deploy.json").write_text(json.dumps({"host": {"cores": os.cpu_count()}, "runs": runs}, indent=2) + "\n")
    for r in runs:
        print(f"code_deploy: {r['code_deploy_s']} s, changed={r['code_deploy_changed']}, "
              f"fast path={r['code_deploy_fast_path']}, remote calls={r['code_deploy_remote_calls']}, "
              f"tasks={r['code_deploy_tasks']}, "
              f"load1={r['code_deploy_load1_before']}->{r['code_deploy_load1']}")
        print(f"  switch steps: {r['code_deploy_switch_steps']}")
        for t in r["code_deploy_top10"]:
            print(f"  {t['s']:7.2f} s  {t['task']}")
    print(f"\n(JSON: {OUT / 'code_deploy.json'})")


if __name__ == "__main__":
    main()
