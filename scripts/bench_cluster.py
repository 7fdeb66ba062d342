#!/usr/bin/env python3
"""`make bench-cluster`: figures of the converged cluster scenario (`make
demo-cluster`), printed and written to .state/bench/cluster.json.

- Requests/s and p99 through the load balancer with 2 web hosts in rotation
  and with 1 (the other disabled through HAProxy's runtime API, enabled
  again afterwards).
- The LB's overhead: the same path, the same client and the same TLS (SNI
  and Host hello.test, HTTPS both ways) once through HAProxy and once
  straight to web1's nginx. Both runs use wrk inside the LB container (the
  app hosts take web traffic from the LB only); only its /etc/hosts entry
  for hello.test changes between them (127.0.0.1 = HAProxy, then web1's
  address), and is restored afterwards.
- A rolling deploy of a changed release under counted load from the probe
  (molecule/deploy/tests/load.py: every request ok or failed, ok + failed
  == sent): its duration, the time per host, how long each web host was out
  of rotation (HAProxy's view, polled every 0.2 s), and the failed requests.

Load is bounded (wrk by duration; the counting load by a stop file, a
request budget and a deadline) and goes to the project's containers only.
wrk comes from Debian's package, installed in the LB container on first use.

    scripts/bench_cluster.py [--duration 10] [--connections 16] [--skip-deploy]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests/helpers"), str(ROOT / "molecule/resources"), str(ROOT / "molecule/cluster/tests")]

# the scenario's own helpers: hosts, HAProxy's view, the counted load, the apps
import conftest as cluster  # noqa: E402
from playbook import ansible_env, copy_app, run  # noqa: E402

OUT = ROOT / ".state" / "bench"
BACKEND = "app_hello"
SOCK = "socat stdio unix-connect:/run/haproxy/admin.sock"
PATH = "/api/add?a=5&b=6"


def _load_bench():
    """scripts/bench.py as a module: its wrk output parser and its log()."""
    spec = importlib.util.spec_from_file_location("flask_stack_bench", ROOT / "scripts/bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()
log = bench.log


def lb(*cmd: str, timeout: int = 600) -> str:
    r = cluster.exec_in(cluster.LB, *cmd, timeout=timeout)
    if r.returncode != 0:
        sys.exit(f"on the LB, {' '.join(cmd)} failed ({r.returncode}): {r.stdout[-1500:]} {r.stderr[-1500:]}")
    return r.stdout


def wrk(duration: int, connections: int) -> dict:
    """wrk from the LB container to https://hello.test/<PATH> (wherever /etc/hosts points it)."""
    out = lb("wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "10s",
             f"https://hello.test{PATH}", timeout=duration + 60)
    return bench.parse_wrk(out)


def point_hello_at(address: str) -> None:
    """The LB container's /etc/hosts: hello.test -> address (one line of ours, marked)."""
    script = ("import sys; p = '/etc/hosts'; keep = [l for l in open(p) if not l.rstrip().endswith('# bench-cluster')];"
              " keep += [sys.argv[1] + ' hello.test # bench-cluster\\n'] if sys.argv[1] else [];"
              " open(p, 'w').write(''.join(keep))")
    lb("python3", "-c", script, address)


def admin(command: str) -> None:
    lb("sh", "-c", f"echo '{command}' | {SOCK}")


def bench_lb(duration: int, connections: int) -> dict:
    web1, web2 = cluster.WEBS
    results: dict = {"client": "wrk in the LB container, HTTPS with SNI/Host hello.test, path " + PATH,
                     "duration_s": duration, "connections": connections}
    try:
        point_hello_at("127.0.0.1")
        assert cluster.rotation() == {w: "UP" for w in cluster.WEBS}, cluster.servers()
        log(f"through the LB, 2 web hosts in rotation ({duration}s, {connections} connections)")
        results["lb_2_hosts"] = wrk(duration, connections)
        admin(f"disable server {BACKEND}/{web2}")
        try:
            assert cluster.rotation()[web2] == "MAINT", cluster.servers()
            log("through the LB, 1 web host in rotation (web2 disabled on the runtime API)")
            results["lb_1_host"] = wrk(duration, connections)
        finally:
            admin(f"enable server {BACKEND}/{web2}")
            if not cluster.wait_for(lambda: cluster.rotation()[web2] == "UP", 30):
                sys.exit(f"web2 did not come back UP: {cluster.servers()}")
        point_hello_at(cluster.address(web1))
        log(f"straight to web1's nginx ({cluster.address(web1)}), same client, same TLS")
        results["direct_web1_nginx"] = wrk(duration, connections)
    finally:
        point_hello_at("")
    one, two, direct = results["lb_1_host"], results["lb_2_hosts"], results["direct_web1_nginx"]
    results["rps_2_over_1_host"] = round(two["rps"] / one["rps"], 3) if one["rps"] else None
    results["lb_1_host_over_direct_rps"] = round(one["rps"] / direct["rps"], 3) if direct["rps"] else None
    if one["p99_ms"] is not None and direct["p99_ms"] is not None:
        results["lb_added_p99_ms"] = round(one["p99_ms"] - direct["p99_ms"], 2)
    return results


