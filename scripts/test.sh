#!/usr/bin/env bash
# `make test`: every check, each stage timed. The setup stages run first, in
# order; then the checks run as parallel jobs, each with its own log file
# (printed whole when the job ends), and the script fails if any job failed.
#
# Environment:
#   FLASK_STACK_TEST_JOBS       how many container jobs (molecule scenarios,
#                               the redis role test, the demo re-run) run at
#                               once (default 3; 1 = one after the other)
#   FLASK_STACK_TEST_SCENARIOS  the molecule scenarios to run (default: all
#                               of SCENARIOS below)
#   FLASK_STACK_TEST_DEMO       1 (default) runs `make demo` twice; 0 leaves it out
#   FLASK_STACK_TEST_LOGS       where the job logs go (default .state/test-logs)
#
# Each molecule scenario runs under /tmp/flask-stack-<scenario>.lock and the
# demo under /tmp/flask-stack-demo.lock (flock): the scenarios' container
# names, networks and published ports are fixed, so two runs of the same
# scenario on one machine (developers running tests side by side) must take
# turns. On a CI machine nobody else holds the locks and they cost nothing.
set -euo pipefail
# job control: each job in a process group of its own, so an interrupted run
# can stop its jobs (molecule, ansible-playbook and all) with one signal each
set -m
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

# The molecule scenarios, longest first (the pool starts them in this order).
# Adding a scenario to `make test` is one word here. The order is measured
# (fresh-clone CI at 2ed528b, 3 jobs on 2 cores: deploy 2245 s, default
# 1769, cluster 1637, workers 924, hardening 367, the demo re-run 360, redis
# 55; the first three start together, so their order among themselves does
# not matter): with three slots the fourth scenario starts when the first
# one ends, so it should be the shortest of the long ones. That run ended
# 2561 s after the pool started, against 2452 s for a perfect split of the
# same 7357 job-seconds over three slots: the order is not where the time
# goes (the jobs share 2 cores, so less CPU work is what shortens them). Every verify prints its 15 slowest tests
# (--durations in .config/molecule/config.yml): read them off the job logs.
SCENARIOS=(default deploy cluster workers hardening)
if [ -n "${FLASK_STACK_TEST_SCENARIOS:-}" ]; then
  read -r -a SCENARIOS <<<"$FLASK_STACK_TEST_SCENARIOS"
fi
for s in "${SCENARIOS[@]}"; do
  [ -f "molecule/$s/molecule.yml" ] || { echo "ERROR: FLASK_STACK_TEST_SCENARIOS: no scenario '$s' (molecule/$s/molecule.yml)" >&2; exit 2; }
done
jobs_max="${FLASK_STACK_TEST_JOBS:-3}"
case "$jobs_max" in
  '' | *[!0-9]* | 0) echo "ERROR: FLASK_STACK_TEST_JOBS='$jobs_max' is not a positive integer" >&2; exit 2 ;;
esac
logs="${FLASK_STACK_TEST_LOGS:-.state/test-logs}"
rm -rf "$logs" && mkdir -p "$logs"

wall_start=$SECONDS
timings=()
failed=()
record() {  # record NAME SECONDS STATUS [NOTE]
  timings+=("$(printf '%-40s %5d s  %-6s %s' "$1" "$2" "$3" "${4:-}")")
  [ "$3" = ok ] || failed+=("$1")
}
report() {
  printf '\n===== stage times =====\n'
  printf '%s\n' "${timings[@]}"
  printf '%-40s %5d s\n' "wall time" $((SECONDS - wall_start))
  if [ "${#failed[@]}" -gt 0 ]; then
    # CI shows only the end of the output: repeat why each failed job failed
    # (pytest's summary lines, ansible's fatal lines) right above the verdict
    local name
    for name in "${failed[@]}"; do
      [ -f "$logs/$(slug "$name").log" ] || continue
      printf '\n----- why %s failed (from %s.log) -----\n' "$name" "$logs/$(slug "$name")"
      grep -E '^(FAILED|ERROR) |^E  |fatal: \[|failed=[1-9]|changed=[1-9]|Error|[0-9]+ (passed|failed)' \
        "$logs/$(slug "$name").log" | cut -c1-300 | tail -n 40 || true
    done
    printf 'FAILED: %s\n' "${failed[*]}"
  fi
}
trap report EXIT
# Interrupted: stop the running jobs (a scenario's next run starts with destroy).
declare -A pid_of=()
stop_jobs() {
  local name
  for name in "${!pid_of[@]}"; do
    kill -TERM -- "-${pid_of[$name]}" 2>/dev/null || true
    printf 'stopped: %s (log: %s/%s.log)\n' "$name" "$logs" "$(slug "$name")" >&2
  done
  exit 130
}
trap stop_jobs INT TERM

