// clusterctl's command line (see clusterctl.h): the CLI11 command tree, the configuration and
// global flags, and the mapping of errors to messages and exit statuses.
#include "cli/clusterctl.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>

#include "CLI/CLI.hpp"
#include "cli/client.h"
#include "cli/commands.h"
#include "cli/completion.h"
#include "cli/config.h"
#include "cli/exit_codes.h"
#include "cli/views.h"
#include "common/status.h"
#include "common/units.h"
#include "fmt/format.h"

namespace flotilla::cli {
namespace {

constexpr char kVersion[] = "0.1.0";
constexpr absl::Duration kMaxConnectTimeout = absl::Seconds(2);

struct GlobalFlags {
  std::optional<std::string> config, output, timeout;
  std::vector<std::string> endpoints;
  bool plaintext = false;
};

std::optional<std::string> processGetenv(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

bool fileExists(const std::string& path) {
  std::error_code error;
  return std::filesystem::exists(path, error);
}

// The client from the configuration file (if any) and the global flags, which override it.
absl::StatusOr<std::unique_ptr<ClusterClient>> makeClient(const GlobalFlags& flags,
                                                          const ClusterctlEnvironment& environment,
                                                          const Interrupt& interrupt) {
  ClusterctlConfig config;
  std::optional<std::string> path = flags.config;
  if (!path) path = defaultConfigPath(environment.getenv, fileExists);
  if (path) {
    auto loaded = loadClusterctlConfig(*path);
    if (!loaded.ok()) {
      return withExitCode(
          annotate(loaded.status(), "clusterctl configuration (--config, $CLUSTERCTL_CONFIG)"),
          kExitUsage);
    }
    config = *std::move(loaded);
  }
  if (!flags.endpoints.empty()) config.endpoints = flags.endpoints;
  if (flags.plaintext) config.plaintext = true;
  if (flags.timeout) {
    auto timeout = parseDuration(*flags.timeout);
    if (!timeout.ok()) return usageError(fmt::format("--timeout: {}", timeout.status().message()));
    if (*timeout <= absl::ZeroDuration()) return usageError("--timeout must be longer than 0s");
    config.timeout = *timeout;
  }
  if (config.endpoints.empty()) {
    return usageError(fmt::format(
        "no controller endpoints: give --endpoint HOST:PORT, or write a configuration file "
        "with endpoints: [HOST:PORT, ...] at $CLUSTERCTL_CONFIG, "
        "~/.config/flotilla/clusterctl.yaml or /etc/flotilla/clusterctl.yaml{}",
        path ? fmt::format(" ({} lists none)", *path) : std::string(" (none exists)")));
  }
  ClientOptions options;
  options.endpoints = config.endpoints;
  options.channel.tls = !config.plaintext;
  options.channel.tls_files = config.tls;
  options.timeout = config.timeout;
  options.connect_timeout = std::min(config.timeout, kMaxConnectTimeout);
  options.channel.connect_timeout = options.connect_timeout;
  auto client = ClusterClient::create(std::move(options), interrupt);
  if (!client.ok()) return withExitCode(client.status(), kExitUsage);
  return client;
}

// What may follow the command paths CLI11 does not know (kinds, object names).
std::map<std::string, CompletionHint> completionHints() {
  std::map<std::string, CompletionHint> hints;
  std::string plurals;
  for (const KindInfo& info : allKinds()) {
    plurals += (plurals.empty() ? "" : " ") + std::string(info.plural);
    if (info.kind == Kind::kEvent) continue;
    for (std::string_view word : {info.singular, info.plural}) {
      hints["get " + std::string(word)].names_of = std::string(info.plural);
    }
  }
  hints["get"].words = plurals;
  hints["watch"].words = plurals;
  hints["describe"].words = "host vm migration drain";
  hints["delete"].words = "vm network pool volume";
  for (std::string_view kind : {"host", "vm", "migration", "drain"}) {
    hints["describe " + std::string(kind)].names_of = std::string(kind) + "s";
  }
  for (std::string_view kind : {"vm", "network", "pool", "volume"}) {
    hints["delete " + std::string(kind)].names_of = std::string(kind) + "s";
  }
  for (std::string_view verb : {"start", "stop", "restart", "migrate"}) {
    hints["vm " + std::string(verb)].names_of = "vms";
  }
  for (std::string_view verb : {"cordon", "uncordon", "label", "drain", "undrain"}) {
    hints["host " + std::string(verb)].names_of = "hosts";
  }
  hints["migration cancel"].names_of = "migrations";
  hints["completion"].words = "bash zsh";
  return hints;
}

}  // namespace

int runClusterctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                  const ClusterctlEnvironment& given) {
  ClusterctlEnvironment environment = given;
  if (!environment.getenv) environment.getenv = processGetenv;
  if (!environment.now) environment.now = [] { return absl::Now(); };
  Interrupt local_interrupt;
  Interrupt& interrupt =
      environment.interrupt != nullptr ? *environment.interrupt : local_interrupt;

  CLI::App app{
      "clusterctl: the command line of a Flotilla cluster (docs/clusterctl.md).\n"
      "Exit status: 0 ok, 1 failed, 2 usage, 3 not found, 4 no controller reachable, "
      "5 conflict.",
      "clusterctl"};
  // Global flags may come after the verb too (clusterctl get vms -o json).
  app.fallthrough();
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("clusterctl ") + kVersion);
  GlobalFlags globals;
  app.add_option("--config", globals.config,
                 "configuration file (default: $CLUSTERCTL_CONFIG, "
                 "~/.config/flotilla/clusterctl.yaml, /etc/flotilla/clusterctl.yaml)");
  app.add_option("--endpoint", globals.endpoints,
                 "controller HOST:PORT; repeat for several (replaces the config's endpoints)")
      ->allow_extra_args(false);
  app.add_flag("--plaintext", globals.plaintext, "no TLS (a local or test cluster)");
  app.add_option("-o,--output", globals.output, "output format: table, wide, json, yaml or name");
  app.add_option("--timeout", globals.timeout, "deadline of each call, e.g. 10s (default: config)");

