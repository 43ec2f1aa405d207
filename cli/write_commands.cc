// The verbs of clusterctl that change the cluster (see commands.h). Each prints a one-line
// result, or the object the controller returned with -o json|yaml, or KIND/NAME with -o name.
#include <set>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/follow.h"
#include "cli/views.h"
#include "common/status.h"
#include "common/units.h"
#include "fmt/format.h"
#include "fmt/ranges.h"

namespace flotilla::cli {
namespace {

using Stub = ClusterClient::Stub;

// Prints the result of a change: `object` in the chosen format, else `line`.
void report(CommandContext& context, const google::protobuf::Message& object,
            const std::string& kind_and_name, const std::string& line) {
  switch (context.format) {
    case OutputFormat::kJson:
    case OutputFormat::kYaml:
      printMessage(context.out, object, context.format);
      break;
    case OutputFormat::kName:
      context.out << kind_and_name << "\n";
      break;
    default:
      context.out << line << "\n";
  }
}

bool structuredOutput(const CommandContext& context) {
  return context.format == OutputFormat::kJson || context.format == OutputFormat::kYaml;
}

std::string vmSituation(const v1::Vm& vm) {
  std::string text = vmStateWord(vm.status().state());
  if (!vm.status().host().empty()) text += " on " + vm.status().host();
  return text;
}

v1::NameRequest nameRequest(const std::string& name) {
  v1::NameRequest request;
  request.set_name(name);
  return request;
}

// POOL/NAME of a volume.
absl::StatusOr<std::pair<std::string, std::string>> splitVolume(const std::string& text,
                                                                std::string_view verb) {
  const size_t slash = text.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == text.size() ||
      text.find('/', slash + 1) != std::string::npos) {
    return usageError(
        fmt::format("{} volume {}: expected POOL/NAME (e.g. shared/web1)", verb, text));
  }
  return std::make_pair(text.substr(0, slash), text.substr(slash + 1));
}

}  // namespace

absl::Status runCreateVm(CommandContext& context, const VmFlags& flags) {
  ASSIGN_OR_RETURN(v1::CreateVmClusterRequest request, buildCreateVmRequest(flags));
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  ASSIGN_OR_RETURN(v1::Vm vm, client->call(CallKind::kWrite, "CreateVm", &Stub::CreateVm, request));
  report(
      context, vm, "vm/" + vm.name(),
      fmt::format("vm/{} created: {}{}", vm.name(), vmSituation(vm),
                  request.start() ? "" : " (not started: clusterctl vm start " + vm.name() + ")"));
  return absl::OkStatus();
}

absl::Status runCreateNetwork(CommandContext& context, const std::string& name, uint32_t vlan,
                              const std::string& description) {
  if (vlan < 1 || vlan > 4094) {
    return usageError(
        fmt::format("create network {}: --vlan {} is out of range: 1..4094", name, vlan));
  }
  v1::NetworkRecord network;
  network.mutable_meta()->set_name(name);
  network.set_vlan(vlan);
  network.set_description(description);
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  ASSIGN_OR_RETURN(v1::NetworkRecord created,
                   client->call(CallKind::kWrite, "CreateNetwork", &Stub::CreateNetwork, network));
  report(context, created, "network/" + name,
         fmt::format("network/{} created (vlan {})", created.meta().name(), created.vlan()));
  return absl::OkStatus();
}

absl::Status runCreatePool(CommandContext& context, const std::string& name,
                           const std::string& type, bool shared, const std::string& manager) {
  v1::PoolRecord pool;
  pool.mutable_meta()->set_name(name);
  if (type == "dir") {
    pool.set_type(v1::POOL_TYPE_DIR);
  } else if (type == "iscsi") {
    pool.set_type(v1::POOL_TYPE_ISCSI);
  } else if (type == "drbd") {
    pool.set_type(v1::POOL_TYPE_DRBD);
  } else {
    return usageError(
        fmt::format("create pool {}: --type {}: expected dir, iscsi or drbd", name, type));
  }
  if (shared && pool.type() == v1::POOL_TYPE_DIR) {
    return usageError(fmt::format(
        "create pool {}: a dir pool is local to each host and cannot be --shared", name));
  }
  pool.set_shared(shared);
  pool.set_manager_host(manager);
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  ASSIGN_OR_RETURN(v1::PoolRecord created,
                   client->call(CallKind::kWrite, "CreatePool", &Stub::CreatePool, pool));
  report(context, created, "pool/" + name,
         fmt::format("pool/{} created ({}{})", created.meta().name(), poolTypeWord(created.type()),
                     created.shared() ? ", shared" : ""));
  return absl::OkStatus();
}

