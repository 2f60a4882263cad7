#!/usr/bin/env bash
# The whole test suite: one build (debug, tests included, warnings as errors), then
# every test on it. Installs what the build needs if it is missing. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! dpkg -s libsqlite3-dev >/dev/null 2>&1; then
    echo "== installing libsqlite3-dev (GRDB links the system SQLite)"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq libsqlite3-dev; else sudo apt-get update -qq && sudo apt-get install -y -qq libsqlite3-dev; fi
fi

# A test process that crashes cannot stop the servers and agents it started: when the
# suite ends, however it ends, stop whatever this checkout's debug binary still runs
# (the tests run it as .build/<triple>/debug/stratus).
stop_leftovers() {
    if command -v pkill >/dev/null 2>&1; then
        pkill -TERM -f "^$PWD/\.build/([^/ ]+/)?debug/stratus (up|agent)( |\$)" && echo "== stopped stratus processes the tests left running" || true
    fi
}
trap stop_leftovers EXIT

echo "== format check (swift format lint)"
swift format lint --strict -r Sources Tests Package.swift

echo "== build (debug, with tests)"
STRATUS_WERROR=1 swift build --build-tests

echo "== tests"
STRATUS_WERROR=1 swift test --skip-build

echo "== deterministic simulation testing: 1,000 random clouds with faults, every invariant after every step"
.build/debug/stratus sim --fuzz --seeds 1000