# A setup stage: in the foreground, in order, stops the run when it fails.
stage() {
  local name="$1"; shift
  printf '\n===== %s =====\n' "$name"
  local start=$SECONDS rc=0
  "$@" || rc=$?
  record "$name" $((SECONDS - start)) "$([ $rc = 0 ] && echo ok || echo FAILED)"
  [ $rc = 0 ] || exit $rc
}

# --- the job pool ----------------------------------------------------------
# job NAME LOCK|- CMD...: queued; a job's log is $logs/<slug>.log and its
# result line "<rc> <seconds run> <seconds waited for the lock>" is
# $logs/<slug>.rc. LOCK is a flock file the job holds while it runs.
queue=()
declare -A job_cmd=() job_lock=()
job() {
  local name="$1" lock="$2"; shift 2
  queue+=("$name")
  job_lock[$name]="$lock"
  job_cmd[$name]="$(printf '%q ' "$@")"
}
slug() { printf '%s' "$1" | tr -c 'a-zA-Z0-9' '-'; }

# Passes a job's output through and writes the time of each molecule step
# (create, converge, verify...: molecule's "<scenario> ➜ <step>: Executing"
# and "...: Executed: <result>" lines) to the file $1, one
# "<step>\t<seconds>\t<status>" line per step.
step_times() {
  local line clean step="" start=$SECONDS
  while IFS= read -r line; do
    printf '%s\n' "$line"
    case "$line" in
      *'➜ '*': '*Execut*) ;;
      *) continue ;;
    esac
    clean="$(printf '%s' "$line" | sed 's/\x1b\[[0-9;]*m//g')"
    if [[ "$clean" =~ ➜\ ([a-z_]+):\ Executing ]]; then
      step="${BASH_REMATCH[1]}" start=$SECONDS
    elif [[ "$clean" =~ ➜\ ([a-z_]+):\ Executed:\ (.*) ]] && [ "${BASH_REMATCH[1]}" = "$step" ]; then
      case "${BASH_REMATCH[2]}" in
        Successful*) printf '%s\t%d\tok\n' "$step" $((SECONDS - start)) >>"$1" ;;
        Missing*) ;;  # a step the scenario has no playbook for (prepare, cleanup)
        *) printf '%s\t%d\tFAILED\n' "$step" $((SECONDS - start)) >>"$1" ;;
      esac
      step=""
    fi
  done
}

# Runs in a background subshell: waits for the lock, runs, writes the result.
run_job() {
  local name="$1" base="$logs/$(slug "$1")" queued=$SECONDS
  local rc=0
  {
    if [ "${job_lock[$name]}" != - ]; then
      exec 9>>"${job_lock[$name]}"
      flock 9
    fi
    local start=$SECONDS
    echo "\$ ${job_cmd[$name]}"
    eval "${job_cmd[$name]}" </dev/null 2>&1 | step_times "$base.steps" || rc=$?
    echo "$rc $((SECONDS - start)) $((start - queued))" >"$base.rc"
  } >"$base.log" 2>&1
}

finish() {  # finish NAME: print the job's log and record its time
  local name="$1" base
  base="$logs/$(slug "$1")"
  local rc=1 run=0 waited=0
  [ -s "$base.rc" ] && read -r rc run waited <"$base.rc"
  local status note=""
  status="$([ "$rc" = 0 ] && echo ok || echo FAILED)"
  [ "$waited" -gt 0 ] && note="(waited ${waited} s for ${job_lock[$name]})"
  printf '\n===== %s: %s after %d s %s (log: %s.log) =====\n' "$name" "$status" "$run" "$note" "$base"
  cat "$base.log"
  record "$name" "$run" "$status" "$note"
  if [ -s "$base.steps" ]; then  # a molecule scenario: the time of each step
    local step srun sstatus
    while IFS=$'\t' read -r step srun sstatus; do
      timings+=("$(printf '%-40s %5d s  %s' "  $step" "$srun" "$sstatus")")
    done <"$base.steps"
  fi
  if [ "$name" = "$light_job" ] && [ -f "$logs/light.times" ]; then
    local lname lrun lstatus
    while IFS=$'\t' read -r lname lrun lstatus; do
      timings+=("$(printf '%-40s %5d s  %s' "$lname" "$lrun" "$lstatus")")
    done <"$logs/light.times"
  fi
}

