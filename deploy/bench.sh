#!/usr/bin/env bash
# Installs what is missing, builds, and runs vmm_bench: Flotilla's VMM against QEMU on this
# machine, same guest, same run (docs/benchmarks.md). Arguments go to vmm_bench, e.g.
#   deploy/bench.sh                  # full run: 15 runs per VMM (5 for snapshot/restore)
#   deploy/bench.sh --quick          # 2 runs of everything, about 25 s
#   deploy/bench.sh --only start --iterations 30 --verbose
# Exits 0 when every measurement worked (missed targets are reported, not failures).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

./deploy/install-deps.sh
BUILD_DIR="$BUILD_DIR" ./deploy/build.sh
exec "$BUILD_DIR/bench/vmm_bench" "$@"
