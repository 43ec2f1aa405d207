// How clusterctl shows each kind of object (see views.h).
#include "cli/views.h"

#include "fmt/format.h"

namespace flotilla::cli {
namespace {

std::string percent(double fraction) {
  return fmt::format("{:.0f}%", fraction * 100.0);
}

}  // namespace

const std::vector<KindInfo>& allKinds() {
  static const std::vector<KindInfo> kKinds = {
      {Kind::kHost, "host", "hosts", v1::OBJECT_KIND_HOST},
      {Kind::kVm, "vm", "vms", v1::OBJECT_KIND_VM},
      {Kind::kNetwork, "network", "networks", v1::OBJECT_KIND_NETWORK},
      {Kind::kPool, "pool", "pools", v1::OBJECT_KIND_POOL},
      {Kind::kVolume, "volume", "volumes", v1::OBJECT_KIND_VOLUME},
      {Kind::kMigration, "migration", "migrations", v1::OBJECT_KIND_MIGRATION},
      {Kind::kDrain, "drain", "drains", v1::OBJECT_KIND_DRAIN},
      {Kind::kEvent, "event", "events", v1::OBJECT_KIND_EVENT},
  };
  return kKinds;
}

std::optional<KindInfo> findKind(std::string_view word) {
  for (const KindInfo& info : allKinds()) {
    if (word == info.singular || word == info.plural) return info;
  }
  return std::nullopt;
}

std::string kindList() {
  std::string list;
  for (const KindInfo& info : allKinds()) {
    if (!list.empty()) list += ", ";
    list += info.plural;
  }
  return list;
}

const KindInfo& kindInfo(Kind kind) {
  for (const KindInfo& info : allKinds()) {
    if (info.kind == kind) return info;
  }
  return allKinds().front();  // cannot happen: every Kind is listed
}

const KindInfo* kindInfo(v1::ObjectKind object_kind) {
  for (const KindInfo& info : allKinds()) {
    if (info.object_kind == object_kind) return &info;
  }
  return nullptr;
}

std::string hostStateWord(const v1::Host& host) {
  std::string state = enumWord(v1::HostState_Name(host.record().state()), "HOST_STATE_");
  if (state == "-") state = host.reporting() ? "Ready" : "NotReporting";
  if (host.record().cordoned()) state += ",Cordoned";
  return state;
}

std::string vmStateWord(v1::VmState state) {
  return enumWord(v1::VmState_Name(state), "VM_STATE_");
}

std::string policyWord(v1::MigrationPolicy policy) {
  switch (policy) {
    case v1::MIGRATION_POLICY_LIVE:
      return "live";
    case v1::MIGRATION_POLICY_LIVE_OR_COLD:
      return "live-or-cold";
    case v1::MIGRATION_POLICY_COLD:
      return "cold";
    default:
      return "-";
  }
}

std::string poolTypeWord(v1::PoolType type) {
  switch (type) {
    case v1::POOL_TYPE_DIR:
      return "dir";
    case v1::POOL_TYPE_ISCSI:
      return "iscsi";
    case v1::POOL_TYPE_DRBD:
      return "drbd";
    default:
      return "-";
  }
}

std::string modeWord(v1::MigrationMode mode) {
  return mode == v1::MIGRATION_MODE_COLD ? "cold" : "live";
}

std::string migrationPhaseWord(v1::MigrationPhase phase) {
  return enumWord(v1::MigrationPhase_Name(phase), "MIGRATION_PHASE_");
}

std::string drainPhaseWord(v1::DrainPhase phase) {
  return enumWord(v1::DrainPhase_Name(phase), "DRAIN_PHASE_");
}

std::string drainVmStateWord(v1::DrainVm::State state) {
  return enumWord(v1::DrainVm::State_Name(state), "STATE_");
}

std::string severityWord(v1::Event::Severity severity) {
  return enumWord(v1::Event::Severity_Name(severity), "SEVERITY_");
}

bool migrationEnded(v1::MigrationPhase phase) {
  return phase == v1::MIGRATION_PHASE_SUCCEEDED || phase == v1::MIGRATION_PHASE_FAILED ||
         phase == v1::MIGRATION_PHASE_CANCELLED;
}

bool drainEnded(v1::DrainPhase phase) {
  return phase == v1::DRAIN_PHASE_SUCCEEDED || phase == v1::DRAIN_PHASE_FAILED ||
         phase == v1::DRAIN_PHASE_CANCELLED;
}

DrainCounts countDrain(const v1::DrainRecord& drain) {
  DrainCounts counts;
  for (const v1::DrainVm& vm : drain.vms()) {
    ++counts.total;
    if (vm.state() == v1::DrainVm::STATE_DONE) ++counts.done;
    if (vm.state() == v1::DrainVm::STATE_FAILED) ++counts.failed;
  }
  return counts;
}

Table hostsTable(const v1::ListHostsResponse& list, bool wide, absl::Time now) {
  std::vector<std::string> headers = {"NAME", "STATUS", "VMS", "CPUS", "CPU", "MEMORY", "AGE"};
  if (wide) {
    for (const char* h : {"AGENT", "CPU-MODEL", "LABELS", "REASON"}) headers.push_back(h);
  }
  Table table(std::move(headers));
  for (const v1::Host& host : list.hosts()) {
    const v1::HostStatus& status = host.status();
    const bool reported = host.has_status();
    std::vector<std::string> row = {
        host.name(),
        hostStateWord(host),
        reported ? std::to_string(status.vms_size()) : "-",
        reported ? std::to_string(status.inventory().cpus()) : "-",
        reported ? percent(status.load().cpu_busy()) : "-",
        reported ? fmt::format("{}/{}", humanBytes(status.load().vm_memory_bytes()),
                               humanBytes(status.inventory().memory_bytes()))
                 : "-",
        ageOf(host.record().meta().created_at(), now)};
    if (wide) {
      row.push_back(orDash(status.agent_address()));
      row.push_back(orDash(status.inventory().cpu_model_name()));
      row.push_back(formatLabels(host.record().meta().labels()));
      row.push_back(orDash(host.record().cordon_reason()));
    }
    table.addRow(std::move(row));
  }
  return table;
}

Table vmsTable(const v1::ListVmsResponse& list, bool wide, absl::Time now) {
  std::vector<std::string> headers = {"NAME", "STATE", "HOST", "VCPUS", "MEMORY", "AGE"};
  if (wide) {
    for (const char* h : {"HA", "POLICY", "MIGRATION", "GENERATION", "LABELS", "MESSAGE"}) {
      headers.push_back(h);
    }
  }
  Table table(std::move(headers));
  for (const v1::Vm& vm : list.vms()) {
    const v1::VmSpec& spec = vm.record().spec();
    std::vector<std::string> row = {vm.name(),
                                    vmStateWord(vm.status().state()),
                                    orDash(vm.status().host()),
                                    std::to_string(spec.vcpus()),
                                    humanBytes(spec.memory_bytes()),
                                    ageOf(vm.record().meta().created_at(), now)};
    if (wide) {
      std::string message = vm.status().message();
      if (message.empty() && vm.status().unschedulable_reasons_size() > 0) {
        message = vm.status().unschedulable_reasons(0);
      }
      row.push_back(spec.ha() ? "yes" : "no");
      row.push_back(policyWord(spec.migration_policy()));
      row.push_back(orDash(vm.status().migration()));
      row.push_back(std::to_string(vm.status().generation()));
      row.push_back(formatLabels(vm.record().meta().labels()));
      row.push_back(orDash(message));
    }
    table.addRow(std::move(row));
  }
  return table;
}

Table networksTable(const v1::ListNetworksResponse& list, bool wide, absl::Time now) {
  std::vector<std::string> headers = {"NAME", "VLAN", "DESCRIPTION", "AGE"};
  if (wide) headers.push_back("LABELS");
  Table table(std::move(headers));
  for (const v1::NetworkRecord& network : list.networks()) {
    std::vector<std::string> row = {network.meta().name(), std::to_string(network.vlan()),
                                    orDash(network.description()),
                                    ageOf(network.meta().created_at(), now)};
    if (wide) row.push_back(formatLabels(network.meta().labels()));
    table.addRow(std::move(row));
  }
  return table;
}

Table poolsTable(const v1::ListPoolsResponse& list, bool wide, absl::Time now) {
  std::vector<std::string> headers = {"NAME", "TYPE", "SHARED", "MANAGER", "AGE"};
  if (wide) headers.push_back("LABELS");
  Table table(std::move(headers));
  for (const v1::PoolRecord& pool : list.pools()) {
    std::vector<std::string> row = {pool.meta().name(), poolTypeWord(pool.type()),
                                    pool.shared() ? "yes" : "no", orDash(pool.manager_host()),
                                    ageOf(pool.meta().created_at(), now)};
    if (wide) row.push_back(formatLabels(pool.meta().labels()));
    table.addRow(std::move(row));
  }
  return table;
}

Table volumesTable(const v1::ListVolumesClusterResponse& list, bool wide, absl::Time now) {
  std::vector<std::string> headers = {"POOL", "NAME", "SIZE", "ATTACHED-TO", "AGE"};
  if (wide) headers.push_back("BYTES");
  Table table(std::move(headers));
  for (const v1::VolumeRecord& volume : list.volumes()) {
    std::vector<std::string> row = {volume.pool(), volume.meta().name(),
                                    humanBytes(volume.size_bytes()), orDash(volume.attached_to()),
                                    ageOf(volume.meta().created_at(), now)};
    if (wide) row.push_back(std::to_string(volume.size_bytes()));
    table.addRow(std::move(row));
  }
  return table;
}

Table migrationsTable(const v1::ListMigrationsResponse& list, bool wide, absl::Time now) {
  std::vector<std::string> headers = {"NAME", "VM",    "SOURCE", "TARGET",
                                      "MODE", "PHASE", "SENT",   "AGE"};
  if (wide) {
    for (const char* h : {"ROUNDS", "DOWNTIME", "REQUESTED-BY", "MESSAGE"}) headers.push_back(h);
  }
  Table table(std::move(headers));
  for (const v1::MigrationRecord& migration : list.migrations()) {
    std::vector<std::string> row = {migration.meta().name(),
                                    migration.vm(),
                                    orDash(migration.source()),
                                    orDash(migration.target()),
                                    modeWord(migration.mode()),
                                    migrationPhaseWord(migration.phase()),
                                    humanBytes(migration.bytes_sent()),
                                    ageOfMillis(migration.created_unix_ms(), now)};
    if (wide) {
      std::string requester = "user";
      if (!migration.drain().empty()) requester = "drain/" + migration.drain();
      if (!migration.rebalance().empty()) requester = "rebalance";
      row.push_back(std::to_string(migration.rounds()));
      row.push_back(migration.downtime_ms() > 0 ? fmt::format("{:.1f}ms", migration.downtime_ms())
                                                : "-");
      row.push_back(requester);
      row.push_back(orDash(migration.message()));
    }
    table.addRow(std::move(row));
  }
  return table;
}

Table drainsTable(const v1::ListDrainsResponse& list, bool wide, absl::Time now) {
  std::vector<std::string> headers = {"HOST", "PHASE", "DONE", "FAILED", "ALLOW-COLD", "AGE"};
  if (wide) headers.push_back("MESSAGE");
  Table table(std::move(headers));
  for (const v1::DrainRecord& drain : list.drains()) {
    const DrainCounts counts = countDrain(drain);
    std::vector<std::string> row = {drain.meta().name(),
                                    drainPhaseWord(drain.phase()),
                                    fmt::format("{}/{}", counts.done, counts.total),
                                    std::to_string(counts.failed),
                                    drain.allow_cold() ? "yes" : "no",
                                    ageOfMillis(drain.created_unix_ms(), now)};
    if (wide) row.push_back(orDash(drain.message()));
    table.addRow(std::move(row));
  }
  return table;
}

Table eventsTable(const v1::ListEventsResponse& list, bool wide, absl::Time now) {
  std::vector<std::string> headers = {"AGE", "SEVERITY", "OBJECT", "REASON", "MESSAGE"};
  if (wide) headers.insert(headers.begin(), "TIME");
  Table table(std::move(headers));
  for (const v1::Event& event : list.events()) {
    std::vector<std::string> row = {ageOfMillis(event.unix_ms(), now),
                                    severityWord(event.severity()),
                                    fmt::format("{}/{}", event.kind(), event.object()),
                                    orDash(event.reason()), event.message()};
    if (wide) row.insert(row.begin(), formatTimeMillis(event.unix_ms()));
    table.addRow(std::move(row));
  }
  return table;
}

std::string migrationProgress(const v1::MigrationRecord& migration) {
  std::string text = migrationPhaseWord(migration.phase());
  if (!migration.target().empty()) text += fmt::format(" to {}", migration.target());
  if (migration.bytes_sent() > 0)
    text += fmt::format(", {} sent", humanBytes(migration.bytes_sent()));
  if (migration.rounds() > 0) text += fmt::format(", round {}", migration.rounds());
  if (migration.phase() == v1::MIGRATION_PHASE_SUCCEEDED && migration.downtime_ms() > 0) {
    text += fmt::format(", downtime {:.1f}ms", migration.downtime_ms());
  }
  if (!migration.message().empty()) text += ": " + migration.message();
  return text;
}

std::string summarizeEvent(const v1::WatchEvent& event) {
  const KindInfo* info = kindInfo(event.kind());
  const std::string object =
      fmt::format("{}/{}", info != nullptr ? info->singular : "object", event.name());
  if (event.type() == v1::WatchEvent::TYPE_DELETE) return object + " deleted";
  switch (event.object_case()) {
    case v1::WatchEvent::kHost: {
      const v1::Host& host = event.host();
      std::string text = fmt::format("{}: {}", object, hostStateWord(host));
      if (host.has_status()) {
        text += fmt::format(", {} VMs, cpu {}", host.status().vms_size(),
                            percent(host.status().load().cpu_busy()));
      }
      return text;
    }
    case v1::WatchEvent::kVm: {
      const v1::Vm& vm = event.vm();
      std::string text = fmt::format("{}: {}", object, vmStateWord(vm.status().state()));
      if (!vm.status().host().empty()) text += " on " + vm.status().host();
      if (!vm.status().migration().empty()) text += " (migration " + vm.status().migration() + ")";
      if (!vm.status().message().empty()) text += ": " + vm.status().message();
      return text;
    }
    case v1::WatchEvent::kNetwork:
      return fmt::format("{}: vlan {}", object, event.network().vlan());
    case v1::WatchEvent::kPool:
      return fmt::format("{}: {}{}", object, poolTypeWord(event.pool().type()),
                         event.pool().shared() ? ", shared" : "");
    case v1::WatchEvent::kVolume: {
      const v1::VolumeRecord& volume = event.volume();
      std::string text = fmt::format("volume/{}/{}: {}", volume.pool(), volume.meta().name(),
                                     humanBytes(volume.size_bytes()));
      if (!volume.attached_to().empty()) text += ", attached to " + volume.attached_to();
      return text;
    }
    case v1::WatchEvent::kMigration: {
      const v1::MigrationRecord& migration = event.migration();
      return fmt::format("{}: vm {} from {}: {}", object, migration.vm(),
                         orDash(migration.source()), migrationProgress(migration));
    }
    case v1::WatchEvent::kDrain: {
      const v1::DrainRecord& drain = event.drain();
      const DrainCounts counts = countDrain(drain);
      std::string text =
          fmt::format("{}: {}, {}/{} done, {} failed", object, drainPhaseWord(drain.phase()),
                      counts.done, counts.total, counts.failed);
      if (!drain.message().empty()) text += ": " + drain.message();
      return text;
    }
    case v1::WatchEvent::kEvent: {
      const v1::Event& e = event.event();
      return fmt::format("event {} {}/{} {}: {}", severityWord(e.severity()), e.kind(), e.object(),
                         e.reason(), e.message());
    }
    default:
      return object;
  }
}

}  // namespace flotilla::cli