absl::Status runCreateVolume(CommandContext& context, const std::string& pool_and_name,
                             const std::string& size) {
  ASSIGN_OR_RETURN(auto volume_name, splitVolume(pool_and_name, "create"));
  auto bytes = parseByteSize(size);
  if (!bytes.ok()) return usageError(fmt::format("--size: {}", bytes.status().message()));
  if (*bytes == 0) return usageError("--size 0: a volume needs a size, e.g. --size 1G");
  v1::CreateVolumeRequest request;
  request.set_pool(volume_name.first);
  request.set_name(volume_name.second);
  request.set_size_bytes(*bytes);
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  ASSIGN_OR_RETURN(v1::VolumeRecord created,
                   client->call(CallKind::kWrite, "CreateVolume", &Stub::CreateVolume, request));
  report(context, created, "volume/" + pool_and_name,
         fmt::format("volume/{} created ({})", pool_and_name, humanBytes(created.size_bytes())));
  return absl::OkStatus();
}

absl::Status runDelete(CommandContext& context, const std::string& kind, const std::string& name) {
  auto info = findKind(kind);
  if (!info || (info->kind != Kind::kVm && info->kind != Kind::kNetwork &&
                info->kind != Kind::kPool && info->kind != Kind::kVolume)) {
    return usageError(fmt::format("delete {}: use vm, network, pool or volume", kind));
  }
  std::pair<std::string, std::string> volume_name;
  if (info->kind == Kind::kVolume) {
    ASSIGN_OR_RETURN(volume_name, splitVolume(name, "delete"));
  }
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  v1::DeleteResponse response;
  if (info->kind == Kind::kVm) {
    ASSIGN_OR_RETURN(
        response, client->call(CallKind::kWrite, "DeleteVm", &Stub::DeleteVm, nameRequest(name)));
  } else if (info->kind == Kind::kNetwork) {
    ASSIGN_OR_RETURN(response, client->call(CallKind::kWrite, "DeleteNetwork", &Stub::DeleteNetwork,
                                            nameRequest(name)));
  } else if (info->kind == Kind::kPool) {
    ASSIGN_OR_RETURN(response, client->call(CallKind::kWrite, "DeletePool", &Stub::DeletePool,
                                            nameRequest(name)));
  } else {
    v1::VolumeNameRequest request;
    request.set_pool(volume_name.first);
    request.set_name(volume_name.second);
    ASSIGN_OR_RETURN(response,
                     client->call(CallKind::kWrite, "DeleteVolume", &Stub::DeleteVolume, request));
  }
  const std::string object = fmt::format("{}/{}", info->singular, name);
  report(context, response, object, object + " deleted");
  return absl::OkStatus();
}

absl::Status runVmAction(CommandContext& context, const std::string& action,
                         const std::string& name) {
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  v1::Vm vm;
  if (action == "start") {
    ASSIGN_OR_RETURN(vm,
                     client->call(CallKind::kWrite, "StartVm", &Stub::StartVm, nameRequest(name)));
  } else if (action == "stop") {
    ASSIGN_OR_RETURN(vm,
                     client->call(CallKind::kWrite, "StopVm", &Stub::StopVm, nameRequest(name)));
  } else if (action == "restart") {
    ASSIGN_OR_RETURN(
        vm, client->call(CallKind::kWrite, "RestartVm", &Stub::RestartVm, nameRequest(name)));
  } else {
    return usageError(fmt::format("vm {}: use start, stop, restart or migrate", action));
  }
  report(context, vm, "vm/" + name,
         fmt::format("vm/{}: {} requested ({})", name, action, vmSituation(vm)));
  return absl::OkStatus();
}

