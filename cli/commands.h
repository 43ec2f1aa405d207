// The verbs of clusterctl, each a function of its arguments on a CommandContext (the
// streams, the output format and the cluster client). clusterctl.cc parses the command line
// and calls them; read_commands.cc has get, describe, watch and info; write_commands.cc the
// verbs that change the cluster.
#pragma once

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cli/client.h"
#include "cli/interrupt.h"
#include "cli/output.h"
#include "cli/vm_request.h"

namespace flotilla::cli {

struct CommandContext {
  std::ostream& out;
  std::ostream& err;
  OutputFormat format = OutputFormat::kTable;
  bool out_is_tty = false;
  absl::Time now;
  const Interrupt& interrupt;
  // The client, made on first use from the configuration and the global flags.
  std::function<absl::StatusOr<ClusterClient*>()> client;
};

// get KIND [NAME]; `host` filters vms by host, `limit` bounds events.
struct GetFlags {
  std::string kind;
  std::optional<std::string> name;
  std::optional<std::string> host;
  uint32_t limit = 0;
};
absl::Status runGet(CommandContext& context, const GetFlags& flags);
absl::Status runDescribe(CommandContext& context, const std::string& kind, const std::string& name);
// watch [KIND...]: a line per change until Ctrl-C (or `limit` changes, when not 0).
absl::Status runWatch(CommandContext& context, const std::vector<std::string>& kinds,
                      uint32_t limit);
absl::Status runInfo(CommandContext& context);

absl::Status runCreateVm(CommandContext& context, const VmFlags& flags);
absl::Status runCreateNetwork(CommandContext& context, const std::string& name, uint32_t vlan,
                              const std::string& description);
absl::Status runCreatePool(CommandContext& context, const std::string& name,
                           const std::string& type, bool shared, const std::string& manager);
absl::Status runCreateVolume(CommandContext& context, const std::string& pool_and_name,
                             const std::string& size);
// delete vm|network|pool NAME, delete volume POOL/NAME.
absl::Status runDelete(CommandContext& context, const std::string& kind, const std::string& name);

// vm start|stop|restart NAME
absl::Status runVmAction(CommandContext& context, const std::string& action,
                         const std::string& name);
struct MigrateFlags {
  std::string name;
  std::string target;
  bool cold = false;
  uint32_t downtime_ms = 0;
  bool wait = false;
};
absl::Status runVmMigrate(CommandContext& context, const MigrateFlags& flags);

absl::Status runHostCordon(CommandContext& context, const std::string& name,
                           const std::string& reason);
absl::Status runHostUncordon(CommandContext& context, const std::string& name);
// host label NAME k=v k2- ...
absl::Status runHostLabel(CommandContext& context, const std::string& name,
                          const std::vector<std::string>& changes);
absl::Status runHostDrain(CommandContext& context, const std::string& name, bool allow_cold,
                          bool wait);
absl::Status runHostUndrain(CommandContext& context, const std::string& name);

absl::Status runMigrationCancel(CommandContext& context, const std::string& name);

// rebalance plan|apply
absl::Status runRebalance(CommandContext& context, bool apply, double threshold,
                          uint32_t max_moves);

}  // namespace flotilla::cli
