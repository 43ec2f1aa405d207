// clusterctl get, describe, watch and info (see commands.h).
#include "cli/commands.h"
#include "cli/describe.h"
#include "cli/exit_codes.h"
#include "cli/views.h"
#include "common/status.h"
#include "fmt/format.h"
#include "fmt/ranges.h"

namespace flotilla::cli {
namespace {

using Stub = ClusterClient::Stub;

// Prints a listing in the context's format: the single object (get KIND NAME) or the whole
// list as JSON/YAML, KIND/NAME lines, or the table.
void show(CommandContext& context, const google::protobuf::Message& list,
          const google::protobuf::Message* single, const Table& table,
          const std::vector<std::string>& names, std::string_view plural) {
  switch (context.format) {
    case OutputFormat::kJson:
    case OutputFormat::kYaml:
      printMessage(context.out, single != nullptr ? *single : list, context.format);
      break;
    case OutputFormat::kName:
      for (const std::string& name : names) context.out << name << "\n";
      break;
    default:
      if (table.rows() == 0) {
        // On stderr, like kubectl: standard output stays empty for scripts.
        context.err << fmt::format("No {} found.\n", plural);
      } else {
        table.print(context.out);
      }
  }
}

absl::Status notFound(std::string_view kind, std::string_view name) {
  return absl::NotFoundError(fmt::format("{} {} not found", kind, name));
}

absl::StatusOr<std::vector<v1::ObjectKind>> parseKinds(const std::vector<std::string>& words,
                                                       std::string_view verb) {
  std::vector<v1::ObjectKind> kinds;
  for (const std::string& word : words) {
    auto info = findKind(word);
    if (!info) {
      return usageError(fmt::format("{} {}: unknown kind; use one of: {}", verb, word, kindList()));
    }
    kinds.push_back(info->object_kind);
  }
  return kinds;
}

}  // namespace

absl::Status runGet(CommandContext& context, const GetFlags& flags) {
  auto info = findKind(flags.kind);
  if (!info) {
    return usageError(fmt::format("get {}: unknown kind; use one of: {}", flags.kind, kindList()));
  }
  if (flags.host && info->kind != Kind::kVm) {
    return usageError("get: --host lists the VMs of a host: clusterctl get vms --host HOST");
  }
  if (flags.limit != 0 && info->kind != Kind::kEvent) {
    return usageError("get: --limit bounds events only: clusterctl get events --limit N");
  }
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  const bool wide = context.format == OutputFormat::kWide;
  const absl::Time now = context.now;
  v1::NameRequest by_name;
  if (flags.name) by_name.set_name(*flags.name);
  std::vector<std::string> names;

  switch (info->kind) {
    case Kind::kHost: {
      v1::ListHostsResponse list;
      if (flags.name) {
        ASSIGN_OR_RETURN(*list.add_hosts(),
                         client->call(CallKind::kRead, "GetHost", &Stub::GetHost, by_name));
      } else {
        ASSIGN_OR_RETURN(list, client->call(CallKind::kRead, "ListHosts", &Stub::ListHosts,
                                            v1::ListHostsRequest()));
      }
      for (const v1::Host& host : list.hosts()) names.push_back("host/" + host.name());
      show(context, list, flags.name ? &list.hosts(0) : nullptr, hostsTable(list, wide, now), names,
           "hosts");
      return absl::OkStatus();
    }
    case Kind::kVm: {
      v1::ListVmsResponse list;
      if (flags.name) {
        ASSIGN_OR_RETURN(*list.add_vms(),
                         client->call(CallKind::kRead, "GetVm", &Stub::GetVm, by_name));
      } else {
        v1::ListVmsRequest request;
        if (flags.host) request.set_host(*flags.host);
        ASSIGN_OR_RETURN(list, client->call(CallKind::kRead, "ListVms", &Stub::ListVms, request));
      }
      for (const v1::Vm& vm : list.vms()) names.push_back("vm/" + vm.name());
      show(context, list, flags.name ? &list.vms(0) : nullptr, vmsTable(list, wide, now), names,
           "vms");
      return absl::OkStatus();
    }
    case Kind::kNetwork: {
      ASSIGN_OR_RETURN(
          v1::ListNetworksResponse list,
          client->call(CallKind::kRead, "ListNetworks", &Stub::ListNetworks, v1::ListRequest()));
      if (flags.name) {
        v1::ListNetworksResponse one;
        for (const auto& network : list.networks()) {
          if (network.meta().name() == *flags.name) *one.add_networks() = network;
        }
        if (one.networks().empty()) return notFound("network", *flags.name);
        list = std::move(one);
      }
      for (const auto& network : list.networks())
        names.push_back("network/" + network.meta().name());
      show(context, list, flags.name ? &list.networks(0) : nullptr, networksTable(list, wide, now),
           names, "networks");
      return absl::OkStatus();
    }
    case Kind::kPool: {
      ASSIGN_OR_RETURN(
          v1::ListPoolsResponse list,
          client->call(CallKind::kRead, "ListPools", &Stub::ListPools, v1::ListRequest()));
      if (flags.name) {
        v1::ListPoolsResponse one;
        for (const auto& pool : list.pools()) {
          if (pool.meta().name() == *flags.name) *one.add_pools() = pool;
        }
        if (one.pools().empty()) return notFound("pool", *flags.name);
        list = std::move(one);
      }
      for (const auto& pool : list.pools()) names.push_back("pool/" + pool.meta().name());
      show(context, list, flags.name ? &list.pools(0) : nullptr, poolsTable(list, wide, now), names,
           "pools");
      return absl::OkStatus();
    }
    case Kind::kVolume: {
      // NAME is POOL (the volumes of one pool) or POOL/VOLUME (one volume).
      v1::ListVolumesClusterRequest request;
      std::string volume_name;
      if (flags.name) {
        const size_t slash = flags.name->find('/');
        request.set_pool(flags.name->substr(0, slash));
        if (slash != std::string::npos) volume_name = flags.name->substr(slash + 1);
      }
      ASSIGN_OR_RETURN(v1::ListVolumesClusterResponse list,
                       client->call(CallKind::kRead, "ListVolumes", &Stub::ListVolumes, request));
      if (!volume_name.empty()) {
        v1::ListVolumesClusterResponse one;
        for (const auto& volume : list.volumes()) {
          if (volume.meta().name() == volume_name) *one.add_volumes() = volume;
        }
        if (one.volumes().empty()) return notFound("volume", *flags.name);
        list = std::move(one);
      }
      for (const auto& volume : list.volumes()) {
        names.push_back(fmt::format("volume/{}/{}", volume.pool(), volume.meta().name()));
      }
      show(context, list, volume_name.empty() ? nullptr : &list.volumes(0),
           volumesTable(list, wide, now), names, "volumes");
      return absl::OkStatus();
    }
    case Kind::kMigration: {
      v1::ListMigrationsResponse list;
      if (flags.name) {
        ASSIGN_OR_RETURN(*list.add_migrations(), client->call(CallKind::kRead, "GetMigration",
                                                              &Stub::GetMigration, by_name));
      } else {
        ASSIGN_OR_RETURN(list, client->call(CallKind::kRead, "ListMigrations",
                                            &Stub::ListMigrations, v1::ListRequest()));
      }
      for (const auto& migration : list.migrations()) {
        names.push_back("migration/" + migration.meta().name());
      }
      show(context, list, flags.name ? &list.migrations(0) : nullptr,
           migrationsTable(list, wide, now), names, "migrations");
      return absl::OkStatus();
    }
    case Kind::kDrain: {
      v1::ListDrainsResponse list;
      if (flags.name) {
        ASSIGN_OR_RETURN(*list.add_drains(),
                         client->call(CallKind::kRead, "GetDrain", &Stub::GetDrain, by_name));
      } else {
        ASSIGN_OR_RETURN(list, client->call(CallKind::kRead, "ListDrains", &Stub::ListDrains,
                                            v1::ListRequest()));
      }
      for (const auto& drain : list.drains()) names.push_back("drain/" + drain.meta().name());
      show(context, list, flags.name ? &list.drains(0) : nullptr, drainsTable(list, wide, now),
           names, "drains");
      return absl::OkStatus();
    }
    case Kind::kEvent: {
      // NAME: the events about that object.
      v1::ListEventsRequest request;
      if (flags.name) request.set_object(*flags.name);
      request.set_limit(flags.limit);
      ASSIGN_OR_RETURN(v1::ListEventsResponse list,
                       client->call(CallKind::kRead, "ListEvents", &Stub::ListEvents, request));
      for (const auto& event : list.events()) {
        names.push_back(fmt::format("{}/{}", event.kind(), event.object()));
      }
      show(context, list, nullptr, eventsTable(list, wide, now), names, "events");
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

absl::Status runDescribe(CommandContext& context, const std::string& kind,
                         const std::string& name) {
  auto info = findKind(kind);
  if (!info || (info->kind != Kind::kHost && info->kind != Kind::kVm &&
                info->kind != Kind::kMigration && info->kind != Kind::kDrain)) {
    return usageError(fmt::format(
        "describe {}: use host, vm, migration or drain (other kinds: clusterctl get)", kind));
  }
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  return describeObject(*client, info->kind, name, context.out, context.now);
}

absl::Status runWatch(CommandContext& context, const std::vector<std::string>& kinds,
                      uint32_t limit) {
  ASSIGN_OR_RETURN(std::vector<v1::ObjectKind> object_kinds, parseKinds(kinds, "watch"));
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  v1::WatchRequest request;
  for (v1::ObjectKind kind : object_kinds) request.add_kinds(kind);
  uint32_t seen = 0;
  return client->watch(
      request,
      [&](const v1::WatchEvent& event) {
        switch (context.format) {
          case OutputFormat::kJson:
            context.out << toJson(event, false) << "\n";
            break;
          case OutputFormat::kYaml:
            context.out << "---\n" << toYaml(event);
            break;
          case OutputFormat::kName: {
            const KindInfo* info = kindInfo(event.kind());
            context.out << (info != nullptr ? info->singular : "object") << "/" << event.name()
                        << "\n";
            break;
          }
          default:
            context.out << summarizeEvent(event) << "\n";
        }
        context.out << std::flush;
        ++seen;
        return limit == 0 || seen < limit;
      },
      [&](std::string_view message) {
        context.err << "clusterctl: watch: " << message << "\n" << std::flush;
      });
}

absl::Status runInfo(CommandContext& context) {
  ASSIGN_OR_RETURN(ClusterClient * client, context.client());
  ASSIGN_OR_RETURN(v1::ClusterInfo info,
                   client->call(CallKind::kRead, "GetClusterInfo", &Stub::GetClusterInfo,
                                v1::GetClusterInfoRequest()));
  if (context.format == OutputFormat::kJson || context.format == OutputFormat::kYaml) {
    printMessage(context.out, info, context.format);
    return absl::OkStatus();
  }
  const std::string answered = client->currentEndpoint();
  context.out << fmt::format("{:<16}{}\n", "Endpoint:", answered);
  context.out << fmt::format("{:<16}{}\n", "Replica:", orDash(info.replica()));
  context.out << fmt::format(
      "{:<16}{}\n",
      "Leader:", info.leader().empty() ? "none (an election is under way)" : info.leader());
  context.out << fmt::format("{:<16}{}\n", "Version:", orDash(info.version()));
  context.out << fmt::format(
      "{:<16}{}\n", "etcd:", orDash(fmt::format("{}", fmt::join(info.etcd_endpoints(), ", "))));
  context.out << fmt::format("{:<16}{}\n", "Revision:", info.revision());
  // Every configured endpoint, to see at a glance which replicas answer.
  Table table({"ENDPOINT", "REPLICA", "STATUS"});
  for (size_t i = 0; i < client->endpoints().size(); ++i) {
    v1::ClusterInfo replica;
    absl::Status status = client->invokeAt(i, [&](Stub& stub, grpc::ClientContext& call) {
      return stub.GetClusterInfo(&call, v1::GetClusterInfoRequest(), &replica);
    });
    std::string state = "ok";
    if (!status.ok()) state = std::string(status.message());
    if (status.ok() && !info.leader().empty() && replica.replica() == info.leader()) {
      state = "ok (leader)";
    }
    table.addRow({client->endpoints()[i], status.ok() ? orDash(replica.replica()) : "-", state});
  }
  context.out << "Replicas:\n";
  table.print(context.out);
  return absl::OkStatus();
}

}  // namespace flotilla::cli
