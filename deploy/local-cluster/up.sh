# shellcheck shell=bash
# The local cluster's `up`: network, etcd, tgtd, Open vSwitch, agents, controllers, clusterctl's
# configuration. Sourced by deploy/local-cluster.sh (docs/local-cluster.md).

# ---- up ---------------------------------------------------------------------------------------

setup_network() {
  log "network: bridge $BRIDGE ($GATEWAY/24)"
  ip link add "$BRIDGE" type bridge
  # The bridge names the state directory of its cluster (see foreign_cluster).
  ip link set "$BRIDGE" alias "flotilla-local $STATE"
  ip address add "$GATEWAY/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local host ns veth
  for host in $(all_agent_hosts); do
    ns=$(host_netns "$host")
    veth=$(host_veth "$host")
    log "network: namespace $ns, $veth <-> eth0 ($(host_address "$host"))"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE"
    ip link set "$veth" up
    # The compute hosts' eth0 becomes the underlay port of OVS's br-phy, which takes the
    # address (the agent sets that up); the storage host keeps it on eth0.
    if [[ $host == "$STORAGE" ]]; then
      ip -n "$ns" address add "$(host_address "$host")/24" dev eth0
    fi
    ip -n "$ns" link set eth0 up
    # Through a userspace-datapath OVS, TCP over veths stalls unless the offloads are off.
    ethtool -K "$veth" tx off tso off gso off >/dev/null
    ip netns exec "$ns" ethtool -K eth0 tx off tso off gso off >/dev/null
  done
}

start_etcd() {
  local member peers=() client peer
  for member in "${ETCD_MEMBERS[@]}"; do
    peers+=("$member=http://$GATEWAY:$(etcd_peer_port "$member")")
  done
  local IFS=,
  local initial="${peers[*]}"
  unset IFS
  for member in "${ETCD_MEMBERS[@]}"; do
    client="http://$GATEWAY:$(etcd_client_port "$member")"
    peer="http://$GATEWAY:$(etcd_peer_port "$member")"
    log "etcd: $member, clients on $client, peers on $peer"
    mkdir -p "$STATE/etcd"
    start_process "$member" "$STATE/logs/$member.log" \
      etcd --name "$member" --data-dir "$STATE/etcd/$member" \
      --listen-client-urls "$client" --advertise-client-urls "$client" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "$initial" --initial-cluster-token flotilla-local \
      --initial-cluster-state new --logger zap --log-outputs stderr
  done
  local i
  for ((i = 0; i < 600; i++)); do
    if etcdctl --endpoints="$(etcd_endpoints)" --command-timeout=2s endpoint health >/dev/null 2>&1; then
      log "etcd: healthy"
      return 0
    fi
    for member in "${ETCD_MEMBERS[@]}"; do
      live_pid "$member" >/dev/null ||
        die "etcd member $member exited; the end of its log ($STATE/logs/$member.log):
$(tail -n 20 "$STATE/logs/$member.log")"
    done
    sleep 0.1
  done
  die "etcd is not healthy after 60s: $(etcdctl --endpoints="$(etcd_endpoints)" endpoint health 2>&1 | tr '\n' ' ')"
}

start_tgtd() {
  local ns portal
  ns=$(host_netns "$STORAGE")
  portal="$(host_address "$STORAGE"):$ISCSI_PORT"
  log "storage: tgtd -C $TGT_INSTANCE, iSCSI portal $portal (namespace $ns)"
  mkdir -p "$TGT_RUN_DIR"
  start_process "$STORAGE-tgtd" "$STATE/logs/$STORAGE-tgtd.log" \
    nsenter --net="/run/netns/$ns" -- tgtd -f -C "$TGT_INSTANCE" --iscsi "portal=$portal"
  local i
  for ((i = 0; i < 200; i++)); do
    tgtadm -C "$TGT_INSTANCE" --op show --mode sys >/dev/null 2>&1 && return 0
    live_pid "$STORAGE-tgtd" >/dev/null ||
      die "tgtd exited at start; its output: $(tail -n 20 "$STATE/logs/$STORAGE-tgtd.log")"
    sleep 0.1
  done
  die "tgtd -C $TGT_INSTANCE does not answer on its control socket after 20s"
}

