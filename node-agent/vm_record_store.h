// VmRecordStore: the agent's VM records on disk, one protobuf file per VM
// (STATE_DIR/vms/NAME.pb), each replaced atomically, so that an agent killed at any moment
// finds every VM it had on restart.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "flotilla/v1/agent_state.pb.h"

namespace flotilla::agent {

class VmRecordStore {
 public:
  static constexpr uint32_t kFormatVersion = 1;

  // Creates the directory (and its parents) when missing.
  static absl::StatusOr<VmRecordStore> open(std::string directory);

  absl::Status save(const flotilla::v1::AgentVmRecord& record);
  // NotFound is not an error.
  absl::Status remove(std::string_view name);
  // Every record. A file that cannot be parsed, or of an unknown format version, is an error
  // naming it (the agent refuses to start rather than forget a VM).
  absl::StatusOr<std::vector<flotilla::v1::AgentVmRecord>> loadAll() const;

  const std::string& directory() const { return directory_; }

 private:
  explicit VmRecordStore(std::string directory) : directory_(std::move(directory)) {}
  std::string path(std::string_view name) const;

  std::string directory_;
};

}  // namespace flotilla::agent