class Rotation(threading.Thread):
    """HAProxy's status of each web host every 0.2 s until stopped: the times each spent out of rotation."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.out: dict[str, list[list[float]]] = {w: [] for w in cluster.WEBS}

    def run(self) -> None:
        since: dict[str, float | None] = dict.fromkeys(cluster.WEBS)
        while not self.stop.is_set():
            now = time.monotonic()
            for web, status in cluster.rotation().items():
                if status != "UP" and since[web] is None:
                    since[web] = now
                elif status == "UP" and since[web] is not None:
                    self.out[web].append([since[web], now])
                    since[web] = None
            time.sleep(0.2)


def bench_deploy() -> dict:
    cluster.pebble_root()
    inventory = molecule_inventory()
    with tempfile.TemporaryDirectory() as tmp:
        src = copy_app(Path(tmp) / "app")
        cluster.edit(src / "hello/templates/index.html", "</", f"<!-- bench-cluster {time.time()} --></")
        apps = cluster.scenario_apps()
        apps[0]["src"] = str(src)
        before = [cluster.release(h) for h in cluster.WORKERS]
        log("rolling deploy of a changed release under counted load from the probe")
        load = cluster.Load(max_seconds=900)
        watch = Rotation()
        watch.start()
        time.sleep(2)
        started = time.monotonic()
        # the inventory reads Pebble's CA from molecule's ephemeral directory
        deployed = run(inventory, ROOT / "playbooks/deploy.yml", extra_vars={"apps": apps}, vars_dir=Path(tmp),
                       env=ansible_env(MOLECULE_EPHEMERAL_DIRECTORY=str(inventory.parent)), timeout=900)
        took = time.monotonic() - started
        time.sleep(2)
        watch.stop.set()
        watch.join()
        result = load.stop()
    if deployed.rc != 0:
        sys.exit(f"the deploy failed:\n{deployed.out[-3000:]}")
    after = [cluster.release(h) for h in cluster.WORKERS]
    out_of_rotation = {w: [round(b - a, 1) for a, b in spans] for w, spans in watch.out.items()}
    return {
        "hosts": len(cluster.WORKERS),
        "deploy_s": round(took, 1),
        "per_host_s": round(took / len(cluster.WORKERS), 1),
        "out_of_rotation_s": out_of_rotation,
        "releases_before": before,
        "releases_after": after,
        "load_covers_deploy": result["stopped_by"] == "stop-file",
        **{k: result[k] for k in ("sent", "ok", "failed", "errors", "max_latency_ms")},
    }


def molecule_inventory() -> Path:
    """The cluster scenario's inventory in molecule's ephemeral directory (molecule's own naming)."""
    from molecule.text import checksum

    path = Path.home() / ".ansible" / "tmp" / f"molecule.{checksum(ROOT.name, 4)}.cluster" / "inventory"
    if not (path / "ansible_inventory.yml").exists():
        sys.exit(f"no cluster inventory at {path}: run `make demo-cluster` first")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--skip-deploy", action="store_true")
    args = ap.parse_args()
    if cluster.exec_in(cluster.LB, "sh", "-c", "command -v wrk").returncode != 0:
        log("installing wrk in the LB container (apt)")
        lb("apt-get", "install", "-y", "-qq", "wrk", timeout=600)
    results = {"lb": bench_lb(args.duration, args.connections)}
    if not args.skip_deploy:
        results["rolling_deploy"] = bench_deploy()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "cluster.json").write_text(json.dumps(results, indent=2))
    r = results["lb"]
    for key, label in (("lb_2_hosts", "through the LB, 2 web hosts"), ("lb_1_host", "through the LB, 1 web host"),
                       ("direct_web1_nginx", "straight to web1's nginx")):
        f = r[key]
        print(f"{label}: {f['rps']:.0f} req/s, p99 {f['p99_ms']} ms, {f['requests']} requests, {f['failed']} failed")
    print(f"2 hosts / 1 host: {r['rps_2_over_1_host']}x req/s; LB with 1 host / direct: "
          f"{r['lb_1_host_over_direct_rps']}x req/s, p99 +{r.get('lb_added_p99_ms')} ms")
    if "rolling_deploy" in results:
        d = results["rolling_deploy"]
        print(f"rolling deploy: {d['deploy_s']} s for {d['hosts']} hosts ({d['per_host_s']} s per host), "
              f"web hosts out of rotation {d['out_of_rotation_s']} s")
        print(f"rolling deploy under load: {d['sent']} sent, {d['failed']} failed ({d['ok']} ok)")
    print(f"(JSON: {OUT / 'cluster.json'})")


if __name__ == "__main__":
    main()
