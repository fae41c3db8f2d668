#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (as root):
#   ./dev.sh run    set up, then run the agent (config and state under ./.run, never /etc/nut)
#   ./dev.sh test   set up (also a Docker engine, compose, buildx, arm64 and arm/v7 emulation and
#                   local base images: docker/engine-setup.sh), then lint, type-check, run every
#                   test (three pytest lanes side by side), and print where the time went
#   ./dev.sh setup  only install what `run` needs (idempotent)
#   ./dev.sh check  the edit loop (after one setup): lint, types and unit tests, in under a minute
#   ./dev.sh bench  set up as for test, then `python -m benchmarks` (docs/benchmarks.md) and
#                   the fleet rollout's benchmark; never part of test: no test asserts a time
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
APT_PACKAGES=(
  python3 python3-venv                   # the agent and its venv
  nut-server nut-client                  # real upsd, upsdrvctl, dummy-ups, upsc, upsmon, nut-scanner
  umockdev libusb-1.0-0 usbutils         # a simulated USB device for libusb/pyusb/nut-scanner
  python3-gi gir1.2-umockdev-1.0 python3-usb   # umockdev's run-time add/remove API (Debian python)
  ca-certificates shellcheck
  openssh-client                         # ssh-keygen for the fleet tests' Pis (pyinfra itself speaks SSH)
  prometheus                             # the tests' real Prometheus scrapes /metrics; promtool lints it
  mosquitto                              # the tests' real MQTT broker (tests/integration/test_mqtt.py)
)

log() { printf '%s dev.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (sudo ./dev.sh $1): NUT's daemons and apt need it"; }

setup_apt() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -qq || die "apt-get update failed"
    # policy-rc.d: Debian's nut packages must not start the system's NUT services here.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    timeout 1200 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || { rm -f /usr/sbin/policy-rc.d; die "apt-get install ${missing[*]} failed"; }
    rm -f /usr/sbin/policy-rc.d
  fi
}

setup_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    /usr/bin/python3 -m venv "$VENV" || die "python3 -m venv failed (is python3-venv installed?)"
  fi
  # The stamp makes a second run fast: pip runs again only when pyproject.toml changed.
  if [ ! -f "$VENV/.stamp" ] || [ pyproject.toml -nt "$VENV/.stamp" ]; then
    log "pip install -e .[test,rollout,bench]"
    timeout 900 "$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test,rollout,bench]' \
      || die "pip install failed"
    touch "$VENV/.stamp"
  fi
}

cmd_setup() { need_root setup; setup_apt; setup_venv; }

cmd_run() {
  cmd_setup
  mkdir -p .run/etc .run/state .run/log
  log "starting nut-reconcile run (Ctrl-C stops it and every NUT process it started)"
  export NUT_CONFPATH="${NUT_CONFPATH:-$PWD/.run/etc}" NUT_STATEPATH="${NUT_STATEPATH:-$PWD/.run/state}"
  export LOG_FILE="${LOG_FILE:-$PWD/.run/log/hotplug.log}" RECONCILE_STATE="${RECONCILE_STATE:-$PWD/.run/agent}"
  # upsd drops to the nut user, which must reach ./.run: a home dir is often 0700.
  if [ -z "${UPSD_USER:-}" ] && ! timeout 10 runuser -u nut -- test -x "$PWD/.run" 2>/dev/null; then
    log "the nut user cannot reach $PWD/.run (a private home dir?): upsd runs as root here"
    export UPSD_USER=root
  fi
  exec "$VENV/bin/nut-reconcile" run
}