# One Open vSwitch per host, with its own database, sockets and run directory, userspace
# datapath (the same commands as tests/support/netns.cc).
start_ovs() {
  local host=$1 ns dir
  ns=$(host_netns "$host")
  dir="$STATE/$host/ovs"
  mkdir -p "$dir"
  log "$host: Open vSwitch in $dir (datapath netdev)"
  local -a env=(env "OVS_RUNDIR=$dir" "OVS_DBDIR=$dir" "OVS_LOGDIR=$dir")
  local db_log="$STATE/logs/$host-ovsdb-server.log" switch_log="$STATE/logs/$host-ovs-vswitchd.log"
  "${env[@]}" ovsdb-tool create "$dir/conf.db" "$OVS_SCHEMA"
  # --detach returns once the daemon listens and has written its pidfile.
  "${env[@]}" ip netns exec "$ns" ovsdb-server "$dir/conf.db" --remote="punix:$dir/db.sock" \
    --pidfile="$dir/ovsdb-server.pid" --unixctl="$dir/ovsdb-server.ctl" \
    --log-file="$db_log" -vconsole:off --detach >>"$db_log" 2>&1 9<&- ||
    die "ovsdb-server of $host did not start; the end of $db_log:
$(tail -n 20 "$db_log")"
  record_pid "$host-ovsdb-server" "$(cat "$dir/ovsdb-server.pid")"
  "${env[@]}" ovs-vsctl --db="unix:$dir/db.sock" --timeout=30 --no-wait init
  "${env[@]}" ip netns exec "$ns" ovs-vswitchd "unix:$dir/db.sock" --disable-system \
    --pidfile="$dir/ovs-vswitchd.pid" --unixctl="$dir/ovs-vswitchd.ctl" \
    --log-file="$switch_log" -vconsole:off --detach >>"$switch_log" 2>&1 9<&- ||
    die "ovs-vswitchd of $host did not start; the end of $switch_log:
$(tail -n 20 "$switch_log")"
  record_pid "$host-ovs-vswitchd" "$(cat "$dir/ovs-vswitchd.pid")"
}

write_agent_config() {
  local host=$1 address dir
  address=$(host_address "$host")
  dir="$STATE/$host"
  mkdir -p "$dir/state" "$dir/run"
  {
    cat <<EOF
# flotilla-agent of $host in the local cluster ($MARKER; keys: docs/agent.md)
host: $host
listen: $address:$AGENT_PORT
plaintext: true
socket: $dir/agent.sock
state_dir: $dir/state
run_dir: $dir/run
vmm_binary: $BIN/flotilla-vmm
migration:
  address: $address
  ports: 7200-7299
etcd:
  endpoints: [$(etcd_endpoints | sed 's/,/, /g')]
lease_ttl: 5s
fence_after: 3s
report_interval: 2s
stop_grace: 5s
cgroup_parent: $(host_cgroup "$host")
ovs:
  db: unix:$dir/ovs/db.sock
  datapath: netdev
EOF
    if [[ $host == "$STORAGE" ]]; then
      mkdir -p "$dir/shared"
      cat <<EOF
pools:
  - {name: shared, type: iscsi, portal: '$address:$ISCSI_PORT', iqn_prefix: '$IQN_PREFIX',
     manage: true, path: $dir/shared, tgt_instance: $TGT_INSTANCE}
EOF
    else
      mkdir -p "$dir/pool"
      cat <<EOF
  underlay_port: eth0
  underlay_cidr: $address/24
  tunnel_ip: $address
pools:
  - {name: local, type: dir, path: $dir/pool}
  - {name: shared, type: iscsi, portal: '$(host_address "$STORAGE"):$ISCSI_PORT', iqn_prefix: '$IQN_PREFIX'}
EOF
    fi
    cat <<EOF
log:
  level: info
EOF
  } >"$dir/agent.yaml"
}

