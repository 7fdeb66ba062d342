#!/usr/bin/env bash
# The cluster on this machine: the molecule `cluster` scenario's containers
# (1 HAProxy LB with a Pebble certificate, 2 web hosts with Celery workers,
# 1 Redis host that is also a worker-only host, the Pebble/probe host),
# converged by site.yml like the scenario's own test does.
#   scripts/cluster.sh up     (make demo-cluster)   create/prepare/converge, print URL and CA
#   scripts/cluster.sh down   (make down-cluster)   molecule destroy -s cluster
#   scripts/cluster.sh bench  (make bench-cluster)  scripts/bench_cluster.py on the converged cluster
# Every step holds /tmp/flask-stack-cluster.lock (the scenario's containers,
# network and port are fixed: one user at a time); set
# FLASK_STACK_CLUSTER_LOCK_HELD=1 when the caller already holds it.
# Environment: MOLECULE_CLUSTER_HTTPS_PORT (default 28443), where the LB's
# 443 is published on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

lock=/tmp/flask-stack-cluster.lock
if [ "${FLASK_STACK_CLUSTER_LOCK_HELD:-}" != 1 ]; then
  FLASK_STACK_CLUSTER_LOCK_HELD=1 exec flock "$lock" "$0" "$@"
fi

export PATH="$PWD/.venv/bin:$PATH"
https_port="${MOLECULE_CLUSTER_HTTPS_PORT:-28443}"
acme=flask-stack-cluster-acme
domain=hello.test
state=.state/cluster
log() { printf '==> %s\n' "$*" >&2; }

# Pebble makes a new root at every start: the one that signed the LB's certificate
pebble_root() {
  mkdir -p "$state"
  docker exec "$acme" python3 -c "import ssl, urllib.request; print(urllib.request.urlopen('https://localhost:15000/roots/0', context=ssl._create_unverified_context()).read().decode(), end='')" >"$state/pebble-root.pem"
}

up() {
  log "molecule converge -s cluster (create, prepare, site.yml on 5 containers; 10-20 min on a busy 2-core machine)"
  start=$(date +%s)
  molecule converge -s cluster
  log "converged in $(( $(date +%s) - start )) s"
  pebble_root
  url="https://${domain}:${https_port}/"
  echo "URL: $url"
  echo "CA: $PWD/$state/pebble-root.pem"
  # hello.test is the app's name inside the cluster network; from this machine it is 127.0.0.1
  echo "RESOLVE: ${domain}:${https_port}:127.0.0.1 (curl --resolve, or '127.0.0.1 ${domain}' in /etc/hosts)"
  for _ in 1 2; do
    curl -sS --fail --max-time 10 --cacert "$state/pebble-root.pem" \
      --resolve "${domain}:${https_port}:127.0.0.1" "${url}healthz"
    echo
  done
}

case "${1:-}" in
  up) up ;;
  down)
    molecule destroy -s cluster
    rm -f "$state/pebble-root.pem"
    ;;
  bench)
    shift
    pebble_root
    python scripts/bench_cluster.py "$@"
    ;;
  *)
    echo "usage: $0 up|down|bench [bench options]" >&2
    exit 2
    ;;
esac
