#!/usr/bin/env bash
# The whole Flotilla cluster on this one machine (docs/local-cluster.md): a Linux bridge as the
# physical network, etcd with 3 members, 3 hosts (network namespaces, each with its own Open
# vSwitch and flotilla-agent, joined by VXLAN), a tgt storage host serving the iSCSI pool
# `shared`, 3 flotilla-controller replicas, and clusterctl's default configuration.
#
#   deploy/local-cluster.sh [up]        bring it up (idempotent: a running cluster is left alone,
#                                       a half-up one is taken down first)
#   deploy/local-cluster.sh down|--down [--keep-logs]
#                                       stop everything it started (by recorded PID) and remove
#                                       the namespaces, links, cgroups, state and its clusterctl
#                                       configuration; --keep-logs keeps STATE/logs
#   deploy/local-cluster.sh status      every process with its PID and whether it lives; etcd
#                                       health; the hosts registered in etcd
#
#   --without-controllers   (up) everything but the controller replicas and clusterctl's config
#
# Environment: FLOTILLA_LOCAL_DIR (state, default /var/lib/flotilla-local), BUILD_DIR (default
# build; binaries from BUILD_DIR/bin), FLOTILLA_LOCAL_NET (the first three octets of the cluster
# network, default 10.77.0).
#
# Every process it starts is recorded as "PID START_TICKS" in STATE/pids/NAME.pid and stopped by
# that PID (after checking that its start time still matches); processes are never matched by
# name or pattern. The VMMs the agents started are found through the agents' cgroups and the
# namespaces this script made.
# shellcheck source-path=SCRIPTDIR
set -Eeuo pipefail
set +m  # no job control: a background child is no process group leader, so setsid execs in place
umask 022
export PATH="$PATH:/usr/sbin:/sbin"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT="$ROOT/deploy/local-cluster.sh"
STATE=${FLOTILLA_LOCAL_DIR:-/var/lib/flotilla-local}
BUILD_DIR=${BUILD_DIR:-build}
[[ "$BUILD_DIR" == /* ]] || BUILD_DIR="$ROOT/$BUILD_DIR"
BIN="$BUILD_DIR/bin"
NET=${FLOTILLA_LOCAL_NET:-10.77.0}

# Names and addresses (docs/local-cluster.md has the picture).
BRIDGE=fl-local
GATEWAY="$NET.1"
HOSTS=(host-1 host-2 host-3)
STORAGE=storage
ETCD_MEMBERS=(etcd-1 etcd-2 etcd-3)
CONTROLLERS=(ctl-1 ctl-2 ctl-3)
AGENT_PORT=7100
ISCSI_PORT=3260
TGT_INSTANCE=77                                # tgtd -C 77 / tgtadm -C 77
IQN_PREFIX=iqn.2026-01.org.flotilla.local:shared
OVS_SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
TGT_RUN_DIR=/var/run/tgtd
STOP_GRACE=10                                  # seconds between SIGTERM and SIGKILL

CLUSTERCTL_CONFIG="${HOME:-/root}/.config/flotilla/clusterctl.yaml"
MARKER="written by deploy/local-cluster.sh"          # in every file it writes

# Output never fails the script: when the reader of our output goes away (`... | head`), the
# work goes on and the rest of the output is dropped (see the PIPE trap in main).
log() { printf 'local-cluster: %s\n' "$*" 2>/dev/null || true; }
warn() { printf 'local-cluster: warning: %s\n' "$*" >&2 2>/dev/null || true; }
die() {
  printf 'local-cluster: error: %s\n' "$*" >&2 2>/dev/null || true
  exit 1
}

usage() {
  sed -n '/^#   deploy/,/^# Environment/p' "$SCRIPT" | sed '$d; s/^# \{0,1\}//'
}

# The parts (check them all with `shellcheck -x deploy/local-cluster.sh`).
# shellcheck source=local-cluster/common.sh
source "$ROOT/deploy/local-cluster/common.sh"
# shellcheck source=local-cluster/up.sh
source "$ROOT/deploy/local-cluster/up.sh"
# shellcheck source=local-cluster/down.sh
source "$ROOT/deploy/local-cluster/down.sh"

# ---- status -----------------------------------------------------------------------------------

cmd_status() {
  if [[ ! -f $STATE/cluster.env ]]; then
    log "no local cluster in $STATE (start it with deploy/local-cluster.sh up)"
    return 3
  fi
  load_cluster_env
  local name pid bad=0
  printf '%-22s %-8s %s\n' PROCESS PID STATE
  for name in $(expected_processes); do
    pid="-"
    [[ -f $(pid_file "$name") ]] && read -r pid _ <"$(pid_file "$name")"
    if live_pid "$name" >/dev/null; then
      printf '%-22s %-8s %s\n' "$name" "$pid" running
    else
      printf '%-22s %-8s %s\n' "$name" "$pid" "NOT RUNNING"
      bad=1
    fi
  done
  echo
  echo "etcd health:"
  etcdctl --endpoints="$(etcd_endpoints)" --command-timeout=3s endpoint health 2>&1 |
    sed 's/^/  /' || bad=1
  echo "hosts registered in etcd: $(registered_hosts | tr '\n' ' ')"
  if [[ $WITH_CONTROLLERS == 1 ]]; then
    local ctl
    for ctl in "${CONTROLLERS[@]}"; do
      if listening "127.0.0.1:$(controller_port "$ctl")"; then
        echo "controller $ctl: listening on 127.0.0.1:$(controller_port "$ctl")"
      else
        echo "controller $ctl: NOT listening on 127.0.0.1:$(controller_port "$ctl")"
        bad=1
      fi
    done
  fi
  return "$bad"
}

# ---- main -------------------------------------------------------------------------------------

main() {
  local verb=up
  KEEP_LOGS=0
  WITH_CONTROLLERS=1
  while (($# > 0)); do
    case $1 in
      up | down | status) verb=$1 ;;
      --down) verb=down ;;
      --keep-logs) KEEP_LOGS=1 ;;
      --without-controllers) WITH_CONTROLLERS=0 ;;
      -h | --help | help)
        usage
        return 0
        ;;
      *) die "unknown argument '$1' (expected up, down, --down, status, --keep-logs, --without-controllers; see --help)" ;;
    esac
    shift
  done
  # A reader that goes away must not kill us half-way: drop the rest of the output instead.
  # (A trapped signal is reset to its default in the programs we start; an ignored one would not be.)
  trap 'exec >/dev/null' PIPE
  # One invocation at a time: a lock on this script file (fd 9, which no daemon inherits).
  exec 9<"$SCRIPT"
  flock -n 9 || die "another deploy/local-cluster.sh is running; wait for it to finish"
  case $verb in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
  esac
}

main "$@"