absl::Status runVmMigrate(CommandContext& context, const MigrateFlags& flags) {
  v1::MigrateVmRequest request;
  request.set_name(flags.name);
  request.set_target(flags.target);
  request.set_mode(flags.cold ? v1::MIGRATION_MODE_COLD : v1::MIGRATION_MODE_LIVE);
  request.set_downtime_limit_ms(flags.downtime_ms);
  if (flags.cold && flags.downtime_ms != 0) {
    return usageError(
        "vm migrate: --downtime-ms limits the pause of a live migration; a --cold "
        "migration pauses the VM for the whole copy");
  }
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  ASSIGN_OR_RETURN(v1::MigrationRecord migration,
                   client->call(CallKind::kWrite, "MigrateVm", &Stub::MigrateVm, request));
  const std::string name = migration.meta().name();
  const std::string line =
      fmt::format("migration/{} created: vm {} from {} to {} ({})", name, migration.vm(),
                  orDash(migration.source()),
                  migration.target().empty() ? "a host the scheduler picks" : migration.target(),
                  modeWord(migration.mode()));
  if (!flags.wait) {
    report(context, migration, "migration/" + name, line);
    return absl::OkStatus();
  }
  // With -o json|yaml the final record goes to standard output, progress to standard error.
  std::ostream& progress = structuredOutput(context) ? context.err : context.out;
  if (!structuredOutput(context)) context.out << line << "\n";
  uint64_t memory = 0;
  if (auto vm = client->call(CallKind::kRead, "GetVm", &Stub::GetVm, nameRequest(flags.name));
      vm.ok()) {
    memory = vm->record().spec().memory_bytes();
  }
  absl::Status result = followMigration(*client, name, memory, progress,
                                        context.out_is_tty && !structuredOutput(context));
  if (structuredOutput(context) && exitCodeFor(result) != kExitInterrupted) {
    if (auto final_state =
            client->call(CallKind::kRead, "GetMigration", &Stub::GetMigration, nameRequest(name));
        final_state.ok()) {
      printMessage(context.out, *final_state, context.format);
    }
  }
  return result;
}

absl::Status runHostCordon(CommandContext& context, const std::string& name,
                           const std::string& reason) {
  v1::CordonHostRequest request;
  request.set_name(name);
  request.set_reason(reason);
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  ASSIGN_OR_RETURN(v1::Host host,
                   client->call(CallKind::kWrite, "CordonHost", &Stub::CordonHost, request));
  report(context, host, "host/" + name, fmt::format("host/{} cordoned", name));
  return absl::OkStatus();
}

absl::Status runHostUncordon(CommandContext& context, const std::string& name) {
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  ASSIGN_OR_RETURN(v1::Host host, client->call(CallKind::kWrite, "UncordonHost",
                                               &Stub::UncordonHost, nameRequest(name)));
  report(context, host, "host/" + name, fmt::format("host/{} uncordoned", name));
  return absl::OkStatus();
}

absl::Status runHostLabel(CommandContext& context, const std::string& name,
                          const std::vector<std::string>& changes) {
  v1::SetLabelsRequest request;
  request.set_name(name);
  std::set<std::string> keys;
  for (const std::string& change : changes) {
    std::string key;
    if (change.size() > 1 && change.back() == '-' && change.find('=') == std::string::npos) {
      key = change.substr(0, change.size() - 1);
      request.add_remove(key);
    } else {
      const size_t equals = change.find('=');
      if (equals == std::string::npos || equals == 0) {
        return usageError(
            fmt::format("host label {} {}: expected KEY=VALUE to set a label or KEY- to remove it",
                        name, change));
      }
      key = change.substr(0, equals);
      (*request.mutable_set())[key] = change.substr(equals + 1);
    }
    if (!keys.insert(key).second) {
      return usageError(fmt::format("host label {}: label '{}' is given twice", name, key));
    }
  }
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  ASSIGN_OR_RETURN(v1::Host host,
                   client->call(CallKind::kWrite, "SetHostLabels", &Stub::SetHostLabels, request));
  report(context, host, "host/" + name,
         fmt::format("host/{} labeled: {}", name, formatLabels(host.record().meta().labels())));
  return absl::OkStatus();
}