pool() {  # run the queued jobs, at most $1 at a time; wait for all
  local max="$1" name done_pid
  local -a todo=("${queue[@]}")
  queue=()
  while [ "${#todo[@]}" -gt 0 ] || [ "${#pid_of[@]}" -gt 0 ]; do
    while [ "${#todo[@]}" -gt 0 ] && [ $(("${#pid_of[@]}" - ${light_running:-0})) -lt "$max" ]; do
      # the first job whose lock nobody holds right now (another developer's
      # run of the same scenario); if every lock is taken, the first job
      local i pick=0
      for i in "${!todo[@]}"; do
        if [ "${job_lock[${todo[$i]}]}" = - ] || flock -n "${job_lock[${todo[$i]}]}" true; then
          pick=$i; break
        fi
      done
      name="${todo[$pick]}"; todo=("${todo[@]:0:pick}" "${todo[@]:pick+1}")
      [ "$name" = "$light_job" ] && light_running=1
      printf '>>> started: %s\n' "$name"
      run_job "$name" &
      pid_of[$name]=$!
    done
    done_pid=""
    wait -n -p done_pid "${pid_of[@]}" || true
    for name in "${!pid_of[@]}"; do
      if [ "${pid_of[$name]}" = "$done_pid" ]; then
        unset "pid_of[$name]"
        [ "$name" = "$light_job" ] && light_running=0
        finish "$name"
      fi
    done
  done
}

# --- setup: what the jobs need on this machine -------------------------------
stage "apt test tools (redis-server, testssl.sh)" scripts/ensure-apt.sh redis-server testssl.sh
# the bare image (every scenario, the demo); the prepared one on top of it is
# built by the first job that needs it (below), beside the other jobs
stage "docker engine + base image" bash -c 'scripts/ensure-docker.sh && molecule/resources/build-image.sh >/dev/null'

# --- the checks ----------------------------------------------------------------
# The light checks (lint, unit tests, moto: no containers, little CPU next
# to the scenarios) run one after the other in one extra lane beside the
# container jobs; their stage times land in the table too.
light_lane() {
  local lane_failed=0
  lane() {
    local name="$1"; shift
    printf '\n----- %s -----\n' "$name"
    local start=$SECONDS rc=0
    "$@" || rc=$?
    printf -- '----- %s: %s after %d s\n' "$name" "$([ $rc = 0 ] && echo ok || echo FAILED)" $((SECONDS - start))
    printf '%s\t%d\t%s\n' "$name" $((SECONDS - start)) "$([ $rc = 0 ] && echo ok || echo FAILED)" >>"$logs/light.times"
    [ $rc = 0 ] || lane_failed=1
  }
  lane "  yamllint" yamllint --strict .
  lane "  ansible-lint (production profile)" ansible-lint --profile production
  lane "  app pytest (real redis-server)" pytest -q app/tests
  lane "  apps model + inventory pytest" pytest -q tests/unit tests/inventory
  lane "  load counter pytest (bad local servers)" pytest -q tests/load
  lane "  hardening bad-input pytest" pytest -q tests/hardening
  lane "  conda environments (skip offline)" pytest -q -rs tests/conda
  lane "  AWS provisioning against moto" pytest -q tests/provision
  return $lane_failed
}
light_job="lint + unit tests (one lane)"
job "$light_job" - light_lane


# Container jobs, longest first: they share FLASK_STACK_TEST_JOBS slots.
# A scenario whose hosts start from the prepared image (the roles' packages
# preinstalled) builds it first, under a lock of its own: on a fresh machine
# that costs about 90 s once, inside a job rather than before all of them.
for s in "${SCENARIOS[@]}"; do
  if grep -q -- '-prepared:' "molecule/$s/molecule.yml"; then
    job "molecule test ($s)" "/tmp/flask-stack-$s.lock" bash -c \
      'flock /tmp/flask-stack-prepared-image.lock molecule/resources/build-image.sh --prepared >/dev/null && exec molecule test -s "$1"' _ "$s"
  else
    job "molecule test ($s)" "/tmp/flask-stack-$s.lock" molecule test -s "$s"
  fi
done
# `make demo` twice: the second run must report changed=0 (about 5 minutes
# on an idle 2-core machine); the test takes the demo lock itself.
if [ "${FLASK_STACK_TEST_DEMO:-1}" = 1 ]; then
  job "make demo re-run reports changed=0" - pytest -q -s tests/demo
fi
job "redis role on a systemd container" - pytest -q tests/redis
pool "$jobs_max"
printf '\n'
[ "${#failed[@]}" -eq 0 ]
