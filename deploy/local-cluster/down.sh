# shellcheck shell=bash
# The local cluster's `down`: every recorded process stopped by PID, the agents' VMMs, then the
# namespaces, links, cgroups and state. Sourced by deploy/local-cluster.sh (docs/local-cluster.md).

# ---- down -------------------------------------------------------------------------------------

# The PIDs in the agent's cgroups of HOST (its VMMs).
cgroup_pids() {
  local host=$1 mount group
  group=$(host_cgroup "$host")
  for mount in $(cgroup_mounts_list); do
    [[ -d $mount/$group ]] || continue
    find "$mount/$group" -name cgroup.procs -exec cat {} + 2>/dev/null || true
  done
}

# Removes the agent's cgroups of HOST (VM groups first, then its parent group), in every
# hierarchy. Fails if a group stays (a process still in it).
remove_cgroups() {
  local host=$1 mount group dir attempt left
  group=$(host_cgroup "$host")
  for ((attempt = 0; attempt < 50; attempt++)); do
    left=0
    for mount in $(cgroup_mounts_list); do
      [[ -d $mount/$group ]] || continue
      # Deepest first: rmdir removes a cgroup only when it has no children and no processes.
      while read -r dir; do
        rmdir "$dir" 2>/dev/null || left=1
      done < <(find "$mount/$group" -depth -type d)
    done
    ((left == 0)) && return 0
    sleep 0.1
  done
  warn "cgroup $group of $host could not be removed in every hierarchy: $(for m in $(cgroup_mounts_list); do [[ -d $m/$group ]] && echo -n "$m/$group "; done)"
}

# Stops PIDS (a list), which are not recorded processes: SIGTERM, grace, SIGKILL.
stop_pids() {
  local why=$1
  shift
  local pid ticks comm
  local -a pids=() all_ticks=() comms=()
  for pid in "$@"; do
    ticks=$(start_ticks "$pid")
    [[ -n $ticks ]] || continue
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || echo "?")
    log "stopping $comm (pid $pid): $why"
    kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
    all_ticks+=("$ticks")
    comms+=("$comm")
  done
  local i
  for i in "${!pids[@]}"; do
    SKIP_TERM=1 stop_pid "${pids[$i]}" "${all_ticks[$i]}" "${comms[$i]}" || true
  done
}

stop_tgtd() {
  local pid
  pid=$(live_pid "$STORAGE-tgtd") || {
    rm -f "$(pid_file "$STORAGE-tgtd")"
    return 0
  }
  log "stopping $STORAGE-tgtd (pid $pid): deleting its targets, then its system"
  # SIGTERM does not stop tgtd; deleting its targets and then the "system" does.
  local tid
  for tid in $(tgtadm -C "$TGT_INSTANCE" --lld iscsi --op show --mode target 2>/dev/null |
    sed -n 's/^Target \([0-9]*\):.*/\1/p'); do
    tgtadm -C "$TGT_INSTANCE" --lld iscsi --op delete --mode target --tid "$tid" --force >/dev/null 2>&1 || true
  done
  tgtadm -C "$TGT_INSTANCE" --op delete --mode system >/dev/null 2>&1 || true
  local ticks
  read -r _ ticks <"$(pid_file "$STORAGE-tgtd")"
  if wait_gone "$pid" "$ticks" "$STOP_GRACE" || stop_pid "$pid" "$ticks" "$STORAGE-tgtd"; then
    rm -f "$(pid_file "$STORAGE-tgtd")"
  fi
}

stop_ovs() {
  local host=$1 dir pid
  dir="$STATE/$host/ovs"
  # Asked through its control socket to exit with --cleanup, ovs-vswitchd deletes its bridges'
  # interfaces; SIGTERM only when that request fails.
  if pid=$(live_pid "$host-ovs-vswitchd"); then
    log "stopping $host-ovs-vswitchd (pid $pid)"
    local ticks
    read -r _ ticks <"$(pid_file "$host-ovs-vswitchd")"
    local skip_term=0
    OVS_RUNDIR=$dir timeout 10 ovs-appctl -t "$dir/ovs-vswitchd.ctl" exit --cleanup \
      >/dev/null 2>&1 && skip_term=1
    SKIP_TERM=$skip_term stop_pid "$pid" "$ticks" "$host-ovs-vswitchd" || return 0
  fi
  rm -f "$(pid_file "$host-ovs-vswitchd")"
  stop_recorded "$host-ovsdb-server"
}