absl::Status runHostDrain(CommandContext& context, const std::string& name, bool allow_cold,
                          bool wait) {
  v1::DrainHostRequest request;
  request.set_name(name);
  request.set_allow_cold(allow_cold);
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  ASSIGN_OR_RETURN(v1::DrainRecord drain,
                   client->call(CallKind::kWrite, "DrainHost", &Stub::DrainHost, request));
  const std::string line =
      fmt::format("drain/{} started: host cordoned, {} VM(s) to move", name, drain.vms_size());
  if (!wait) {
    report(context, drain, "drain/" + name, line);
    return absl::OkStatus();
  }
  std::ostream& progress = structuredOutput(context) ? context.err : context.out;
  if (!structuredOutput(context)) context.out << line << "\n";
  absl::Status result =
      followDrain(*client, name, progress, context.out_is_tty && !structuredOutput(context));
  if (structuredOutput(context) && exitCodeFor(result) != kExitInterrupted) {
    if (auto final_state =
            client->call(CallKind::kRead, "GetDrain", &Stub::GetDrain, nameRequest(name));
        final_state.ok()) {
      printMessage(context.out, *final_state, context.format);
    }
  }
  return result;
}

absl::Status runHostUndrain(CommandContext& context, const std::string& name) {
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  ASSIGN_OR_RETURN(v1::Host host, client->call(CallKind::kWrite, "UndrainHost", &Stub::UndrainHost,
                                               nameRequest(name)));
  report(context, host, "host/" + name,
         fmt::format("host/{}: drain cancelled, host uncordoned", name));
  return absl::OkStatus();
}

absl::Status runMigrationCancel(CommandContext& context, const std::string& name) {
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  ASSIGN_OR_RETURN(
      v1::MigrationRecord migration,
      client->call(CallKind::kWrite, "CancelMigration", &Stub::CancelMigration, nameRequest(name)));
  report(context, migration, "migration/" + name,
         fmt::format("migration/{}: cancel requested ({})", name,
                     migrationPhaseWord(migration.phase())));
  return absl::OkStatus();
}

absl::Status runRebalance(CommandContext& context, bool apply, double threshold,
                          uint32_t max_moves) {
  if (threshold < 0.0 || threshold > 1.0) {
    return usageError(fmt::format(
        "rebalance: --threshold {} is out of range: the imbalance score is 0..1", threshold));
  }
  v1::PlanRebalanceRequest request;
  request.set_threshold(threshold);
  request.set_max_moves(max_moves);
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  v1::RebalancePlan plan;
  if (apply) {
    ASSIGN_OR_RETURN(
        plan, client->call(CallKind::kWrite, "ApplyRebalance", &Stub::ApplyRebalance, request));
  } else {
    ASSIGN_OR_RETURN(plan,
                     client->call(CallKind::kRead, "PlanRebalance", &Stub::PlanRebalance, request));
  }
  if (structuredOutput(context)) {
    printMessage(context.out, plan, context.format);
    return absl::OkStatus();
  }
  if (context.format == OutputFormat::kName) {
    for (const v1::RebalanceMove& move : plan.moves()) {
      context.out << (apply ? "migration/" + move.migration() : "vm/" + move.vm()) << "\n";
    }
    return absl::OkStatus();
  }
  if (plan.moves().empty()) {
    context.out << "No moves";
    if (!plan.message().empty()) context.out << ": " << plan.message();
    context.out << "\n";
  } else {
    std::vector<std::string> headers = {"VM", "SOURCE", "TARGET", "GAIN", "COST"};
    if (apply) headers.push_back("MIGRATION");
    Table table(headers);
    for (const v1::RebalanceMove& move : plan.moves()) {
      std::vector<std::string> row = {move.vm(), move.source(), move.target(),
                                      fmt::format("{:.3f}", move.gain()),
                                      fmt::format("{:.3f}", move.cost())};
      if (apply) row.push_back(orDash(move.migration()));
      table.addRow(std::move(row));
    }
    table.print(context.out);
  }
  context.out << fmt::format("Imbalance: {:.3f} now, {:.3f} after {} move(s)\n",
                             plan.score_before(), plan.score_after(), plan.moves_size());
  if (apply && !plan.moves().empty()) {
    context.out << "Migrations started: follow them with clusterctl get migrations\n";
  }
  return absl::OkStatus();
}

}  // namespace flotilla::cli
