# shellcheck shell=bash
# The local cluster's names and addresses, its processes (recorded by PID and start time) and
# its checks. Sourced by deploy/local-cluster.sh (docs/local-cluster.md).

# ---- addresses and names ----------------------------------------------------------------------

host_index() { echo "${1#host-}"; }                # host-2 -> 2
host_address() {
  if [[ $1 == "$STORAGE" ]]; then echo "$NET.20"; else echo "$NET.1$(host_index "$1")"; fi
}
host_netns() { echo "fl-$1"; }                       # fl-host-1, fl-storage
host_veth() { echo "flv-$1"; }                       # root end; the namespace end is eth0
host_cgroup() { echo "flotilla-local-$1"; }          # the agent's cgroup_parent
etcd_client_port() { echo $((2379 + 2 * (${1#etcd-} - 1))); }   # 2379 2381 2383
etcd_peer_port() { echo $((2380 + 2 * (${1#etcd-} - 1))); }     # 2380 2382 2384
controller_port() { echo $((7000 + ${1#ctl-} - 1)); }           # 7000 7001 7002
etcd_endpoints() {
  local member list=()
  for member in "${ETCD_MEMBERS[@]}"; do list+=("$GATEWAY:$(etcd_client_port "$member")"); done
  local IFS=,
  echo "${list[*]}"
}
all_agent_hosts() { echo "${HOSTS[@]}" "$STORAGE"; }

# ---- processes: recorded by PID and start time ------------------------------------------------

# The start time of PID in clock ticks since boot (/proc/PID/stat field 22); empty if it is gone
# or a zombie.
start_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  local rest=${stat##*) }                            # the fields after "(comm) "
  local -a fields
  read -ra fields <<<"$rest"
  [[ ${fields[0]} == Z ]] && return 0
  echo "${fields[19]}"
}

pid_file() { echo "$STATE/pids/$1.pid"; }

record_pid() {
  local name=$1 pid=$2
  echo "$pid $(start_ticks "$pid")" >"$(pid_file "$name")"
}

# The recorded PID of NAME, if that very process still runs (pid and start time match).
live_pid() {
  local file
  file=$(pid_file "$1")
  [[ -f $file ]] || return 1
  local pid ticks
  read -r pid ticks <"$file" || return 1
  [[ -n ${pid:-} && -n ${ticks:-} ]] || return 1
  [[ $(start_ticks "$pid") == "$ticks" ]] || return 1
  echo "$pid"
}

# Starts a long-running program in its own session, its output appended to LOG, and records its
# PID. setsid and nsenter exec in place, so $! is the program's own PID. fd 9 (the script's lock)
# is not inherited.
start_process() {
  local name=$1 logfile=$2
  shift 2
  setsid "$@" >>"$logfile" 2>&1 </dev/null 9<&- &
  record_pid "$name" "$!"
}

# Waits up to SECONDS for PID (with start time TICKS) to be gone.
wait_gone() {
  local pid=$1 ticks=$2 seconds=$3 i
  for ((i = 0; i < seconds * 10; i++)); do
    [[ $(start_ticks "$pid") == "$ticks" ]] || return 0
    sleep 0.1
  done
  return 1
}

# Stops PID (SIGTERM unless SKIP_TERM=1, SIGKILL after the grace period) if it still is the
# process with start time TICKS.
stop_pid() {
  local pid=$1 ticks=$2 what=$3
  [[ $(start_ticks "$pid") == "$ticks" ]] || return 0
  [[ ${SKIP_TERM:-0} == 1 ]] || kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$pid" "$ticks" "$STOP_GRACE" && return 0
  warn "$what (pid $pid) did not exit within ${STOP_GRACE}s of SIGTERM: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" "$ticks" 10 && return 0
  warn "$what (pid $pid) is still there after SIGKILL"
  return 1
}

# Stops the recorded process NAME and forgets it (a process that would not die stays recorded).
stop_recorded() {
  local name=$1 file pid ticks
  file=$(pid_file "$name")
  [[ -f $file ]] || return 0
  if read -r pid ticks <"$file" && [[ -n ${pid:-} && -n ${ticks:-} ]]; then
    if [[ $(start_ticks "$pid") == "$ticks" ]]; then
      log "stopping $name (pid $pid)"
      stop_pid "$pid" "$ticks" "$name" || return 0
    fi
  fi
  rm -f "$file"
}

# The names of every process `up` starts, in start order.
expected_processes() {
  local member host ctl
  for member in "${ETCD_MEMBERS[@]}"; do echo "$member"; done
  echo "$STORAGE-tgtd"
  for host in $(all_agent_hosts); do echo "$host-ovsdb-server" "$host-ovs-vswitchd"; done
  for host in $(all_agent_hosts); do echo "$host-agent"; done
  if [[ ${WITH_CONTROLLERS:-1} == 1 ]]; then
    for ctl in "${CONTROLLERS[@]}"; do echo "$ctl"; done
  fi
}

# ---- checks -----------------------------------------------------------------------------------

FIX="run deploy/install-deps.sh (as root) to install it"

require_program() {
  local program=$1 package=$2
  command -v "$program" >/dev/null 2>&1 ||
    die "$program is missing (Debian package $package): $FIX"
}

check_prerequisites() {
  [[ $(id -u) == 0 ]] ||
    die "the local cluster needs root (network namespaces, Open vSwitch, tgtd, cgroups): run it with sudo"
  [[ -c /dev/kvm ]] || die "/dev/kvm is missing: the agents' VMs need KVM (load kvm_intel or kvm_amd, or use a machine with virtualization)"
  [[ -r /dev/kvm && -w /dev/kvm ]] || die "/dev/kvm is not readable and writable by root"
  require_program ip iproute2
  require_program ss iproute2
  require_program nsenter util-linux
  require_program setsid util-linux
  require_program flock util-linux
  require_program ethtool ethtool
  require_program etcd etcd-server
  require_program etcdctl etcd-client
  local program
  for program in ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl ovs-appctl; do
    require_program "$program" openvswitch-switch
  done
  [[ -r $OVS_SCHEMA ]] || die "$OVS_SCHEMA is missing (Debian package openvswitch-common): $FIX"
  require_program tgtd tgt
  require_program tgtadm tgt
  for program in flotilla-agent flotilla-vmm; do
    [[ -x $BIN/$program ]] ||
      die "$BIN/$program is missing: build it with deploy/build.sh (or set BUILD_DIR to the build directory that has it)"
  done
  if [[ ${WITH_CONTROLLERS:-1} == 1 && ! -x $BIN/flotilla-controller ]]; then
    die "$BIN/flotilla-controller is missing: build it with deploy/build.sh, or pass --without-controllers to bring up etcd, the hosts and the storage host only"
  fi
  # Unix socket paths (OVS's, the VMMs' API sockets) must stay below 108 bytes.
  ((${#STATE} <= 60)) || die "FLOTILLA_LOCAL_DIR $STATE is ${#STATE} characters long: use one of at most 60 (unix socket paths are built below it)"
  [[ $NET =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "FLOTILLA_LOCAL_NET '$NET' is not three octets like 10.77.0"
}

# Nothing else may use our addresses, ports or names.
check_conflicts() {
  local found
  found=$(ip -o -4 address show | awk -v net="$NET." -v br="$BRIDGE" \
    '$2 != br && index($4, net) == 1 {print $2 " " $4}')
  [[ -z $found ]] || die "the cluster network $NET.0/24 is already used here ($found): set FLOTILLA_LOCAL_NET to a free one, e.g. 10.177.0"
  local port addr member ctl
  local -a wanted=()
  for member in "${ETCD_MEMBERS[@]}"; do
    wanted+=("$GATEWAY:$(etcd_client_port "$member")" "$GATEWAY:$(etcd_peer_port "$member")")
  done
  if [[ ${WITH_CONTROLLERS:-1} == 1 ]]; then
    for ctl in "${CONTROLLERS[@]}"; do wanted+=("127.0.0.1:$(controller_port "$ctl")"); done
  fi
  for addr in "${wanted[@]}"; do
    port=${addr##*:}
    found=$(ss -Hltnp "sport = :$port" 2>/dev/null | awk -v want="$addr" -v port=":$port" \
      '{if ($4 == want || $4 == "[::ffff:" substr(want, 1, length(want) - length(port)) "]" port || $4 == "0.0.0.0" port || $4 == "*" port || $4 == "[::]" port) print $4 " " $6}')
    [[ -z $found ]] || die "port $port, which the local cluster uses for $addr, is taken: $found; stop that program and retry"
  done
  if [[ -S $TGT_RUN_DIR/socket.$TGT_INSTANCE ]] &&
    tgtadm -C "$TGT_INSTANCE" --op show --mode sys >/dev/null 2>&1; then
    die "a tgtd with control instance $TGT_INSTANCE runs already (not one of this cluster's): stop it (tgtadm -C $TGT_INSTANCE --op delete --mode system) and retry"
  fi
}

# ---- shared by up, down and status ------------------------------------------------------------
registered_hosts() {
  etcdctl --endpoints="$(etcd_endpoints)" --command-timeout=3s \
    get --prefix /flotilla/v1/hosts-status/ --keys-only 2>/dev/null |
    sed -n 's|^/flotilla/v1/hosts-status/||p'
}

listening() {                                       # listening ADDRESS:PORT
  # gRPC servers bound to an IPv4 address show up as [::ffff:ADDRESS]:PORT.
  local mapped="[::ffff:${1%:*}]:${1##*:}"
  [[ -n $(ss -Hltn "sport = :${1##*:}" 2>/dev/null |
    awk -v want="$1" -v mapped="$mapped" '$4 == want || $4 == mapped') ]]
}

# The settings the cluster in STATE was started with (its network and whether it has
# controllers), so that down and status act on that cluster whatever the environment says now.
load_cluster_env() {
  [[ -f $STATE/cluster.env ]] || return 0
  local value
  value=$(sed -n 's/^NET=//p' "$STATE/cluster.env")
  if [[ -n $value ]]; then
    NET=$value
    GATEWAY="$NET.1"
  fi
  value=$(sed -n 's/^WITH_CONTROLLERS=//p' "$STATE/cluster.env")
  WITH_CONTROLLERS=${value:-1}
}

# True when every process `up` starts is recorded and alive.
cluster_running() {
  grep -qsx "WITH_CONTROLLERS=${WITH_CONTROLLERS:-1}" "$STATE/cluster.env" || return 1
  local name
  for name in $(expected_processes); do live_pid "$name" >/dev/null || return 1; done
}

# Anything of an earlier cluster: state, or our namespaces and bridge.
anything_left() {
  [[ -f $STATE/cluster.env || -d $STATE/pids ]] && return 0
  ip link show "$BRIDGE" >/dev/null 2>&1 && return 0
  local host
  for host in $(all_agent_hosts); do
    [[ -e /run/netns/$(host_netns "$host") ]] && return 0
  done
  return 1
}

# The state directory of another local cluster that owns the bridge and namespaces (made with
# another FLOTILLA_LOCAL_DIR and still recorded there); empty if there is none.
foreign_cluster() {
  local alias
  alias=$(cat "/sys/class/net/$BRIDGE/ifalias" 2>/dev/null) || return 0
  alias=${alias#flotilla-local }
  [[ -n $alias && $alias != "$STATE" && -f $alias/cluster.env ]] && echo "$alias"
  return 0
}

refuse_foreign_cluster() {
  local other
  other=$(foreign_cluster)
  [[ -z $other ]] ||
    die "the bridge $BRIDGE and the namespaces belong to the local cluster in $other, not $STATE: take that one down first (FLOTILLA_LOCAL_DIR=$other deploy/local-cluster.sh down)"
}

cgroup_mounts_list() {
  # /proc/self/mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPER
  awk '{for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup" || $(i+1) == "cgroup2") print $5; break }}' \
    /proc/self/mountinfo
}