# flotilla-agent entered into the host's network namespace with nsenter: `ip netns exec` would
# also remount /sys, which hides the cgroup hierarchies mounted below it.
start_agent() {
  local host=$1
  write_agent_config "$host"
  log "$host: flotilla-agent on $(host_address "$host"):$AGENT_PORT"
  start_process "$host-agent" "$STATE/logs/$host-agent.log" \
    nsenter --net="/run/netns/$(host_netns "$host")" -- \
    "$BIN/flotilla-agent" --config "$STATE/$host/agent.yaml"
}

# Waits until every agent's host status is in etcd (bound to its lease).
wait_agents_registered() {
  local i host missing
  for ((i = 0; i < 120; i++)); do
    missing=()
    local registered
    registered=$(registered_hosts)
    for host in $(all_agent_hosts); do
      grep -qx "$host" <<<"$registered" || missing+=("$host")
      live_pid "$host-agent" >/dev/null ||
        die "flotilla-agent of $host exited; the end of its log ($STATE/logs/$host-agent.log):
$(tail -n 30 "$STATE/logs/$host-agent.log")"
    done
    if ((${#missing[@]} == 0)); then
      log "agents: $(all_agent_hosts | sed 's/ /, /g') registered in etcd (/flotilla/v1/hosts-status/)"
      return 0
    fi
    sleep 0.5
  done
  die "agents of ${missing[*]} did not register in etcd within 60s; see $STATE/logs/<host>-agent.log"
}

# The VXLAN mesh: every compute host has a tunnel port to each other compute host.
wait_tunnels() {
  local i host ports count
  for ((i = 0; i < 120; i++)); do
    count=0
    for host in "${HOSTS[@]}"; do
      ports=$(OVS_RUNDIR="$STATE/$host/ovs" ovs-vsctl --db="unix:$STATE/$host/ovs/db.sock" \
        --timeout=5 list-ports br-int 2>/dev/null || true)
      (($(grep -c '^vx-' <<<"$ports" || true) == ${#HOSTS[@]} - 1)) && count=$((count + 1))
    done
    if ((count == ${#HOSTS[@]})); then
      log "network: VXLAN mesh between ${HOSTS[*]} is up"
      return 0
    fi
    sleep 0.5
  done
  die "the VXLAN tunnels between ${HOSTS[*]} did not appear within 60s (ovs-vsctl list-ports br-int on each host); see the agents' logs in $STATE/logs"
}

write_controller_config() {
  local ctl=$1
  cat >"$STATE/$ctl.yaml" <<EOF
# flotilla-controller replica $ctl of the local cluster ($MARKER)
name: $ctl
listen: 127.0.0.1:$(controller_port "$ctl")
plaintext: true
etcd:
  endpoints: [$(etcd_endpoints | sed 's/,/, /g')]
agents:
  plaintext: true
election_ttl: 5s
host_fence_timeout: 10s
scheduler: {strategy: spread, cpu_overcommit: 4.0, memory_overcommit: 1.0}
migrations: {per_source: 2, per_target: 2, per_cluster: 8, downtime_limit_ms: 300}
rebalance: {automatic: false, interval: 60s, threshold: 0.1, max_moves: 10, cooldown: 10m}
log: {level: info}
EOF
}

# The controller replicas, in the root namespace (they reach etcd and the agents over the bridge).
start_controllers() {
  [[ -x $BIN/flotilla-controller ]] ||
    die "$BIN/flotilla-controller is missing: build it with deploy/build.sh, or pass --without-controllers"
  local ctl
  for ctl in "${CONTROLLERS[@]}"; do
    write_controller_config "$ctl"
    log "controller: $ctl on 127.0.0.1:$(controller_port "$ctl")"
    start_process "$ctl" "$STATE/logs/$ctl.log" \
      "$BIN/flotilla-controller" --config "$STATE/$ctl.yaml"
  done
  local i waiting
  for ((i = 0; i < 300; i++)); do
    waiting=()
    for ctl in "${CONTROLLERS[@]}"; do
      live_pid "$ctl" >/dev/null ||
        die "flotilla-controller $ctl exited; the end of its log ($STATE/logs/$ctl.log):
$(tail -n 30 "$STATE/logs/$ctl.log")"
      listening "127.0.0.1:$(controller_port "$ctl")" || waiting+=("$ctl")
    done
    if ((${#waiting[@]} == 0)); then
      log "controllers: ${CONTROLLERS[*]} serve ClusterService"
      return 0
    fi
    sleep 0.1
  done
  die "controllers ${waiting[*]} do not listen after 30s; see $STATE/logs/<ctl>.log"
}

# clusterctl's default configuration: the three replicas. A file this script did not write is
# kept as a backup (and put back by `down`).
write_clusterctl_config() {
  local dir
  dir=$(dirname "$CLUSTERCTL_CONFIG")
  # The directories made here, deepest first: down removes them again when empty.
  local made=$dir
  while [[ ! -d $made ]]; do
    echo "$made" >>"$STATE/clusterctl.dirs"
    made=$(dirname "$made")
  done
  mkdir -p "$dir"
  if [[ -f $CLUSTERCTL_CONFIG ]] && ! grep -qF "# $MARKER" "$CLUSTERCTL_CONFIG"; then
    local backup
    backup="$CLUSTERCTL_CONFIG.before-local-cluster.$(date +%Y%m%d-%H%M%S)"
    mv "$CLUSTERCTL_CONFIG" "$backup"
    echo "$backup" >"$STATE/clusterctl.backup"
    log "clusterctl: your $CLUSTERCTL_CONFIG was moved to $backup (down puts it back)"
  fi
  local endpoints="" ctl
  for ctl in "${CONTROLLERS[@]}"; do
    endpoints+="${endpoints:+, }127.0.0.1:$(controller_port "$ctl")"
  done
  cat >"$CLUSTERCTL_CONFIG" <<EOF
# $MARKER for the cluster in $STATE;
# deploy/local-cluster.sh down removes it.
endpoints: [$endpoints]
plaintext: true
EOF
  echo "$CLUSTERCTL_CONFIG" >"$STATE/clusterctl.path"
  log "clusterctl: wrote $CLUSTERCTL_CONFIG"
}

print_summary() {
  local host ctl
  echo
  echo "Flotilla local cluster (state in $STATE, logs in $STATE/logs)"
  echo "  etcd         $(etcd_endpoints | sed 's/,/, /g')"
  if [[ -f $STATE/pids/${CONTROLLERS[0]}.pid ]]; then
    printf '  controllers '
    for ctl in "${CONTROLLERS[@]}"; do printf ' %s 127.0.0.1:%s' "$ctl" "$(controller_port "$ctl")"; done
    echo "  (ClusterService, plaintext)"
  else
    echo "  controllers  not started (--without-controllers)"
  fi
  for host in "${HOSTS[@]}"; do
    echo "  $host       agent $(host_address "$host"):$AGENT_PORT, netns $(host_netns "$host"), pools local + shared"
  done
  echo "  $STORAGE      agent $(host_address "$STORAGE"):$AGENT_PORT, netns $(host_netns "$STORAGE"), iSCSI portal $(host_address "$STORAGE"):$ISCSI_PORT (pool shared, $IQN_PREFIX:<volume>)"
  echo "                (no VMs belong on it: cordon it, e.g. clusterctl host cordon $STORAGE)"
  echo
  if [[ -f $STATE/clusterctl.path ]]; then
    echo "clusterctl needs no flags ($(cat "$STATE/clusterctl.path")):"
    echo "  $BIN/clusterctl get hosts"
    echo "  $BIN/clusterctl get vms"
  fi
  echo "Inside a host:  nsenter --net=/run/netns/$(host_netns "${HOSTS[0]}") ip address"
  echo "Test guest:     $BIN/flotilla-guest.elf"
  echo "Status:         deploy/local-cluster.sh status"
  echo "Take it down:   deploy/local-cluster.sh down   (--keep-logs keeps $STATE/logs)"
}

# The state directory must be ours: absent, empty, or made by this script.
check_state_dir() {
  [[ -d $STATE ]] || return 0
  [[ -f $STATE/cluster.env ]] && return 0
  local entry
  for entry in "$STATE"/* "$STATE"/.[!.]*; do
    [[ -e $entry ]] || continue
    [[ $(basename "$entry") == logs ]] && continue
    die "$STATE exists and was not made by deploy/local-cluster.sh ($entry): set FLOTILLA_LOCAL_DIR to another directory, or remove that one"
  done
}

UP_DONE=0
on_up_exit() {
  local status=$?
  ((UP_DONE == 1 || status == 0)) && return 0
  trap - ERR
  if ((status == 130)); then
    warn "interrupted; taking down what was started (logs kept in $STATE/logs)"
  else
    warn "up failed; taking down what was started (logs kept in $STATE/logs)"
  fi
  KEEP_LOGS=1
  teardown || true
  verify_gone || true
  exit "$status"
}

# Takes down an earlier cluster of this state directory, with its own settings and its logs
# kept; fails unless nothing of it is left.
teardown_earlier() {
  (
    load_cluster_env
    KEEP_LOGS=1
    teardown
  ) || true
  verify_gone >/dev/null ||
    die "could not take the earlier local cluster down: run deploy/local-cluster.sh down and fix what it reports"
}

cmd_up() {
  [[ $(id -u) == 0 ]] ||
    die "the local cluster needs root (network namespaces, Open vSwitch, tgtd, cgroups): run it with sudo"
  if cluster_running; then
    load_cluster_env
    log "the local cluster in $STATE is up already: nothing to do"
    print_summary 2>/dev/null || true
    return 0
  fi
  check_prerequisites
  refuse_foreign_cluster
  local other=$((1 - WITH_CONTROLLERS))
  if grep -qsx "WITH_CONTROLLERS=$other" "$STATE/cluster.env" &&
    WITH_CONTROLLERS=$other cluster_running; then
    if ((WITH_CONTROLLERS == 1)); then
      log "the local cluster in $STATE runs without controllers: taking it down to start it with them"
    else
      log "the local cluster in $STATE runs with controllers, but --without-controllers was given: taking it down first"
    fi
    teardown_earlier
  elif anything_left; then
    log "found a half-up local cluster: taking it down first"
    teardown_earlier
  fi
  check_state_dir
  check_conflicts

  local began=$SECONDS
  trap on_up_exit EXIT
  trap 'exit 130' INT TERM
  # A command that fails unexpectedly is named before everything is taken down again.
  trap 'warn "failed: $BASH_COMMAND (${BASH_SOURCE[0]##*/}, line $LINENO)"' ERR
  mkdir -p "$STATE/pids" "$STATE/logs"
  cat >"$STATE/cluster.env" <<EOF
# $MARKER: the local cluster's settings; deploy/local-cluster.sh down reads them.
NET=$NET
BIN=$BIN
WITH_CONTROLLERS=$WITH_CONTROLLERS
EOF
  setup_network
  start_etcd
  start_tgtd
  local host
  for host in $(all_agent_hosts); do start_ovs "$host"; done
  for host in $(all_agent_hosts); do start_agent "$host"; done
  wait_agents_registered
  wait_tunnels
  if [[ $WITH_CONTROLLERS == 1 ]]; then
    start_controllers
    write_clusterctl_config
  else
    log "controllers: not started (--without-controllers)"
  fi
  UP_DONE=1
  trap - EXIT INT TERM ERR
  log "up in $((SECONDS - began))s"
  print_summary 2>/dev/null || true
}
