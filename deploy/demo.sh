#!/usr/bin/env bash
# The Flotilla demo (docs/demo.md): installs what is missing, builds, brings up the local cluster
# (deploy/local-cluster.sh: 3-member etcd, 3 controller replicas, 3 hosts, an iSCSI storage
# host), and then, with clusterctl alone: creates a network, a shared pool, 6 volumes and 6 VMs
# running the test guest; probes every VM over UDP from a client on the VMs' network;
# live-migrates one VM; drains the busiest host while the probes run; and prints what the
# clients saw (probes lost, the longest gap per VM) and how long it took. Every line it prints
# comes from these runs. The cluster is taken down on exit, unless --keep.
#
#   deploy/demo.sh [--keep] [--no-build]   the cluster demo (needs root and /dev/kvm)
#   deploy/demo.sh --down                   take down what a --keep run left
#   deploy/demo.sh --vmm                    the VMM alone: boot, snapshot, live migration, Linux
#
#   --keep       leave the cluster, its VMs and the client namespace up at the end
#   --no-build   skip install-deps.sh and build.sh: use the binaries in BUILD_DIR/bin as they are
#                (with the cluster demo or --vmm)
#
# Environment: BUILD_DIR (default build), FLOTILLA_LOCAL_DIR (the local cluster's state,
# default /var/lib/flotilla-local). Every process the demo starts itself (the UDP prober) is
# stopped by its PID; the cluster's processes are stopped by deploy/local-cluster.sh down.
set -Eeuo pipefail
set +m
export PATH="$PATH:/usr/sbin:/sbin"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD_DIR=${BUILD_DIR:-build}
[[ "$BUILD_DIR" == /* ]] || BUILD_DIR="$ROOT/$BUILD_DIR"
export BUILD_DIR
BIN="$BUILD_DIR/bin"
STATE=${FLOTILLA_LOCAL_DIR:-/var/lib/flotilla-local}
LOGS="$STATE/logs"

CLUSTERCTL="$BIN/clusterctl"
PROBE="$BIN/flotilla-udp-probe"
GUEST="$BIN/flotilla-guest.elf"
LOCAL_CLUSTER="$ROOT/deploy/local-cluster.sh"

# The demo's cluster objects.
HOSTS=(host-1 host-2 host-3)
STORAGE=storage
NETWORK=blue
VLAN=100
POOL=shared
VM_COUNT=6
VM_MEMORY=64M
VOLUME_SIZE=16M
VM_SUBNET=10.78.0                      # VM N has $VM_SUBNET.(10+N); the client has .1
CLIENT_NS=fl-client                    # the client namespace, attached to host-1's br-int
CLIENT_HOST=host-1
CLIENT_PORT=client0                    # the veth end in fl-host-1, a port of its br-int
PROBE_INTERVAL=1ms

vm_name() { echo "vm-$1"; }
vm_ip() { echo "$VM_SUBNET.$((10 + $1))"; }

# ---- output and failure ----------------------------------------------------------------------

say() { printf '%s\n' "$*"; }
indent() { sed -u 's/^/   /'; }
step() {
  echo
  echo "== $*"
}
now() { echo "$EPOCHREALTIME"; }
seconds_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# 312.4 -> "5m 12s"; 42.0 -> "42.0s"
human_seconds() {
  awk -v s="$1" 'BEGIN { if (s < 120) printf "%.1fs", s; else printf "%dm %02ds", s / 60, s % 60 }'
}

# The end of the local cluster's logs named (etcd-1, ctl-2, host-1-agent, ...); "controllers" and
# "agents" stand for all of them.
show_logs() {
  local name file
  local -a names=()
  local leader
  for name in "$@"; do
    case $name in
      controllers)
        # The leader runs the reconcilers: its log tells; without one, all replicas'.
        leader=$(timeout 5 "$CLUSTERCTL" -o json info 2>/dev/null | jq -r '.leader // ""' 2>/dev/null || true)
        if [[ -n $leader ]]; then names+=("$leader"); else names+=(ctl-1 ctl-2 ctl-3); fi
        ;;
      agents) names+=(host-1-agent host-2-agent host-3-agent) ;;
      *) names+=("$name") ;;
    esac
  done
  for name in "${names[@]}"; do
    file="$LOGS/$name.log"
    [[ -f $file ]] || continue
    echo "--- the end of $file:" >&2
    # Only this run's lines (the logs of an earlier, failed run are kept and appended to).
    awk -v since="$DEMO_START" 'substr($0, 1, 19) >= since' "$file" | tail -n 15 | cut -c1-400 >&2
  done
}

# Fails the demo: the message, then the end of the logs named.
die() {
  local message=$1
  shift
  printf '\ndemo: error: %s\n' "$message" >&2
  (($# > 0)) && show_logs "$@"
  exit 1
}

# clusterctl, its output shown indented as it comes; a failure ends the demo with the end of
# the leading controller's and the agents' logs.
ctl() {
  local status=0
  "$CLUSTERCTL" "$@" 2>&1 | indent || status=$?
  ((status == 0)) || die "clusterctl $* failed (exit status $status)" controllers agents storage-agent
}

# `clusterctl ... --wait` for at most SECONDS: a migration or drain that does not end is a failure
# shown with the logs, not a demo that hangs.
ctl_wait() {
  local seconds=$1 status=0
  shift
  timeout --kill-after=10 "$seconds" "$CLUSTERCTL" "$@" 2>&1 | indent || status=$?
  if ((status != 0)); then
    # The cluster's view of what went wrong, before the logs.
    local kind
    for kind in drains migrations vms; do
      say "\$ clusterctl get $kind"
      "$CLUSTERCTL" get "$kind" 2>&1 | indent
    done
  fi
  ((status != 124)) ||
    die "clusterctl $* did not finish within ${seconds}s (what it waits for goes on: clusterctl get migrations, get drains)" controllers agents
  ((status == 0)) || die "clusterctl $* failed (exit status $status)" controllers agents
}

# clusterctl's JSON output for a query (no echo); a failure ends the demo.
ctl_json() {
  local out status=0
  out=$("$CLUSTERCTL" -o json "$@" 2>&1) || status=$?
  ((status == 0)) || die "clusterctl -o json $* failed (exit status $status): $out" controllers
  printf '%s\n' "$out"
}

# ---- processes the demo starts: recorded by PID and start time -------------------------------

start_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  local -a fields
  read -ra fields <<<"${stat##*) }"
  [[ ${fields[0]} == Z ]] && return 0
  echo "${fields[19]}"
}

PROBE_PID=""
PROBE_TICKS=""
stop_probe() {
  [[ -n $PROBE_PID ]] || return 0
  local status=0 i
  if [[ $(start_ticks "$PROBE_PID") == "$PROBE_TICKS" ]]; then
    kill -TERM "$PROBE_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      [[ $(start_ticks "$PROBE_PID") == "$PROBE_TICKS" ]] || break
      sleep 0.1
    done
    if [[ $(start_ticks "$PROBE_PID") == "$PROBE_TICKS" ]]; then
      say "demo: the prober (pid $PROBE_PID) did not stop within 10s of SIGTERM: SIGKILL" >&2
      kill -KILL "$PROBE_PID" 2>/dev/null || true
    fi
  fi
  wait "$PROBE_PID" 2>/dev/null || status=$?
  PROBE_PID=""
  return "$status"
}

# ---- the client namespace ---------------------------------------------------------------------

ovs_vsctl() {
  OVS_RUNDIR="$STATE/$CLIENT_HOST/ovs" ovs-vsctl --db="unix:$STATE/$CLIENT_HOST/ovs/db.sock" \
    --timeout=10 "$@"
}

remove_client() {
  if [[ -S $STATE/$CLIENT_HOST/ovs/db.sock ]]; then
    ovs_vsctl --if-exists del-port br-int "$CLIENT_PORT" >/dev/null 2>&1 || true
  fi
  if [[ -e /run/netns/$CLIENT_NS ]]; then
    ip netns del "$CLIENT_NS" || say "demo: warning: cannot delete the namespace $CLIENT_NS" >&2
  fi
}

# fl-client: eth0 ($VM_SUBNET.1/24) <-> client0 in fl-host-1, an access port of br-int on the
# network's VLAN, like a VM's tap (the same commands as the agent migration test's client).
attach_client() {
  local host_ns="fl-$CLIENT_HOST"
  ip netns add "$CLIENT_NS"
  ip -n "$CLIENT_NS" link set lo up
  ip -n "$host_ns" link add "$CLIENT_PORT" type veth peer name eth0 netns "$CLIENT_NS"
  ip -n "$CLIENT_NS" address add "$VM_SUBNET.1/24" dev eth0
  ip -n "$CLIENT_NS" link set eth0 up
  ip -n "$host_ns" link set "$CLIENT_PORT" up
  # Through a userspace-datapath OVS and VXLAN, packets with offload flags are dropped.
  ip netns exec "$CLIENT_NS" ethtool -K eth0 tx off tso off gso off >/dev/null
  ip netns exec "$host_ns" ethtool -K "$CLIENT_PORT" tx off tso off gso off >/dev/null
  ovs_vsctl add-port br-int "$CLIENT_PORT" "tag=$VLAN"
  # ovs-vsctl succeeds even when ovs-vswitchd cannot open the device; it says so here.
  local error
  error=$(ovs_vsctl --if-exists get Interface "$CLIENT_PORT" error | tr -d '"\n')
  [[ -z $error || $error == "[]" ]] ||
    die "Open vSwitch of $CLIENT_HOST added the port $CLIENT_PORT but cannot use it: $error" \
      "$CLIENT_HOST-ovs-vswitchd"
}

probe_targets() {
  local i
  for ((i = 1; i <= VM_COUNT; i++)); do echo "$(vm_name "$i")=$(vm_ip "$i")"; done
}

# Probes every VM (20 probes each, 50 ms apart) until all answer, for up to SECONDS.
wait_all_answer() {
  local seconds=$1 deadline out status
  deadline=$((SECONDS + seconds))
  while true; do
    status=0
    # shellcheck disable=SC2046  # one argument per target
    out=$(nsenter --net="/run/netns/$CLIENT_NS" "$PROBE" --count 20 --interval 50ms \
      --linger 1s $(probe_targets) 2>&1) || status=$?
    ((status == 0)) && return 0
    ((status == 1)) || die "flotilla-udp-probe failed: $out"
    if ((SECONDS >= deadline)); then
      indent <<<"$out"
      return 1
    fi
    sleep 1
  done
}

# ---- cluster queries ---------------------------------------------------------------------------

# "NAME STATE HOST" per VM, sorted by name; fails (with clusterctl's message) when clusterctl
# does.
vm_table() {
  local out
  out=$("$CLUSTERCTL" -o json get vms 2>&1) || {
    printf 'clusterctl get vms failed: %s\n' "$out" >&2
    return 1
  }
  jq -r '.vms[] | "\(.name) \(.status.state // "-") \(.status.host // "-")"' <<<"$out" | sort
}

wait_hosts_ready() {
  local deadline=$((SECONDS + 60)) ready
  while true; do
    # (clusterctl may fail while the replicas elect a leader: asked again.)
    ready=$("$CLUSTERCTL" -o json get hosts 2>/dev/null |
      jq -r '[.hosts[] | select(.reporting and .record.state == "HOST_STATE_READY")] | length' 2>/dev/null) || ready=0
    ((ready == ${#HOSTS[@]} + 1)) && return 0
    ((SECONDS < deadline)) || {
      "$CLUSTERCTL" get hosts 2>&1 | indent
      die "the controller does not show ${HOSTS[*]} and $STORAGE Ready within 60s ($ready are)" controllers agents
    }
    sleep 0.5
  done
}

wait_vms_running() {
  local deadline=$((SECONDS + 180)) table running failed
  while true; do
    table=$(vm_table 2>/dev/null) || table=""
    running=$(awk '$2 == "VM_STATE_RUNNING"' <<<"$table" | wc -l)
    failed=$(awk '$2 == "VM_STATE_FAILED" { print $1 }' <<<"$table" | tr '\n' ' ')
    ((running == VM_COUNT)) && return 0
    if [[ -n $failed ]]; then
      "$CLUSTERCTL" get vms 2>&1 | indent
      die "VMs failed: $failed(see clusterctl describe vm NAME)" controllers agents
    fi
    if ((SECONDS >= deadline)); then
      "$CLUSTERCTL" get vms 2>&1 | indent
      die "only $running of $VM_COUNT VMs are Running after 180s" controllers agents
    fi
    sleep 0.5
  done
}

# ---- the cluster demo -------------------------------------------------------------------------

KEEP=0
BUILD=1
DEMO_START=$(date +%Y-%m-%dT%H:%M:%S)  # the timestamps of Flotilla's log lines start like this
CLUSTER_STARTED=0
WORK=""

on_exit() {
  local status=$?
  trap - ERR
  set +e
  if [[ -n $PROBE_PID ]]; then
    stop_probe >/dev/null 2>&1
    # What the clients saw until the failure.
    if ((status != 0)) && [[ -s $WORK/probe.txt ]]; then
      echo
      say "flotilla-udp-probe until the failure (from $CLIENT_NS):"
      indent <"$WORK/probe.txt"
    fi
  fi
  if ((CLUSTER_STARTED == 1)); then
    if ((KEEP == 1)); then
      print_keep_hints
    else
      echo
      say "== Taking the cluster down (deploy/local-cluster.sh down)"
      remove_client
      # After a failure the logs stay, for whoever looks into it.
      local -a keep_logs=()
      ((status == 0)) || keep_logs=(--keep-logs)
      if "$LOCAL_CLUSTER" down "${keep_logs[@]}" >"$WORK/down.log" 2>&1; then
        { grep -F "warning" "$WORK/down.log" || true; tail -n 1 "$WORK/down.log"; } | indent
        ((status == 0)) || say "   the cluster's logs stay in $LOGS"
      else
        indent <"$WORK/down.log"
        say "demo: deploy/local-cluster.sh down failed (its output above)" >&2
        ((status != 0)) || status=1
      fi
    fi
  fi
  [[ -n $WORK ]] && rm -rf "$WORK"
  if ((status != 0 && status != 130)); then
    say "demo: failed (exit status $status)" >&2
  fi
  exit "$status"
}

print_keep_hints() {
  cat <<EOF

== The cluster stays up (--keep)
   $CLUSTERCTL get hosts
   $CLUSTERCTL get vms
   $CLUSTERCTL describe vm vm-1
   $CLUSTERCTL vm migrate vm-2 --wait
   $CLUSTERCTL host undrain ${DRAINED:-host-N}
   nsenter --net=/run/netns/$CLIENT_NS ping $(vm_ip 1)
   nsenter --net=/run/netns/$CLIENT_NS $PROBE --duration 10s $(probe_targets | tr '\n' ' ')
   Logs: $LOGS
   Take it down: deploy/demo.sh --down
EOF
}

cluster_demo() {
  local began=$EPOCHREALTIME t
  [[ $(id -u) == 0 ]] ||
    die "the demo needs root (network namespaces, Open vSwitch, tgtd, KVM): run it with sudo"
  WORK=$(mktemp -d /tmp/flotilla-demo.XXXXXX)
  trap on_exit EXIT
  trap 'exit 130' INT TERM
  trap 'say "demo: failed: $BASH_COMMAND (line $LINENO)" >&2' ERR

  local build_seconds=0
  if ((BUILD == 1)); then
    step "0. Dependencies and build (deploy/install-deps.sh, deploy/build.sh into $BUILD_DIR)"
    t=$(now)
    ./deploy/install-deps.sh | indent
    ./deploy/build.sh | tail -n 1 | indent
    build_seconds=$(seconds_since "$t")
    say "   built in $(human_seconds "$build_seconds")"
  fi
  local program
  for program in "$CLUSTERCTL" "$PROBE" "$GUEST"; do
    [[ -x $program ]] || die "$program is missing: build it with deploy/build.sh (or set BUILD_DIR to the build that has it)"
  done
  for program in jq nsenter ethtool ovs-vsctl; do
    command -v "$program" >/dev/null ||
      die "$program is missing: run deploy/install-deps.sh (as root) to install it"
  done

  step "1. The local cluster (deploy/local-cluster.sh up)"
  t=$(now)
  if [[ -f $STATE/cluster.env ]] || ip link show fl-local >/dev/null 2>&1; then
    say "   a local cluster is up from an earlier run: taking it down first"
    remove_client
    "$LOCAL_CLUSTER" down >"$WORK/down.log" 2>&1 || {
      indent <"$WORK/down.log"
      die "deploy/local-cluster.sh down could not take the earlier cluster down (its output above)"
    }
  fi
  remove_client
  CLUSTER_STARTED=1
  "$LOCAL_CLUSTER" up >"$WORK/up.log" 2>&1 || {
    indent <"$WORK/up.log"
    die "deploy/local-cluster.sh up failed (its output above)" controllers agents
  }
  sed -n '/^Flotilla local cluster/,/^Inside a host/p' "$WORK/up.log" | sed '$d' | indent
  wait_hosts_ready
  local up_seconds
  up_seconds=$(seconds_since "$t")
  say "   up, and the controller sees every host Ready, in $(human_seconds "$up_seconds")"
  ctl get hosts

  step "2. Network $NETWORK (VLAN $VLAN), pool $POOL on $STORAGE, $VM_COUNT volumes, $VM_COUNT VMs (clusterctl)"
  t=$(now)
  say "\$ clusterctl host cordon $STORAGE"
  ctl host cordon "$STORAGE" --reason "storage host: no VMs"
  say "\$ clusterctl create network $NETWORK --vlan $VLAN"
  ctl create network "$NETWORK" --vlan "$VLAN"
  say "\$ clusterctl create pool $POOL --type iscsi --manager $STORAGE"
  ctl create pool "$POOL" --type iscsi --manager "$STORAGE"
  local i name ha
  for ((i = 1; i <= VM_COUNT; i++)); do
    name=$(vm_name "$i")
    say "\$ clusterctl create volume $POOL/$name-disk --size $VOLUME_SIZE"
    ctl create volume "$POOL/$name-disk" --size "$VOLUME_SIZE"
  done
  for ((i = 1; i <= VM_COUNT; i++)); do
    name=$(vm_name "$i")
    ha=()
    ((i % 2 == 1)) && ha=(--ha)
    say "\$ clusterctl create vm $name --memory $VM_MEMORY --vcpus 1 --kernel flotilla-guest.elf --cmdline 'workload=net net.ip=$(vm_ip "$i")/24 ...' --disk $POOL/$name-disk --nic $NETWORK${ha[*]:+ ${ha[*]}}"
    ctl create vm "$name" --memory "$VM_MEMORY" --vcpus 1 --kernel "$GUEST" \
      --cmdline "workload=net net.ip=$(vm_ip "$i")/24 virtio.irq=1 virtio.event_idx=1" \
      --disk "$POOL/$name-disk" --nic "$NETWORK" "${ha[@]}"
  done
  wait_vms_running
  local vms_seconds
  vms_seconds=$(seconds_since "$t")
  say "   all $VM_COUNT VMs Running $(human_seconds "$vms_seconds") after the first clusterctl call"
  say "\$ clusterctl get vms"
  ctl get vms

  step "3. A client on network $NETWORK ($CLIENT_NS, $VM_SUBNET.1, on $CLIENT_HOST's br-int, VLAN $VLAN) probes every VM"
  attach_client
  wait_all_answer 60 || die "not every VM answers UDP probes from $CLIENT_NS within 60s" agents "$CLIENT_HOST-ovs-vswitchd"
  say "   every VM answers; flotilla-udp-probe now sends each one a probe every $PROBE_INTERVAL"
  # shellcheck disable=SC2046  # one argument per target
  nsenter --net="/run/netns/$CLIENT_NS" "$PROBE" --interval "$PROBE_INTERVAL" \
    --json "$WORK/probe.json" $(probe_targets) >"$WORK/probe.txt" 2>"$WORK/probe.err" &
  PROBE_PID=$!
  PROBE_TICKS=$(start_ticks "$PROBE_PID")
  for ((i = 0; i < 100; i++)); do
    grep -q "probing" "$WORK/probe.err" 2>/dev/null && break
    [[ $(start_ticks "$PROBE_PID") == "$PROBE_TICKS" ]] ||
      die "flotilla-udp-probe exited at start: $(cat "$WORK/probe.err")"
    sleep 0.1
  done
  sleep 2  # a quiet baseline before anything moves

  step "4. Live migration of $(vm_name 1) (clusterctl vm migrate $(vm_name 1) --wait)"
  local from
  from=$(vm_table | awk -v vm="$(vm_name 1)" '$1 == vm { print $3 }') || die "clusterctl get vms failed" controllers
  t=$(now)
  say "\$ clusterctl vm migrate $(vm_name 1) --wait      ($(vm_name 1) runs on $from)"
  ctl_wait 120 vm migrate "$(vm_name 1)" --wait
  local migrate_seconds
  migrate_seconds=$(seconds_since "$t")
  say "\$ clusterctl get migrations"
  ctl get migrations
  say "   clusterctl vm migrate --wait returned after $(human_seconds "$migrate_seconds")"
  sleep 2

  step "5. Drain of the host with the most VMs, while the probes run"
  DRAINED=$(vm_table | awk -v storage="$STORAGE" '$3 != storage && $3 != "-" { n[$3]++ }
    END { for (h in n) print n[h], h }' | sort -k1,1nr -k2,2 | head -n 1 | awk '{ print $2 }')
  [[ -n $DRAINED ]] || die "no host runs a VM" controllers
  local drained_vms
  drained_vms=$(vm_table | awk -v h="$DRAINED" '$3 == h { print $1 }' | tr '\n' ' ')
  say "\$ clusterctl host drain $DRAINED --wait      ($DRAINED runs ${drained_vms% })"
  t=$(now)
  ctl_wait 300 host drain "$DRAINED" --wait
  local drain_seconds
  drain_seconds=$(seconds_since "$t")
  say "\$ clusterctl get drains"
  ctl get drains
  say "\$ clusterctl get vms"
  ctl get vms
  # The drain said it succeeded: the host must be empty and every VM running.
  local table left not_running
  table=$(vm_table) || die "clusterctl get vms failed" controllers
  left=$(awk -v h="$DRAINED" '$3 == h { print $1 }' <<<"$table" | tr '\n' ' ')
  [[ -z $left ]] || die "the drain of $DRAINED succeeded, but ${left}still run there" controllers agents
  not_running=$(awk '$2 != "VM_STATE_RUNNING" { print $1 " (" $2 ")" }' <<<"$table" | tr '\n' ' ')
  [[ -z $not_running ]] || die "after the drain, not every VM is Running: $not_running" controllers agents
  sleep 2

  step "6. The desktop console, on the same cluster"
  # flotilla-console on Qt's offscreen platform, with no saved settings of its own: it takes
  # clusterctl's configuration, follows the Watch stream, and saves its main window once the
  # state has arrived. What it shows must be the cluster's.
  local console_png="$BUILD_DIR/demo-console.png" console_line
  say "\$ flotilla-console --screenshot $console_png      (QT_QPA_PLATFORM=offscreen)"
  console_line=$(QT_QPA_PLATFORM=offscreen XDG_CONFIG_HOME="$WORK/console-config" \
    CLUSTERCTL_CONFIG="${HOME:-/root}/.config/flotilla/clusterctl.yaml" \
    timeout --kill-after=5 60 "$BIN/flotilla-console" --screenshot "$console_png" 2>"$WORK/console.err") ||
    die "flotilla-console could not show the cluster: $(tail -n 5 "$WORK/console.err")" controllers
  say "$console_line"
  [[ $console_line == *" $VM_COUNT VMs,"* ]] ||
    die "flotilla-console shows another number of VMs than the $VM_COUNT the cluster has: $console_line" controllers

  step "7. Summary"
  local probe_status=0
  stop_probe || probe_status=$?
  [[ -s $WORK/probe.json ]] ||
    die "flotilla-udp-probe wrote no report (exit status $probe_status): $(cat "$WORK/probe.err")"
  say "flotilla-udp-probe (from $CLIENT_NS):"
  indent <"$WORK/probe.txt"
  ((probe_status == 0)) || die "a VM never answered the probes: $(grep -v probing "$WORK/probe.err")" agents
  # After the drain every VM must still answer.
  wait_all_answer 30 || die "not every VM answers after the drain" agents controllers
  local migrations vms moved live restarts
  migrations=$(ctl_json get migrations)
  vms=$(ctl_json get vms)
  moved=$(jq -r '[.migrations[] | select(.phase == "MIGRATION_PHASE_SUCCEEDED") | .vm] | unique | length' <<<"$migrations")
  live=$(jq -r '[.migrations[] | select(.phase == "MIGRATION_PHASE_SUCCEEDED" and .mode == "MIGRATION_MODE_LIVE")] | length' <<<"$migrations")
  restarts=$(jq -r '[.vms[].status.restarts // 0] | add // 0' <<<"$vms")
  echo
  say "VMs moved: $moved of $VM_COUNT, by $live live migration(s); HA restarts: $restarts"
  jq -r '.migrations | sort_by(.created_unix_ms | tonumber)[] |
    [.vm, .source, (if .target == "" then "-" else .target end),
     (.phase | sub("MIGRATION_PHASE_"; "") | ascii_downcase), .downtime_ms,
     ((.bytes_sent | tonumber) / 1024 | floor), .rounds,
     (if .drain != "" then "drain of \(.drain)" else "clusterctl vm migrate" end)] | @tsv' \
    <<<"$migrations" |
    awk -F'\t' '{ printf "   %-6s %-7s -> %-7s %-12s downtime %5.1f ms, %6d KiB sent in %d round(s)  (%s)\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
  local failed_migrations
  failed_migrations=$(jq -r '[.migrations[] | select(.phase != "MIGRATION_PHASE_SUCCEEDED")] | length' <<<"$migrations")
  ((failed_migrations == 0)) || die "$failed_migrations migrations did not succeed (above)" controllers agents
  say "Longest probe gap per VM (a probe to each every $PROBE_INTERVAL for $(human_seconds "$(jq -r .elapsed_s "$WORK/probe.json")")):"
  jq -r '.targets[] | [.name, .longest_gap_ms, .longest_gap_start_s, .lost, .sent] | @tsv' \
    "$WORK/probe.json" |
    awk -F'\t' '{ printf "   %-6s longest gap %7.1f ms (at +%.1f s), %d of %d probes lost\n", $1, $2, $3, $4, $5 }'
  jq -r '[.total.longest_gap_ms, .total.lost, .total.sent, .longest_send_gap_ms] | @tsv' "$WORK/probe.json" |
    awk -F'\t' '{ printf "   max    longest gap %7.1f ms; %d of %d probes lost (the prober itself paused at most %.1f ms)\n", $1, $2, $3, $4 }'
  # What the controller found worth a warning while the demo ran (clusterctl get events).
  local warnings
  warnings=$(ctl_json get events --limit 1000 | jq -r '[.events[] | select(.severity == "SEVERITY_WARNING" or .severity == "SEVERITY_ERROR")] |
    group_by(.kind + .object + .reason + .message)[] | "   \(length)x \(.[0].kind)/\(.[0].object) \(.[0].reason): \(.[0].message)"')
  if [[ -n $warnings ]]; then
    say "Warnings and errors among the cluster's events (clusterctl get events):"
    say "$warnings"
  else
    say "Warnings and errors among the cluster's events: none"
  fi
  say "Drain of $DRAINED (${drained_vms% }): $(human_seconds "$drain_seconds") from clusterctl host drain to its --wait's return"
  say "Live migration of $(vm_name 1) (clusterctl, start to --wait's return): $(human_seconds "$migrate_seconds")"
  local total
  total=$(seconds_since "$began")
  if ((BUILD == 1)); then
    say "Whole demo: $(human_seconds "$total") (build $(human_seconds "$build_seconds"), cluster up $(human_seconds "$up_seconds"), VMs $(human_seconds "$vms_seconds"))"
  else
    say "Whole demo: $(human_seconds "$total") (cluster up $(human_seconds "$up_seconds"), VMs $(human_seconds "$vms_seconds"); no build: --no-build)"
  fi
}

# `--down`: what a --keep run left.
cluster_down() {
  [[ $(id -u) == 0 ]] || die "taking the cluster down needs root: run it with sudo"
  remove_client
  "$LOCAL_CLUSTER" down
}

# ---- the VMM alone (--vmm) --------------------------------------------------------------------

VMM_PIDS=()
stop_vmms() {
  local pid
  for pid in "${VMM_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [[ -n $WORK ]] && rm -rf "$WORK"
}

# Boots the test guest on 4 vCPUs, snapshots a running guest and resumes it in a new process,
# live-migrates it between two VMMs, and boots Debian's stock kernel. Every process it starts is
# stopped by PID on exit.
vmm_demo() {
  if ((BUILD == 1)); then
    ./deploy/install-deps.sh
    ./deploy/build.sh
  fi
  FIXTURES="$BUILD_DIR/fixtures/linux" ./deploy/fetch-linux.sh

  local VMM="$BIN/flotilla-vmm"
  local VMMCTL="$BIN/flotilla-vmmctl"
  WORK=$(mktemp -d)
  trap stop_vmms EXIT
  local work=$WORK

  # Waits until FILE contains TEXT (up to SECONDS), printing nothing.
  wait_for() {
    local file=$1 text=$2 seconds=$3 i
    for ((i = 0; i < seconds * 10; i++)); do
      grep -qF -- "$text" "$file" 2>/dev/null && return 0
      sleep 0.1
    done
    echo "demo: '$text' did not appear in $file within ${seconds}s" >&2
    return 1
  }

  echo
  echo "== 1. The test guest on 4 vCPUs: CPUID, LAPIC timer, SMP bring-up (flotilla-vmm)"
  local status=0
  "$VMM" --kernel "$GUEST" --memory 128M --vcpus 4 --cmdline "workload=selftest cpus=4" || status=$?
  echo "   flotilla-vmm exited with status $status (the guest wrote 0 to the debug-exit port: (0 << 1) | 1 = 1)"
  [[ $status == 1 ]]

  echo
  echo "== 2. A guest counting through 64 MiB, snapshotted, then resumed in a new process"
  "$VMM" --name counter --kernel "$GUEST" --memory 256M --cmdline "workload=counter counter_mib=64" \
    --api-socket "$work/counter.sock" --serial "file:$work/counter.serial" 2>"$work/counter.log" &
  VMM_PIDS+=($!)
  wait_for "$work/counter.serial" "counter pass=" 60
  sed 's/^/   guest: /' "$work/counter.serial"
  "$VMMCTL" --api-socket "$work/counter.sock" snapshot "$work/snapshot" | sed 's/^/   /'
  "$VMMCTL" --api-socket "$work/counter.sock" shutdown
  echo "   snapshot files: $(du -h --apparent-size "$work/snapshot/memory" | cut -f1) of memory, $(du -h "$work/snapshot/memory" | cut -f1) on disk"
  "$VMM" --restore "$work/snapshot" --api-socket "$work/restored.sock" \
    --serial "file:$work/restored.serial" 2>"$work/restored.log" &
  VMM_PIDS+=($!)
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
  local source_pid=$!
  VMM_PIDS+=("$source_pid")
  "$VMM" --name target --incoming tcp:127.0.0.1:7250 --migration-token demo-token --memory 512M \
    --api-socket "$work/target.sock" --serial "file:$work/target.serial" 2>"$work/target.log" &
  VMM_PIDS+=($!)
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
  local cmdline="console=ttyS0 earlyprintk=ttyS0 reboot=k panic=-1 pci=off acpi=off nomodules"
  "$VMM" --name linux --kernel "$BUILD_DIR/fixtures/linux/vmlinux" --memory 384M --vcpus 2 \
    --cmdline "$cmdline" --api-socket "$work/linux.sock" --serial "file:$work/linux.serial" \
    2>"$work/linux.log" &
  VMM_PIDS+=($!)
  wait_for "$work/linux.serial" "Intel MultiProcessor Specification" 240
  grep -E "Linux version|Command line|BIOS-e820|Hypervisor detected|MP-table|MultiProcessor" \
    "$work/linux.serial" | tr -d '\r' | sed 's/^/   linux: /'
  "$VMMCTL" --api-socket "$work/linux.sock" shutdown
  echo
  echo "demo: done"
}

# ---- main --------------------------------------------------------------------------------------

usage() { sed -n '/^#   deploy/,/^# Environment/p' "$ROOT/deploy/demo.sh" | sed '$d; s/^# \{0,1\}//'; }

main() {
  local mode=cluster
  while (($# > 0)); do
    case $1 in
      --keep) KEEP=1 ;;
      --no-build) BUILD=0 ;;
      --vmm) mode=vmm ;;
      --down) mode=down ;;
      -h | --help)
        usage
        return 0
        ;;
      *)
        usage >&2
        die "unknown argument '$1'"
        ;;
    esac
    shift
  done
  case $mode in
    cluster) cluster_demo ;;
    vmm) vmm_demo ;;
    down) cluster_down ;;
  esac
}

main "$@"
