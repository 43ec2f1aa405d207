#!/usr/bin/env bash
# Configures (once) and builds Flotilla into $BUILD_DIR (default build/). Binaries land in
# build/bin/, test binaries in build/tests/. Incremental: a second run with nothing changed
# does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}

if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
ninja -C "$BUILD_DIR" -j "$JOBS"