  std::function<absl::Status(CommandContext&)> action;
  auto on = [&action](CLI::App* command, std::function<absl::Status(CommandContext&)> run) {
    command->callback([&action, run] { action = run; });
  };

  // get / describe / watch / info
  GetFlags get_flags;
  CLI::App* get = app.add_subcommand("get", "list objects, or show one: get KIND [NAME]");
  get->add_option("kind", get_flags.kind,
                  "hosts, vms, networks, pools, volumes, migrations, "
                  "drains or events")
      ->required();
  get->add_option("name", get_flags.name,
                  "one object (volumes: POOL or POOL/NAME; events: the object they are about)");
  get->add_option("--host", get_flags.host, "vms: only those placed on this host");
  get->add_option("--limit", get_flags.limit, "events: the newest N (default 100)");
  on(get, [&](CommandContext& c) { return runGet(c, get_flags); });

  std::string describe_kind, describe_name;
  CLI::App* describe =
      app.add_subcommand("describe", "an object in detail, with its events: describe KIND NAME");
  describe->add_option("kind", describe_kind, "host, vm, migration or drain")->required();
  describe->add_option("name", describe_name, "the object's name")->required();
  on(describe, [&](CommandContext& c) { return runDescribe(c, describe_kind, describe_name); });

  std::vector<std::string> watch_kinds;
  uint32_t watch_limit = 0;
  CLI::App* watch = app.add_subcommand("watch", "a line per change until Ctrl-C: watch [KIND...]");
  watch->add_option("kinds", watch_kinds, "kinds to watch (default: all)");
  watch->add_option("--limit", watch_limit, "stop after N changes");
  on(watch, [&](CommandContext& c) { return runWatch(c, watch_kinds, watch_limit); });

  CLI::App* info = app.add_subcommand("info", "the controller replicas, the leader and etcd");
  on(info, [&](CommandContext& c) { return runInfo(c); });

  // create
  CLI::App* create = app.add_subcommand("create", "create a vm, network, pool or volume");
  create->require_subcommand(1);
  VmFlags vm_flags;
  CLI::App* create_vm =
      create->add_subcommand("vm", "create a VM: create vm NAME --kernel PATH ...");
  create_vm->add_option("name", vm_flags.name, "the VM's name (or name: in -f FILE)");
  create_vm->add_option("-f,--file", vm_flags.file, "a YAML file describing the VM");
  create_vm->add_option("--memory", vm_flags.memory,
                        "guest memory, e.g. 256M or 2G (default 256M)");
  create_vm->add_option("--vcpus", vm_flags.vcpus, "number of vCPUs (default 1)");
  create_vm->add_option("--kernel", vm_flags.kernel, "kernel image, a path on the hosts");
  create_vm->add_option("--initrd", vm_flags.initrd, "initial ramdisk, a path on the hosts");
  create_vm->add_option("--cmdline", vm_flags.cmdline, "kernel command line");
  create_vm->add_option("--cpu-model", vm_flags.cpu_model, "CPU model (default host)");
  create_vm->add_option("--disk", vm_flags.disks, "POOL/VOLUME[,ro]; repeat for more disks")
      ->allow_extra_args(false);
  create_vm->add_option("--nic", vm_flags.nics, "NETWORK[,mac=MAC][,offload]; repeat for more NICs")
      ->allow_extra_args(false);
  create_vm->add_flag("--ha", vm_flags.ha, "restart it elsewhere when its host is lost");
  create_vm->add_option("--policy", vm_flags.policy, "migration policy: live, live-or-cold, cold");
  create_vm->add_option("--label", vm_flags.labels, "KEY=VALUE label of the VM; repeatable")
      ->allow_extra_args(false);
  create_vm
      ->add_option("--host-label", vm_flags.host_labels,
                   "KEY=VALUE the host must carry; repeatable")
      ->allow_extra_args(false);
  create_vm->add_option("--affinity", vm_flags.affinity, "affinity group (share a host)");
  create_vm->add_option("--anti-affinity", vm_flags.anti_affinity,
                        "anti-affinity group (never share a host)");
  create_vm->add_option("--pin", vm_flags.pin, "run it on this host only");
  create_vm->add_flag("--no-start", vm_flags.no_start, "create it stopped");
  on(create_vm, [&](CommandContext& c) { return runCreateVm(c, vm_flags); });

