// The agent's VM records on disk (see vm_record_store.h).
#include "node-agent/vm_record_store.h"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include "common/files.h"
#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::agent {

absl::StatusOr<VmRecordStore> VmRecordStore::open(std::string directory) {
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  if (error) {
    return errnoStatus(error.value(),
                       fmt::format("cannot create the VM record directory {}", directory));
  }
  return VmRecordStore(std::move(directory));
}

std::string VmRecordStore::path(std::string_view name) const {
  return fmt::format("{}/{}.pb", directory_, name);
}

absl::Status VmRecordStore::save(const flotilla::v1::AgentVmRecord& record) {
  flotilla::v1::AgentVmRecord copy = record;
  copy.set_format_version(kFormatVersion);
  std::string bytes;
  if (!copy.SerializeToString(&bytes)) {
    return absl::InternalError(
        fmt::format("cannot serialize the record of VM {}", record.vm().name()));
  }
  return writeFileAtomically(path(record.vm().name()), bytes);
}

absl::Status VmRecordStore::remove(std::string_view name) {
  const std::string file = path(name);
  if (::unlink(file.c_str()) != 0 && errno != ENOENT) {
    return errnoStatus(errno, fmt::format("cannot remove {}", file));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<flotilla::v1::AgentVmRecord>> VmRecordStore::loadAll() const {
  std::vector<flotilla::v1::AgentVmRecord> records;
  std::error_code error;
  for (const auto& item : std::filesystem::directory_iterator(directory_, error)) {
    if (item.path().extension() != ".pb") continue;  // PATH.tmp of an interrupted save
    const std::string file = item.path().string();
    ASSIGN_OR_RETURN(std::string bytes, readFileToString(file));
    flotilla::v1::AgentVmRecord record;
    if (!record.ParseFromString(bytes)) {
      return absl::DataLossError(fmt::format(
          "the VM record {} cannot be parsed: move it away to start the agent without that VM",
          file));
    }
    if (record.format_version() != kFormatVersion) {
      return absl::FailedPreconditionError(fmt::format(
          "the VM record {} has format version {}, this agent reads version {}: run the agent "
          "version that wrote it",
          file, record.format_version(), kFormatVersion));
    }
    if (record.vm().name() + ".pb" != item.path().filename().string()) {
      return absl::DataLossError(fmt::format("the VM record {} holds VM '{}': the file was renamed",
                                             file, record.vm().name()));
    }
    records.push_back(std::move(record));
  }
  if (error) return errnoStatus(error.value(), fmt::format("cannot list {}", directory_));
  return records;
}

}  // namespace flotilla::agent
