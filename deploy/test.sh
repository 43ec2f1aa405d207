#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (all ctest labels: unit, integration,
# e2e, fuzz, lint). Exits non-zero on any failure; ctest's summary is printed last.
#   BUILD_DIR (default build), JOBS (default: number of cores), CTEST_ARGS (extra ctest flags)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}

./deploy/install-deps.sh
./deploy/build.sh
# Debian's kernel, for the Linux boot test (cached under $BUILD_DIR/fixtures).
FIXTURES="$BUILD_DIR/fixtures/linux" ./deploy/fetch-linux.sh

# Integration tests start daemons (etcd, ...) and, later, VMs; give them the cores.
cd "$BUILD_DIR"
ctest --output-on-failure --timeout 600 -j "$JOBS" ${CTEST_ARGS:-}
