// `clusterctl describe` (see describe.h).
#include "cli/describe.h"

#include <algorithm>

#include "cli/exit_codes.h"
#include "common/status.h"
#include "fmt/format.h"
#include "fmt/ranges.h"

namespace flotilla::cli {
namespace {

constexpr uint32_t kDescribeEvents = 20;

// "Key:" padded so that values line up, after `indent` spaces.
void field(std::ostream& out, std::string_view key, std::string_view value, int indent = 0) {
  const std::string label =
      fmt::format("{}{}:", std::string(static_cast<size_t>(indent), ' '), key);
  // At least one space after the longest labels ("  Anti-affinity group:").
  out << fmt::format("{:<{}}{}", label, std::max<size_t>(22, label.size() + 1),
                     value.empty() ? std::string_view("-") : value)
      << "\n";
}

void heading(std::ostream& out, std::string_view title, int indent = 0) {
  out << std::string(static_cast<size_t>(indent), ' ') << title << ":\n";
}

void meta(std::ostream& out, const v1::ObjectMeta& meta) {
  field(out, "Name", meta.name());
  if (!meta.uid().empty()) field(out, "UID", meta.uid());
  field(out, "Labels", formatLabels(meta.labels()));
  field(out, "Created", formatTimestamp(meta.created_at()));
}

std::string since(int64_t unix_ms, absl::Time now) {
  if (unix_ms == 0) return "";
  return fmt::format(" (for {})", ageOfMillis(unix_ms, now));
}

std::string duration(int64_t from_ms, int64_t to_ms) {
  if (from_ms == 0 || to_ms == 0 || to_ms < from_ms) return "-";
  return fmt::format("{:.1f}s", static_cast<double>(to_ms - from_ms) / 1000.0);
}

}  // namespace

void describeHost(const v1::Host& host, const v1::DrainRecord* drain, std::ostream& out,
                  absl::Time now) {
  const v1::HostRecord& record = host.record();
  v1::ObjectMeta host_meta = record.meta();
  if (host_meta.name().empty()) host_meta.set_name(host.name());
  meta(out, host_meta);
  field(out, "State", hostStateWord(host) + since(record.state_since_unix_ms(), now));
  field(out, "Reporting", host.reporting() ? "yes" : "no (its agent's lease is gone)");
  field(out, "Cordoned",
        record.cordoned() ? fmt::format("yes: {}", orDash(record.cordon_reason())) : "no");
  if (drain != nullptr) {
    const DrainCounts counts = countDrain(*drain);
    field(out, "Drain",
          fmt::format("{}, {}/{} done, {} failed", drainPhaseWord(drain->phase()), counts.done,
                      counts.total, counts.failed));
  }
  if (!host.has_status()) {
    out << "Status:               none (the agent has not reported)\n";
    return;
  }
  const v1::HostStatus& status = host.status();
  field(out, "Agent",
        fmt::format("{} (version {})", orDash(status.agent_address()),
                    orDash(status.agent_version())));
  field(out, "Migration address", status.migration_address());
  if (!status.tunnel_ip().empty()) field(out, "Tunnel IP", status.tunnel_ip());
  field(out, "Last report", formatTimeMillis(status.updated_unix_ms()));
  const v1::HostInventory& inventory = status.inventory();
  heading(out, "Capacity");
  field(out, "CPUs", fmt::format("{} ({})", inventory.cpus(), orDash(inventory.cpu_model_name())),
        2);
  field(out, "Memory", humanBytes(inventory.memory_bytes()), 2);
  field(out, "CPU models", fmt::format("{}", fmt::join(inventory.cpu_models(), ", ")), 2);
  field(out, "Pools", fmt::format("{}", fmt::join(inventory.pools(), ", ")), 2);
  field(out, "Networks", fmt::format("{}", fmt::join(inventory.networks(), ", ")), 2);
  const v1::HostLoad& load = status.load();
  heading(out, "Load");
  field(out, "CPU busy", fmt::format("{:.0f}%", load.cpu_busy() * 100.0), 2);
  field(out, "Load average", fmt::format("{:.2f}", load.load_average_1m()), 2);
  field(out, "Memory available", humanBytes(load.memory_available_bytes()), 2);
  field(out, "VM memory", humanBytes(load.vm_memory_bytes()), 2);
  field(out, "VMs running", std::to_string(load.vms_running()), 2);
  heading(out, "VMs");
  if (status.vms().empty()) {
    out << "  none\n";
  } else {
    Table table({"  NAME", "STATE", "VCPUS", "MEMORY", "CPU", "RSS"});
    for (const v1::HostVm& vm : status.vms()) {
      table.addRow({"  " + vm.name(), vmStateWord(vm.state()), std::to_string(vm.vcpus()),
                    humanBytes(vm.memory_bytes()), fmt::format("{:.2f}", vm.usage().cpu_cores()),
                    humanBytes(vm.usage().rss_bytes())});
    }
    table.print(out);
  }
}

void describeVm(const v1::Vm& vm, std::ostream& out, absl::Time now) {
  const v1::VmRecord& record = vm.record();
  const v1::VmStatus& status = vm.status();
  v1::ObjectMeta vm_meta = record.meta();
  if (vm_meta.name().empty()) vm_meta.set_name(vm.name());
  meta(out, vm_meta);
  field(out, "Desired", record.want_running() ? "running" : "stopped");
  field(out, "State", vmStateWord(status.state()) + since(status.state_since_unix_ms(), now));
  field(out, "Host", status.host());
  field(out, "Message", status.message());
  field(out, "Migration", status.migration());
  field(out, "Generation", std::to_string(status.generation()));
  field(out, "HA restarts", std::to_string(status.restarts()));
  const v1::VmSpec& spec = record.spec();
  heading(out, "Spec");
  field(out, "vCPUs", std::to_string(spec.vcpus()), 2);
  field(out, "Memory", humanBytes(spec.memory_bytes()), 2);
  field(out, "CPU model", spec.cpu_model().empty() ? "host" : spec.cpu_model(), 2);
  field(out, "Kernel", spec.boot().kernel(), 2);
  field(out, "Initrd", spec.boot().initrd(), 2);
  field(out, "Cmdline", spec.boot().cmdline(), 2);
  field(out, "HA", spec.ha() ? "yes" : "no", 2);
  field(out, "Migration policy", policyWord(spec.migration_policy()), 2);
  heading(out, "Disks", 2);
  if (spec.disks().empty()) out << "    none\n";
  for (const v1::DiskSpec& disk : spec.disks()) {
    out << fmt::format("    {}/{}{}\n", disk.pool(), disk.volume(),
                       disk.read_only() ? " (read-only)" : "");
  }
  heading(out, "NICs", 2);
  if (spec.nics().empty()) out << "    none\n";
  for (const v1::NicSpec& nic : spec.nics()) {
    out << fmt::format("    {} mac={}{}\n", nic.network(),
                       nic.mac().empty() ? "(allocated)" : nic.mac(),
                       nic.offload() ? " offload" : "");
  }
  const v1::VmPlacement& placement = record.placement();
  heading(out, "Placement");
  field(out, "Pinned to", placement.host(), 2);
  field(out, "Host labels", formatLabels(placement.host_labels()), 2);
  field(out, "Affinity group", placement.affinity_group(), 2);
  field(out, "Anti-affinity group", placement.anti_affinity_group(), 2);
  if (!status.unschedulable_reasons().empty()) {
    heading(out, "Unschedulable");
    for (const std::string& reason : status.unschedulable_reasons()) {
      out << "  " << reason << "\n";
    }
  }
}

void describeMigration(const v1::MigrationRecord& migration, std::ostream& out, absl::Time now) {
  meta(out, migration.meta());
  field(out, "VM", migration.vm());
  field(out, "Source", migration.source());
  field(out, "Target", migration.target().empty() ? "(not chosen yet)" : migration.target());
  field(out, "Mode", modeWord(migration.mode()));
  field(out, "Phase",
        migrationPhaseWord(migration.phase()) +
            (migration.cancel_requested() ? " (cancel requested)" : ""));
  field(out, "Message", migration.message());
  std::string requester = "user";
  if (!migration.drain().empty()) requester = "drain of host " + migration.drain();
  if (!migration.rebalance().empty()) requester = "rebalancer";
  field(out, "Requested by", requester);
  field(out, "Created",
        fmt::format("{} ({} ago)", formatTimeMillis(migration.created_unix_ms()),
                    ageOfMillis(migration.created_unix_ms(), now)));
  field(out, "Started", formatTimeMillis(migration.started_unix_ms()));
  field(out, "Finished", formatTimeMillis(migration.finished_unix_ms()));
  field(out, "Duration", duration(migration.started_unix_ms(), migration.finished_unix_ms()));
  field(out, "Sent",
        fmt::format("{} in {} round(s)", humanBytes(migration.bytes_sent()), migration.rounds()));
  field(out, "Downtime",
        migration.downtime_ms() > 0 ? fmt::format("{:.1f}ms", migration.downtime_ms())
                                    : std::string("-"));
  field(out, "Downtime limit",
        migration.downtime_limit_ms() > 0 ? fmt::format("{}ms", migration.downtime_limit_ms())
                                          : std::string("controller default"));
}

void describeDrain(const v1::DrainRecord& drain, std::ostream& out, absl::Time now) {
  const DrainCounts counts = countDrain(drain);
  field(out, "Host", drain.meta().name());
  field(out, "Phase",
        drainPhaseWord(drain.phase()) + (drain.cancel_requested() ? " (cancel requested)" : ""));
  field(out, "Progress",
        fmt::format("{}/{} done, {} failed", counts.done, counts.total, counts.failed));
  field(out, "Allow cold", drain.allow_cold() ? "yes" : "no");
  field(out, "Message", drain.message());
  field(out, "Created",
        fmt::format("{} ({} ago)", formatTimeMillis(drain.created_unix_ms()),
                    ageOfMillis(drain.created_unix_ms(), now)));
  field(out, "Finished", formatTimeMillis(drain.finished_unix_ms()));
  heading(out, "VMs");
  if (drain.vms().empty()) {
    out << "  none\n";
    return;
  }
  Table table({"  VM", "STATE", "TARGET", "MIGRATION", "ATTEMPTS", "MESSAGE"});
  for (const v1::DrainVm& vm : drain.vms()) {
    table.addRow({"  " + vm.vm(), drainVmStateWord(vm.state()), orDash(vm.target()),
                  orDash(vm.migration()), std::to_string(vm.attempts()), orDash(vm.message())});
  }
  table.print(out);
}

void describeEvents(const v1::ListEventsResponse& events, std::ostream& out, absl::Time now) {
  heading(out, "Events");
  if (events.events().empty()) {
    out << "  none\n";
    return;
  }
  Table table({"  AGE", "SEVERITY", "REASON", "MESSAGE"});
  for (const v1::Event& event : events.events()) {
    table.addRow({"  " + ageOfMillis(event.unix_ms(), now), severityWord(event.severity()),
                  orDash(event.reason()), event.message()});
  }
  table.print(out);
}

absl::Status describeObject(ClusterClient& client, Kind kind, const std::string& name,
                            std::ostream& out, absl::Time now) {
  using Stub = ClusterClient::Stub;
  v1::NameRequest request;
  request.set_name(name);
  switch (kind) {
    case Kind::kHost: {
      ASSIGN_OR_RETURN(v1::Host host,
                       client.call(CallKind::kRead, "GetHost", &Stub::GetHost, request));
      auto drain = client.call(CallKind::kRead, "GetDrain", &Stub::GetDrain, request);
      if (!drain.ok() && drain.status().code() != absl::StatusCode::kNotFound) {
        return drain.status();
      }
      describeHost(host, drain.ok() ? &*drain : nullptr, out, now);
      break;
    }
    case Kind::kVm: {
      ASSIGN_OR_RETURN(v1::Vm vm, client.call(CallKind::kRead, "GetVm", &Stub::GetVm, request));
      describeVm(vm, out, now);
      break;
    }
    case Kind::kMigration: {
      ASSIGN_OR_RETURN(v1::MigrationRecord migration,
                       client.call(CallKind::kRead, "GetMigration", &Stub::GetMigration, request));
      describeMigration(migration, out, now);
      break;
    }
    case Kind::kDrain: {
      ASSIGN_OR_RETURN(v1::DrainRecord drain,
                       client.call(CallKind::kRead, "GetDrain", &Stub::GetDrain, request));
      describeDrain(drain, out, now);
      break;
    }
    default:
      return usageError(fmt::format(
          "describe {}: only host, vm, migration and drain can be described; use clusterctl "
          "get {} {}",
          kindInfo(kind).singular, kindInfo(kind).plural, name));
  }
  v1::ListEventsRequest events_request;
  events_request.set_object(name);
  events_request.set_limit(kDescribeEvents);
  ASSIGN_OR_RETURN(v1::ListEventsResponse events,
                   client.call(CallKind::kRead, "ListEvents", &Stub::ListEvents, events_request));
  describeEvents(events, out, now);
  return absl::OkStatus();
}

}  // namespace flotilla::cli