  std::string network_name, network_description;
  uint32_t network_vlan = 0;
  CLI::App* create_network = create->add_subcommand("network", "create network NAME --vlan N");
  create_network->add_option("name", network_name, "the network's name")->required();
  create_network->add_option("--vlan", network_vlan, "VLAN id, 1..4094")->required();
  create_network->add_option("--description", network_description, "free text");
  on(create_network, [&](CommandContext& c) {
    return runCreateNetwork(c, network_name, network_vlan, network_description);
  });

  std::string pool_name, pool_type, pool_manager;
  bool pool_shared = false;
  CLI::App* create_pool =
      create->add_subcommand("pool", "create pool NAME --type dir|iscsi|drbd [--shared]");
  create_pool->add_option("name", pool_name, "the pool's name")->required();
  create_pool->add_option("--type", pool_type, "dir, iscsi or drbd")->required();
  create_pool->add_flag("--shared", pool_shared, "the same volumes are reachable from every host");
  create_pool->add_option("--manager", pool_manager, "the host whose agent creates its volumes");
  on(create_pool, [&](CommandContext& c) {
    return runCreatePool(c, pool_name, pool_type, pool_shared, pool_manager);
  });

  std::string volume_name, volume_size;
  CLI::App* create_volume = create->add_subcommand("volume", "create volume POOL/NAME --size 1G");
  create_volume->add_option("name", volume_name, "POOL/NAME")->required();
  create_volume->add_option("--size", volume_size, "size, e.g. 1G")->required();
  on(create_volume,
     [&](CommandContext& c) { return runCreateVolume(c, volume_name, volume_size); });

  // delete
  std::string delete_kind, delete_name;
  CLI::App* remove =
      app.add_subcommand("delete", "delete vm|network|pool NAME, delete volume POOL/NAME");
  remove->add_option("kind", delete_kind, "vm, network, pool or volume")->required();
  remove->add_option("name", delete_name, "the object's name (volumes: POOL/NAME)")->required();
  on(remove, [&](CommandContext& c) { return runDelete(c, delete_kind, delete_name); });

  // vm
  CLI::App* vm = app.add_subcommand("vm", "start, stop, restart or migrate a VM");
  vm->require_subcommand(1);
  std::string vm_name;
  for (const char* verb : {"start", "stop", "restart"}) {
    CLI::App* sub = vm->add_subcommand(verb, fmt::format("{} a VM: vm {} NAME", verb, verb));
    sub->add_option("name", vm_name, "the VM")->required();
    const std::string action_name = verb;
    on(sub, [&, action_name](CommandContext& c) { return runVmAction(c, action_name, vm_name); });
  }
  MigrateFlags migrate_flags;
  CLI::App* migrate = vm->add_subcommand("migrate", "move a VM to another host: vm migrate NAME");
  migrate->add_option("name", migrate_flags.name, "the VM")->required();
  migrate->add_option("--to", migrate_flags.target,
                      "the target host (default: the scheduler picks)");
  migrate->add_flag("--cold", migrate_flags.cold, "pause the VM for the whole copy");
  migrate->add_option("--downtime-ms", migrate_flags.downtime_ms,
                      "longest pause of a live migration (default: the controller's)");
  migrate->add_flag("--wait", migrate_flags.wait, "follow it until it ends; exit 1 if it fails");
  on(migrate, [&](CommandContext& c) { return runVmMigrate(c, migrate_flags); });

