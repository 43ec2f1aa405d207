// Snapshot files (see snapshot.h).
#include "vmm/state/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/status.h"
#include "common/unique_fd.h"
#include "common/units.h"
#include "fmt/format.h"
#include "vmm/memory/extents.h"
#include "vmm/memory/memory_loader.h"

namespace flotilla::vmm {
namespace {

constexpr char kMagic[8] = {'F', 'L', 'O', 'T', 'S', 'N', 'A', 'P'};

// The state file's header, little-endian on disk as in memory (x86-64 only).
struct StateHeader {
  char magic[8];
  uint32_t major;
  uint32_t minor;
  uint64_t payload_bytes;
  uint32_t payload_crc32;
  uint32_t reserved;
};
static_assert(sizeof(StateHeader) == 32);

std::string statePath(const std::string& directory) {
  return directory + "/state";
}
std::string memoryPath(const std::string& directory) {
  return directory + "/memory";
}

uint32_t crc32Of(const std::string& bytes) {
  return static_cast<uint32_t>(
      ::crc32(0, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
}

absl::Status writeAll(int fd, const uint8_t* data, size_t size, off_t offset,
                      const std::string& path) {
  while (size > 0) {
    ssize_t n = ::pwrite(fd, data, size, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return errnoStatus(n < 0 ? errno : EIO, fmt::format("writing {}", path));
    data += n;
    size -= static_cast<size_t>(n);
    offset += n;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SnapshotStats> writeSnapshot(const std::string& directory,
                                            const flotilla::v1::VmSnapshot& state,
                                            const GuestMemory& memory) {
  if (::mkdir(directory.c_str(), 0750) != 0 && errno != EEXIST) {
    return errnoStatus(errno, fmt::format("creating snapshot directory {}", directory));
  }
  // Memory restored lazily must be all there before its memfd is read.
  RETURN_IF_ERROR(memory.waitLoaded());
  // Memory first: only a finished memory file may sit next to a state file.
  ::unlink(statePath(directory).c_str());
  const std::string memory_path = memoryPath(directory);
  UniqueFd out(::open(memory_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  if (!out.valid()) return errnoStatus(errno, fmt::format("creating {}", memory_path));
  SnapshotStats stats;
  // Only extents the guest ever touched are allocated in the memfd (reading the others would
  // allocate them); within those, zero pages stay holes in the file too.
  const uint8_t* base = memory.backing().data();
  ASSIGN_OR_RETURN(std::vector<Extent> extents,
                   dataExtents(memory.fd(), memory.ramBytes(), "guest memory"));
  // Runs of non-zero pages are written with one call each.
  uint64_t run_start = 0;
  uint64_t run_length = 0;
  auto flush = [&]() -> absl::Status {
    if (run_length == 0) return absl::OkStatus();
    RETURN_IF_ERROR(writeAll(out.get(), base + run_start, run_length, static_cast<off_t>(run_start),
                             memory_path));
    stats.memory_bytes_written += run_length;
    run_length = 0;
    return absl::OkStatus();
  };
  for (const Extent& extent : extents) {
    for (uint64_t page = extent.offset; page < extent.offset + extent.length; page += kPageSize) {
      if (isZeroPage(base + page)) {
        RETURN_IF_ERROR(flush());
        continue;
      }
      if (run_length == 0) run_start = page;
      run_length += kPageSize;
    }
    RETURN_IF_ERROR(flush());
  }
  if (::ftruncate(out.get(), static_cast<off_t>(memory.ramBytes())) != 0) {
    return errnoStatus(errno, fmt::format("finishing {}", memory_path));
  }

  std::string payload;
  if (!state.SerializeToString(&payload)) {
    return absl::InternalError("serializing the VM state failed");
  }
  StateHeader header{};
  std::memcpy(header.magic, kMagic, sizeof(kMagic));
  header.major = kSnapshotFormatMajor;
  header.minor = kSnapshotFormatMinor;
  header.payload_bytes = payload.size();
  header.payload_crc32 = crc32Of(payload);
  const std::string temporary = statePath(directory) + ".tmp";
  UniqueFd state_fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  if (!state_fd.valid()) return errnoStatus(errno, fmt::format("creating {}", temporary));
  RETURN_IF_ERROR(writeAll(state_fd.get(), reinterpret_cast<const uint8_t*>(&header),
                           sizeof(header), 0, temporary));
  RETURN_IF_ERROR(writeAll(state_fd.get(), reinterpret_cast<const uint8_t*>(payload.data()),
                           payload.size(), sizeof(header), temporary));
  return stats;
}

absl::Status commitSnapshot(const std::string& directory) {
  for (const std::string& path : {memoryPath(directory), statePath(directory) + ".tmp"}) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid() || ::fsync(fd.get()) != 0) {
      return errnoStatus(errno, fmt::format("syncing {}", path));
    }
  }
  if (::rename((statePath(directory) + ".tmp").c_str(), statePath(directory).c_str()) != 0) {
    return errnoStatus(errno, fmt::format("publishing {}", statePath(directory)));
  }
  UniqueFd dir(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid() || ::fsync(dir.get()) != 0) {
    return errnoStatus(errno, fmt::format("syncing {}", directory));
  }
  return absl::OkStatus();
}

absl::StatusOr<flotilla::v1::VmSnapshot> readSnapshotState(const std::string& directory) {
  const std::string path = statePath(directory);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(fmt::format(
          "{} has no snapshot (no state file): give the directory a snapshot was written to",
          directory));
    }
    return errnoStatus(error, fmt::format("opening {}", path));
  }
  StateHeader header{};
  ssize_t n = ::pread(fd.get(), &header, sizeof(header), 0);
  if (n != static_cast<ssize_t>(sizeof(header)) ||
      std::memcmp(header.magic, kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError(fmt::format("{} is not a Flotilla snapshot state file", path));
  }
  if (header.major != kSnapshotFormatMajor) {
    return absl::FailedPreconditionError(fmt::format(
        "{} has snapshot format {}.{}; this VMM reads format {}.x: restore it with a matching "
        "Flotilla version",
        path, header.major, header.minor, kSnapshotFormatMajor));
  }
  if (header.payload_bytes > kMaxStateBytes) {
    return absl::DataLossError(fmt::format("{} claims {} of state, more than the {} limit", path,
                                           formatByteSize(header.payload_bytes),
                                           formatByteSize(kMaxStateBytes)));
  }
  std::string payload(header.payload_bytes, '\0');
  n = ::pread(fd.get(), payload.data(), payload.size(), sizeof(header));
  if (n != static_cast<ssize_t>(payload.size())) {
    return absl::DataLossError(fmt::format("{} is truncated: {} of {} state bytes", path,
                                           std::max<ssize_t>(n, 0), payload.size()));
  }
  if (crc32Of(payload) != header.payload_crc32) {
    return absl::DataLossError(fmt::format("{} is corrupted: its checksum does not match", path));
  }
  flotilla::v1::VmSnapshot state;
  if (!state.ParseFromString(payload)) {
    return absl::DataLossError(fmt::format("{} is corrupted: its state does not parse", path));
  }
  return state;
}

absl::StatusOr<GuestMemory> readSnapshotMemory(const std::string& directory,
                                               const flotilla::v1::VmSnapshot& state) {
  const std::string path = memoryPath(directory);
  UniqueFd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return errnoStatus(errno, fmt::format("opening {}", path));
  struct stat info {};
  if (::fstat(in.get(), &info) != 0) return errnoStatus(errno, fmt::format("reading {}", path));
  const uint64_t ram = state.config().memory_bytes();
  if (static_cast<uint64_t>(info.st_size) != ram) {
    return absl::DataLossError(fmt::format(
        "{} is {} bytes but the snapshot's VM has {} bytes of memory: the snapshot is incomplete "
        "or corrupted",
        path, info.st_size, ram));
  }
  ASSIGN_OR_RETURN(GuestMemory memory,
                   GuestMemory::create(ram, {.hugepages = state.config().hugepages()}));
  ASSIGN_OR_RETURN(std::shared_ptr<MemoryLoader> loader,
                   MemoryLoader::start(memory, std::move(in), path,
                                       /*allow_lazy=*/!state.config().hugepages()));
  memory.setLoader(std::move(loader));
  return memory;
}

}  // namespace flotilla::vmm
