#!/usr/bin/env bash
# Runs every walship test on a fresh Debian machine: installs the system packages the tests
# need (lz4, sqlite3, age, openssh-server, Ceph radosgw), the npm dependencies, starts radosgw,
# builds, runs all tests, stops radosgw. Usage: npm run test:all   (or: bash scripts/test-all.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(lz4 sqlite3 age openssh-server radosgw ceph-mon ceph-osd)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else
    echo "test-all: missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "test-all: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then npm ci --no-audit --no-fund; fi

RGW_DIR="${TMPDIR:-/tmp}/walship-rgw-$$"
cleanup() { packages/s3/test/servers/radosgw.sh stop "$RGW_DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
eval "$(packages/s3/test/servers/radosgw.sh start "$RGW_DIR")"

# Format and lint (Biome, biome.json): reported first, the tests run either way.
set +e
npm run lint
lint_status=$?
set -e

LOG="${TMPDIR:-/tmp}/walship-test-all-$$.log"
# Bounded: CI stops the whole job at 90 min; stop the tests well before so the summary prints.
TEST_LIMIT="${WALSHIP_TEST_LIMIT:-70m}"
set +e
timeout --kill-after=30s "$TEST_LIMIT" npm test 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
if ((status == 124 || status == 137)); then echo "test-all: the tests did not finish within $TEST_LIMIT (WALSHIP_TEST_LIMIT)" >&2; fi
# The packages as npm would publish them, installed into a fresh app (scripts/pack-check.mjs).
set +e
timeout --kill-after=30s 10m npm run pack-check
pack_status=$?
set -e
# One closing line over every package's node:test summary.
sum() { grep -Eo "ℹ $1 [0-9]+" "$LOG" | awk '{s += $3} END {print s + 0}'; }
echo "walship: $(sum pass) passed, $(sum fail) failed, $(sum skipped) skipped"
if ((lint_status != 0)); then echo "test-all: npm run lint failed (exit $lint_status; npm run format fixes formatting)" >&2; fi
if ((pack_status != 0)); then echo "test-all: pack-check failed (exit $pack_status)" >&2; fi
rm -f "$LOG"
if ((status != 0)); then exit "$status"; fi
if ((pack_status != 0)); then exit "$pack_status"; fi
exit "$lint_status"