  // host
  CLI::App* host = app.add_subcommand("host", "cordon, uncordon, label, drain or undrain a host");
  host->require_subcommand(1);
  std::string host_name, cordon_reason;
  CLI::App* cordon = host->add_subcommand("cordon", "no new VMs on it: host cordon NAME");
  cordon->add_option("name", host_name, "the host")->required();
  cordon->add_option("--reason", cordon_reason, "why (shown by get hosts -o wide)");
  on(cordon, [&](CommandContext& c) { return runHostCordon(c, host_name, cordon_reason); });
  CLI::App* uncordon = host->add_subcommand("uncordon", "accept new VMs again");
  uncordon->add_option("name", host_name, "the host")->required();
  on(uncordon, [&](CommandContext& c) { return runHostUncordon(c, host_name); });
  std::vector<std::string> label_changes;
  CLI::App* label = host->add_subcommand("label", "host label NAME KEY=VALUE... KEY-...");
  label->add_option("name", host_name, "the host")->required();
  label->add_option("changes", label_changes, "KEY=VALUE sets a label, KEY- removes it")
      ->required();
  on(label, [&](CommandContext& c) { return runHostLabel(c, host_name, label_changes); });
  bool drain_allow_cold = false, drain_wait = false;
  CLI::App* drain = host->add_subcommand("drain", "move every VM off a host: host drain NAME");
  drain->add_option("name", host_name, "the host")->required();
  drain->add_flag("--allow-cold", drain_allow_cold,
                  "VMs whose policy allows it may move cold when live fails");
  drain->add_flag("--wait", drain_wait, "follow it until it ends; exit 1 if it fails");
  on(drain,
     [&](CommandContext& c) { return runHostDrain(c, host_name, drain_allow_cold, drain_wait); });
  CLI::App* undrain = host->add_subcommand("undrain", "cancel a drain and uncordon the host");
  undrain->add_option("name", host_name, "the host")->required();
  on(undrain, [&](CommandContext& c) { return runHostUndrain(c, host_name); });

  // migration
  CLI::App* migration = app.add_subcommand("migration", "cancel a migration");
  migration->require_subcommand(1);
  std::string migration_name;
  CLI::App* cancel = migration->add_subcommand("cancel", "migration cancel NAME");
  cancel->add_option("name", migration_name, "the migration")->required();
  on(cancel, [&](CommandContext& c) { return runMigrationCancel(c, migration_name); });

  // rebalance
  CLI::App* rebalance = app.add_subcommand("rebalance", "plan or apply moves that even out load");
  rebalance->require_subcommand(1);
  double rebalance_threshold = 0.0;
  uint32_t rebalance_max_moves = 0;
  for (const char* verb : {"plan", "apply"}) {
    const bool apply = std::string_view(verb) == "apply";
    CLI::App* sub = rebalance->add_subcommand(
        verb, apply ? "plan and start the moves" : "the moves the rebalancer would make now");
    sub->add_option("--threshold", rebalance_threshold,
                    "imbalance (0..1) above which to move (default: the controller's)");
    sub->add_option("--max-moves", rebalance_max_moves,
                    "at most N moves (default: the controller's)");
    on(sub, [&, apply](CommandContext& c) {
      return runRebalance(c, apply, rebalance_threshold, rebalance_max_moves);
    });
  }

  // completion
  std::string shell;
  CLI::App* completion = app.add_subcommand("completion", "print a shell completion script");
  completion->add_option("shell", shell, "bash or zsh")->required();
  on(completion, [&](CommandContext& c) -> absl::Status {
    ASSIGN_OR_RETURN(std::string script, completionScript(app, shell, completionHints()));
    c.out << script;
    return absl::OkStatus();
  });

  if (args.empty()) {
    err << app.help();
    return kExitUsage;
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 wants them reversed
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& help) {
    return app.exit(help, out, err);
  } catch (const CLI::CallForAllHelp& help) {
    return app.exit(help, out, err);
  } catch (const CLI::CallForVersion& version) {
    return app.exit(version, out, err);
  } catch (const CLI::ParseError& error) {
    err << "clusterctl: " << error.what() << "; see clusterctl --help\n";
    return kExitUsage;
  }

  auto format = parseOutputFormat(globals.output.value_or("table"));
  if (!format.ok()) {
    err << "clusterctl: " << format.status().message() << "\n";
    return kExitUsage;
  }
  std::unique_ptr<ClusterClient> client;
  CommandContext context{.out = out,
                         .err = err,
                         .format = *format,
                         .out_is_tty = environment.out_is_tty,
                         .now = environment.now(),
                         .interrupt = interrupt,
                         .client = [&]() -> absl::StatusOr<ClusterClient*> {
                           if (!client) {
                             ASSIGN_OR_RETURN(client, makeClient(globals, environment, interrupt));
                           }
                           return client.get();
                         }};
  if (!action) {
    err << app.help();
    return kExitUsage;
  }
  absl::Status status = action(context);
  out << std::flush;
  if (!status.ok()) {
    err << "clusterctl: " << status.message() << "\n";
    return exitCodeFor(status);
  }
  return kExitOk;
}

int runClusterctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  ClusterctlEnvironment environment;
  environment.out_is_tty = &out == &std::cout && ::isatty(STDOUT_FILENO) == 1;
  return runClusterctl(args, out, err, environment);
}

}  // namespace flotilla::cli