lint() {
  log "ruff"
  "$VENV/bin/ruff" check reconcile fleet testbed tests benchmarks deploy.py inventory group_data
  "$VENV/bin/ruff" format --check reconcile fleet testbed tests benchmarks deploy.py inventory group_data
  log "shellcheck"
  shellcheck dev.sh .ci/run docker/*.sh
  log "mypy"
  "$VENV/bin/mypy"
}

cmd_check() {
  # No root, no daemons, no Docker: the unit tests are pure (decide/) or use temp dirs.
  [ -x "$VENV/bin/python" ] || die "no $VENV yet: run 'sudo ./dev.sh setup' once"
  lint
  log "unit tests"
  "$VENV/bin/python" -m pytest -q tests/unit
}

# Where a run's time goes: `timed NAME CMD...` runs CMD and appends "NAME<TAB>seconds" to
# $PHASES_FILE; pytest appends one line per test folder and image build (tests/conftest.py).
PHASES_FILE=""
timed() {
  local name=$1 t0 rc
  shift
  t0=$(date +%s.%N)
  # Why a subshell with set -e, outside any `||`: bash ignores -e in a function run as part of
  # `cmd || ...`, so a failing step inside (ruff, say) would not stop it.
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  printf '%s\t%s\n' "$name" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')" >>"$PHASES_FILE"
  return "$rc"
}

print_phases() {
  [ -s "$PHASES_FILE" ] || return 0
  printf '\n%-68s %9s\n' "phase" "seconds" >&2
  awk -F '\t' '{printf "%-68s %9.1f\n", $1, $2}' "$PHASES_FILE" >&2
  awk -v a="$RUN_T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%-68s %9.1f\n", "whole run", b-a}' >&2
  echo "(the three lanes run side by side: their times overlap; within a lane, the folders' and image builds' times are part of its own)" >&2
  rm -f "$PHASES_FILE"
}

run_pytest() {
  local rc=0
  "$VENV/bin/python" -m pytest "$@" || rc=$?
  # pytest exits 5 when it collected no test: that is a failure, never a pass.
  [ "$rc" -eq 5 ] && die "pytest collected no tests"
  [ "$rc" -eq 0 ] || die "pytest failed (exit $rc)"
}

# The whole suite as three pytest sessions side by side ("lanes"), each one test at a time:
#   host       unit/, integration/, faults/: the host's real NUT daemons. Never two at once:
#              Debian's upsmon keeps a fixed PID file, so two agents on one host would take
#              each other's upsmon for a stranger.
#   container  container/, and the fleet's buildx test, which shares that session's images
#              and NUT's source at its fixed address (one server per port)
#   fleet      the offline arm64 image (its whole build under qemu, the longest one without
#              a compile: here it overlaps the container lane's builds), then the rest of
#              fleet/: the docker-in-docker Pis
# Why: CI's time limit. The lanes mostly wait (on daemons, builds, SSH), and what one waits
# on the others use. Two builds for one platform never run at once (testbed/images.build
# locks per platform); the one stage every platform's offline build shares is built first.
# Each lane's output is printed whole when it ends.
LANES=(host container fleet)
OFFLINE_ARM64=tests/container/test_offline_arm64.py
lane_args() {
  case "$1" in
    host) echo "tests/unit tests/integration tests/faults" ;;
    container) echo "tests/container --ignore=$OFFLINE_ARM64 tests/fleet/test_image_arch.py" ;;
    fleet) echo "$OFFLINE_ARM64 tests/fleet --ignore=tests/fleet/test_image_arch.py" ;;
  esac
}

# A lane is started with start_lane (its pytest in the background, its output to a file)
# and collected by finish_lanes, which prints each lane's output whole, in order.
LANE_DIR=""
LANE_PIDS=()
start_lane() {
  local lane=$1
  log "lane $lane: pytest $(lane_args "$lane")"
  # shellcheck disable=SC2046  # lane_args is a word list on purpose
  (
    t0=$(date +%s.%N)
    set +e
    PHASES_FILE="$LANE_DIR/$lane.phases" "$VENV/bin/python" -m pytest -p no:cacheprovider --durations=12 $(lane_args "$lane") \
      >"$LANE_DIR/$lane.log" 2>&1
    echo "$?" >"$LANE_DIR/$lane.rc"
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}' >"$LANE_DIR/$lane.seconds"
  ) &
  LANE_PIDS+=("$!")
}

finish_lanes() {
  local lane rc=0 i totals
  for i in "${!LANES[@]}"; do
    wait "${LANE_PIDS[$i]}" || true
    lane=${LANES[$i]}
    printf '\n===== lane %s: pytest %s =====\n' "$lane" "$(lane_args "$lane")"
    cat "$LANE_DIR/$lane.log"
    printf 'pytest lane %s (wall clock)\t%s\n' "$lane" "$(cat "$LANE_DIR/$lane.seconds")" >>"$PHASES_FILE"
    cat "$LANE_DIR/$lane.phases" >>"$PHASES_FILE" 2>/dev/null || true
    case "$(cat "$LANE_DIR/$lane.rc")" in
      0) ;;
      5) log "error: lane $lane collected no tests"; rc=1 ;;
      *) log "error: lane $lane failed (pytest exit $(cat "$LANE_DIR/$lane.rc"))"; rc=1 ;;
    esac
  done
  # One closing line for the three sessions, the counts of their own closing lines added up.
  totals=$(cat "$LANE_DIR"/*.log | grep -E '^=+ .* in [0-9.]+s' | awk '
    { for (i = 2; i <= NF; i++) { n = $(i - 1) + 0; w = $i; sub(/[,]$/, "", w)
        if (w == "passed") p += n; else if (w == "failed" || w == "error" || w == "errors") f += n
        else if (w == "skipped") s += n } }
    END { printf "%d passed, %d failed, %d skipped", p, f, s }')
  echo "tests: $totals"
  return "$rc"
}

cmd_test() {
  RUN_T0=$(date +%s.%N)
  PHASES_FILE=$(mktemp)
  export PHASES_FILE
  # The table is printed however the run ends: a failed run shows where its time went too.
  trap print_phases EXIT
  timed "setup: apt packages, venv" cmd_setup
  timed "lint: ruff, shellcheck, mypy" lint
  if [ "$#" -gt 0 ]; then
    # Arguments given (sudo ./dev.sh test -k plan -x): one pytest session over everything.
    log "docker engine (docker/engine-setup.sh)"
    timed "setup: docker engine, qemu, base images" bash docker/engine-setup.sh
    log "pytest $*"
    timed "pytest $*" run_pytest "$@"
    return
  fi
  # Why this order (CI's time limit): the host lane needs no Docker, so it starts first and
  # runs while the engine is set up; the other two start once the engine and the build
  # machine's base image are ready, while the arm64 and arm/v7 base images are still being
  # made (a test that needs one waits for $BASES_DONE: testbed/images.missing_emulation).
  LANE_DIR=$(mktemp -d)
  log "pytest: three lanes side by side (host now; container and fleet once the engine is up)"
  start_lane host
  log "docker engine (docker/engine-setup.sh)"
  timed "setup: docker engine, qemu, amd64 base image" env ENGINE_BASES=native bash docker/engine-setup.sh
  export BASES_DONE="$LANE_DIR/foreign-bases.rc"
  (
    t0=$(date +%s.%N)
    set +e
    ENGINE_BASES=foreign bash docker/engine-setup.sh >"$LANE_DIR/foreign-bases.log" 2>&1
    rc=$?
    printf 'setup: arm64 and arm/v7 base images (beside the lanes)\t%s\n' \
      "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')" >"$LANE_DIR/foreign-bases.phase"
    echo "$rc" >"$BASES_DONE.tmp" && mv "$BASES_DONE.tmp" "$BASES_DONE"
  ) &
  local bases=$!
  log "image build: the stage shared by every platform's offline build (python -m testbed.images prebuild)"
  timed "image build: shared build-machine stage (pybuild)" "$VENV/bin/python" -m testbed.images prebuild
  start_lane container
  start_lane fleet
  local rc=0
  finish_lanes || rc=1
  wait "$bases" || true
  cat "$LANE_DIR/foreign-bases.phase" >>"$PHASES_FILE" 2>/dev/null || true
  if [ "$(cat "$BASES_DONE" 2>/dev/null)" != 0 ]; then
    cat "$LANE_DIR/foreign-bases.log" >&2
    log "error: the arm64 and arm/v7 base images failed (log above)"
    rc=1
  fi
  rm -rf "$LANE_DIR"
  [ "$rc" -eq 0 ] || die "tests failed"
}

cmd_bench() {
  cmd_setup
  log "docker engine (docker/engine-setup.sh)"
  bash docker/engine-setup.sh
  log "python -m benchmarks $*"
  "$VENV/bin/python" -m benchmarks "$@"
  log "python -m benchmarks.fleet"
  "$VENV/bin/python" -m benchmarks.fleet
}

case "${1:-}" in
  setup) cmd_setup ;;
  check) cmd_check ;;
  run) cmd_run ;;
  test) shift; cmd_test "$@" ;;
  bench) shift; cmd_bench "$@" ;;
  *) echo "usage: sudo ./dev.sh run | test [pytest args] | setup | check | bench [--quick]" >&2; exit 2 ;;
esac
