#!/usr/bin/env bash
# `make test`: every check, in order, each stage timed; stops at the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

timings=()
stage() {
  local name="$1"; shift
  printf '\n===== %s =====\n' "$name"
  local start=$SECONDS
  "$@"
  timings+=("$(printf '%-34s %5d s' "$name" $((SECONDS - start)))")
}
report() {
  printf '\n===== stage times =====\n'
  printf '%s\n' "${timings[@]}"
}
trap report EXIT

stage "yamllint" yamllint --strict .
stage "ansible-lint (production profile)" ansible-lint --profile production
stage "app pytest" pytest -q app/tests
stage "apps model + inventory pytest" pytest -q tests/unit tests/inventory
stage "hardening bad-input pytest" pytest -q tests/hardening
stage "conda environments (skip offline)" pytest -q -rs tests/conda
stage "AWS provisioning against moto" pytest -q tests/provision
stage "apt test tools (testssl.sh)" scripts/ensure-apt.sh testssl.sh
stage "docker engine + base image" bash -c 'scripts/ensure-docker.sh && molecule/resources/build-image.sh >/dev/null'
stage "molecule test (default)" molecule test -s default
stage "molecule test (deploy)" molecule test -s deploy
stage "molecule test (hardening)" molecule test -s hardening
