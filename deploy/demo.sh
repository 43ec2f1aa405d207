#!/usr/bin/env bash
# Installs what is missing, builds, and runs the most complete part of Flotilla that exists
# today: its VMM. It boots the test guest on 4 vCPUs, snapshots a running guest and resumes
# it in a new process, and boots Debian's stock kernel. Every line it prints comes from those
# runs; every process it starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

./deploy/install-deps.sh
./deploy/build.sh
FIXTURES="$BUILD_DIR/fixtures/linux" ./deploy/fetch-linux.sh

VMM="$BUILD_DIR/bin/flotilla-vmm"
VMMCTL="$BUILD_DIR/bin/flotilla-vmmctl"
GUEST="$BUILD_DIR/bin/flotilla-guest.elf"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Waits until FILE contains TEXT (up to SECONDS), printing nothing.
wait_for() {
  local file=$1 text=$2 seconds=$3
  for ((i = 0; i < seconds * 10; i++)); do
    grep -qF -- "$text" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo: '$text' did not appear in $file within ${seconds}s" >&2
  return 1
}

echo
echo "== 1. The test guest on 4 vCPUs: CPUID, LAPIC timer, SMP bring-up (flotilla-vmm)"
status=0
"$VMM" --kernel "$GUEST" --memory 128M --vcpus 4 --cmdline "workload=selftest cpus=4" || status=$?
echo "   flotilla-vmm exited with status $status (the guest wrote 0 to the debug-exit port: (0 << 1) | 1 = 1)"
[[ $status == 1 ]]

echo
echo "== 2. A guest counting through 64 MiB, snapshotted, then resumed in a new process"
"$VMM" --name counter --kernel "$GUEST" --memory 256M --cmdline "workload=counter counter_mib=64" \
  --api-socket "$work/counter.sock" --serial "file:$work/counter.serial" 2>"$work/counter.log" &
pids+=($!)
wait_for "$work/counter.serial" "counter pass=" 60
sed 's/^/   guest: /' "$work/counter.serial"
"$VMMCTL" --api-socket "$work/counter.sock" snapshot "$work/snapshot" | sed 's/^/   /'
"$VMMCTL" --api-socket "$work/counter.sock" shutdown
echo "   snapshot files: $(du -h --apparent-size "$work/snapshot/memory" | cut -f1) of memory, $(du -h "$work/snapshot/memory" | cut -f1) on disk"
"$VMM" --restore "$work/snapshot" --api-socket "$work/restored.sock" \
  --serial "file:$work/restored.serial" 2>"$work/restored.log" &
pids+=($!)
wait_for "$work/restored.serial" "counter pass=" 60
sleep 2
echo "   the restored guest (it checks every counter against the pass it expects):"
sed 's/^/   guest: /' "$work/restored.serial"
grep -h "restored\|guest memory loaded" "$work/restored.log" | sed 's/^/   vmm: /'
if grep -q error "$work/restored.serial"; then echo "demo: the restored guest reported an error" >&2; exit 1; fi
"$VMMCTL" --api-socket "$work/restored.sock" shutdown

echo
echo "== 3. The same guest live-migrated to a second flotilla-vmm over loopback, while it counts"
"$VMM" --name source --kernel "$GUEST" --memory 512M --cmdline "workload=counter counter_mib=128" \
  --api-socket "$work/source.sock" --serial "file:$work/source.serial" 2>"$work/source.log" &
source_pid=$!
pids+=($source_pid)
"$VMM" --name target --incoming tcp:127.0.0.1:7250 --migration-token demo-token --memory 512M \
  --api-socket "$work/target.sock" --serial "file:$work/target.serial" 2>"$work/target.log" &
pids+=($!)
wait_for "$work/source.serial" "counter pass=2" 60
wait_for "$work/target.log" "waiting for an incoming migration" 10
"$VMMCTL" --api-socket "$work/source.sock" migrate-send tcp:127.0.0.1:7250 --token demo-token \
  --downtime-ms 50
wait "$source_pid" || { echo "demo: the source VMM did not exit cleanly" >&2; exit 1; }
grep -h " I migration: " "$work/source.log" | sed "s/^.* I migration: /   source: /"
wait_for "$work/target.serial" "counter pass=" 30
sleep 1
echo "   the guest at the target (no boot: it goes on counting, every page checked):"
tail -n 2 "$work/target.serial" | sed 's/^/   guest: /'
if grep -q error "$work/target.serial"; then echo "demo: the migrated guest reported an error" >&2; exit 1; fi
"$VMMCTL" --api-socket "$work/target.sock" shutdown

echo
echo "== 4. Debian's Linux kernel (vmlinux, PVH entry) on 2 vCPUs and 384 MiB"
echo "   (on this machine guest kernel code is emulated by PVM: ~30 s to the first lines)"
cmdline="console=ttyS0 earlyprintk=ttyS0 reboot=k panic=-1 pci=off acpi=off nomodules"
"$VMM" --name linux --kernel "$BUILD_DIR/fixtures/linux/vmlinux" --memory 384M --vcpus 2 \
  --cmdline "$cmdline" --api-socket "$work/linux.sock" --serial "file:$work/linux.serial" \
  2>"$work/linux.log" &
pids+=($!)
wait_for "$work/linux.serial" "Intel MultiProcessor Specification" 240
grep -E "Linux version|Command line|BIOS-e820|Hypervisor detected|MP-table|MultiProcessor" \
  "$work/linux.serial" | tr -d '\r' | sed 's/^/   linux: /'
"$VMMCTL" --api-socket "$work/linux.sock" shutdown
echo
echo "demo: done"
