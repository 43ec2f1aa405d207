#!/usr/bin/env bash
# Runs clang-tidy (.clang-tidy) over Flotilla's sources, using the compile commands of the
# build directory (configured first if needed). Slow on 2 cores: not part of deploy/test.sh.
#   deploy/lint.sh [path-regex]   e.g. deploy/lint.sh common/etcd
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
[[ -f "$BUILD_DIR/compile_commands.json" ]] || ./deploy/build.sh
# Generated sources under the build directory are not ours to lint.
filter=${1:-'/(common|vmm|migration|storage|network|node-agent|controller|cli|gui|guest|bench|tests)/'}
run-clang-tidy -quiet -p "$BUILD_DIR" -j "$(nproc)" "$PWD/.*$filter.*\.cc$"