# Everything `up` made, in reverse order. Tolerates any part being absent already.
teardown() {
  local host ctl member ns
  for ctl in "${CONTROLLERS[@]}"; do stop_recorded "$ctl"; done
  for host in $(all_agent_hosts); do stop_recorded "$host-agent"; done
  # The VMMs the agents started (they outlive their agent by design): in the agents' cgroups,
  # or anywhere in our namespaces other than the recorded daemons.
  local -a recorded=() vmms=()
  local name pid
  for name in $(expected_processes); do
    pid=$(live_pid "$name") && recorded+=("$pid")
  done
  for host in $(all_agent_hosts); do
    ns=$(host_netns "$host")
    for pid in $(cgroup_pids "$host"; [[ -e /run/netns/$ns ]] && ip netns pids "$ns" 2>/dev/null); do
      [[ " ${recorded[*]} " == *" $pid "* ]] || vmms+=("$pid")
    done
  done
  if ((${#vmms[@]} > 0)); then
    # shellcheck disable=SC2046  # one PID per word
    stop_pids "a VMM of the local cluster (or another process in its namespaces)" \
      $(printf '%s\n' "${vmms[@]}" | sort -un)
  fi
  stop_tgtd
  for host in $(all_agent_hosts); do stop_ovs "$host"; done
  # Whatever still runs in our namespaces would keep them alive.
  for host in $(all_agent_hosts); do
    ns=$(host_netns "$host")
    [[ -e /run/netns/$ns ]] || continue
    # shellcheck disable=SC2046
    stop_pids "left in namespace $ns" $(ip netns pids "$ns" 2>/dev/null)
  done
  for member in "${ETCD_MEMBERS[@]}"; do stop_recorded "$member"; done
  # Unrecorded servers on the cluster network's address (its state directory was removed by
  # hand): only this cluster's etcd members listen there.
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    # shellcheck disable=SC2046
    stop_pids "listening on the cluster network $GATEWAY (not recorded)" \
      $(ss -Hltnp 2>/dev/null | awk -v gw="$GATEWAY:" 'index($4, gw) == 1 {print $6}' |
        grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un)
  fi
  for host in $(all_agent_hosts); do remove_cgroups "$host"; done

  for host in $(all_agent_hosts); do
    ns=$(host_netns "$host")
    if [[ -e /run/netns/$ns ]]; then
      log "deleting namespace $ns"
      ip netns del "$ns" || warn "cannot delete namespace $ns"
    fi
    # The root end goes with its peer; delete it by name in case it did not.
    ip link del "$(host_veth "$host")" 2>/dev/null || true
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    log "deleting bridge $BRIDGE"
    ip link del "$BRIDGE" || warn "cannot delete bridge $BRIDGE"
  fi
  rm -f "$TGT_RUN_DIR/socket.$TGT_INSTANCE" "$TGT_RUN_DIR/socket.$TGT_INSTANCE.lock"
  remove_clusterctl_config
  remove_state
}

remove_clusterctl_config() {
  local path=$CLUSTERCTL_CONFIG backup=""
  [[ -f $STATE/clusterctl.path ]] && path=$(cat "$STATE/clusterctl.path")
  [[ -f $STATE/clusterctl.backup ]] && backup=$(cat "$STATE/clusterctl.backup")
  if [[ -f $path ]] && grep -qF "# $MARKER for the cluster in $STATE;" "$path"; then
    rm -f "$path"
    log "removed clusterctl's configuration $path"
  fi
  if [[ -n $backup && -f $backup && ! -e $path ]]; then
    mv "$backup" "$path"
    log "put your clusterctl configuration back: $backup -> $path"
  fi
  if [[ -f $STATE/clusterctl.dirs ]]; then
    local dir
    while read -r dir; do rmdir "$dir" 2>/dev/null || break; done <"$STATE/clusterctl.dirs"
  fi
  rm -f "$STATE/clusterctl.path" "$STATE/clusterctl.backup" "$STATE/clusterctl.dirs"
}

# Removes what `up` wrote below STATE (never anything else), then STATE itself unless logs stay.
remove_state() {
  [[ -d $STATE ]] || return 0
  local host ctl
  for host in $(all_agent_hosts); do rm -rf "${STATE:?}/$host"; done
  for ctl in "${CONTROLLERS[@]}"; do rm -f "$STATE/$ctl.yaml"; done
  rm -rf "${STATE:?}/etcd"
  # A process that would not die keeps its pid file (and verify_gone names it).
  rmdir "$STATE/pids" 2>/dev/null || true
  rm -f "$STATE/cluster.env"
  if [[ ${KEEP_LOGS:-0} == 1 ]]; then
    [[ -d $STATE/logs ]] && log "logs kept in $STATE/logs"
  else
    rm -rf "${STATE:?}/logs"
  fi
  rmdir "$STATE" 2>/dev/null || true
}

# What `down` checks afterwards: nothing of the cluster may remain.
verify_gone() {
  local problems=() host name
  ip link show "$BRIDGE" >/dev/null 2>&1 && problems+=("bridge $BRIDGE")
  for host in $(all_agent_hosts); do
    [[ -e /run/netns/$(host_netns "$host") ]] && problems+=("namespace $(host_netns "$host")")
    ip link show "$(host_veth "$host")" >/dev/null 2>&1 && problems+=("link $(host_veth "$host")")
    for mount in $(cgroup_mounts_list); do
      [[ -d $mount/$(host_cgroup "$host") ]] && problems+=("cgroup $mount/$(host_cgroup "$host")")
    done
  done
  if [[ -d $STATE/pids ]]; then
    for name in "$STATE"/pids/*.pid; do
      [[ -e $name ]] && problems+=("process $(basename "$name" .pid) (pid $(cut -d' ' -f1 "$name"))")
    done
  fi
  if ((${#problems[@]} > 0)); then
    printf 'local-cluster: error: still there after down: %s\n' "${problems[*]}" >&2 2>/dev/null || true
    return 1
  fi
  log "down: no process, namespace, link or cgroup of the local cluster is left"
}

cmd_down() {
  [[ $(id -u) == 0 ]] || die "taking the local cluster down needs root: run it with sudo"
  refuse_foreign_cluster
  if ! anything_left && [[ ! -d $STATE ]]; then
    remove_clusterctl_config
    log "no local cluster in $STATE: nothing to do"
    return 0
  fi
  load_cluster_env
  log "taking the local cluster in $STATE down"
  # Called in a condition, so that one failing step does not stop the others; verify_gone
  # then says what is left.
  teardown || warn "some steps of the teardown failed (see above)"
  verify_gone
}
