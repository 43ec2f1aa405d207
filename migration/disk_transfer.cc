// Disks moved with a cold migration (see disk_transfer.h).
#include "migration/disk_transfer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/status.h"
#include "fmt/format.h"
#include "vmm/memory/extents.h"

namespace flotilla::migration {
namespace {

bool isZero(const uint8_t* data, size_t size) {
  return size == 0 || (data[0] == 0 && std::memcmp(data, data + 1, size - 1) == 0);
}

absl::Status readAt(int fd, uint8_t* into, size_t size, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, into + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errnoStatus(errno, fmt::format("reading disk image {}", path));
    if (n == 0) {
      return absl::DataLossError(
          fmt::format("disk image {} ended at {} bytes while it was read", path, offset + done));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status writeAt(int fd, const uint8_t* from, size_t size, uint64_t offset,
                     const std::string& path) {
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pwrite(fd, from + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errnoStatus(errno, fmt::format("writing the migrated disk {}", path));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<flotilla::v1::MigrationDisks> describeDisks(const std::vector<LocalDisk>& disks) {
  flotilla::v1::MigrationDisks described;
  for (const LocalDisk& disk : disks) {
    struct stat info {};
    if (::stat(disk.path.c_str(), &info) != 0) {
      return errnoStatus(errno, fmt::format("disk {} ({})", disk.index, disk.path));
    }
    if (!S_ISREG(info.st_mode)) {
      return absl::FailedPreconditionError(fmt::format(
          "disk {} ({}) is not a regular file: a cold migration moves raw image files only",
          disk.index, disk.path));
    }
    flotilla::v1::MigrationDisk* out = described.add_disks();
    out->set_index(disk.index);
    out->set_size_bytes(static_cast<uint64_t>(info.st_size));
    out->set_source(disk.path);
  }
  return described;
}

absl::Status readDisk(const LocalDisk& disk, uint64_t size_bytes, const DiskDataSink& send,
                      uint64_t& sent) {
  UniqueFd fd(::open(disk.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errnoStatus(errno, fmt::format("opening disk image {}", disk.path));
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) return errnoStatus(errno, "fstat " + disk.path);
  if (static_cast<uint64_t>(info.st_size) != size_bytes) {
    return absl::FailedPreconditionError(
        fmt::format("disk image {} changed size during the migration ({} bytes, then {})",
                    disk.path, size_bytes, info.st_size));
  }
  ASSIGN_OR_RETURN(std::vector<vmm::Extent> extents,
                   vmm::dataExtents(fd.get(), size_bytes, "disk image " + disk.path));
  std::vector<uint8_t> chunk(kMaxDiskDataBytes);
  for (const vmm::Extent& extent : extents) {
    for (uint64_t at = extent.offset; at < extent.offset + extent.length;) {
      const size_t length =
          static_cast<size_t>(std::min(kMaxDiskDataBytes, extent.offset + extent.length - at));
      RETURN_IF_ERROR(readAt(fd.get(), chunk.data(), length, at, disk.path));
      // Runs of blocks that hold data; blocks of zeroes stay holes at the target.
      size_t run_start = 0;
      size_t run_end = 0;
      for (size_t block = 0; block < length; block += kDiskBlockBytes) {
        const size_t block_end = std::min<size_t>(block + kDiskBlockBytes, length);
        if (isZero(chunk.data() + block, block_end - block)) {
          if (run_end > run_start) {
            RETURN_IF_ERROR(send(at + run_start, {chunk.data() + run_start, run_end - run_start}));
            sent += run_end - run_start;
          }
          run_start = run_end = block_end;
        } else {
          run_end = block_end;
        }
      }
      if (run_end > run_start) {
        RETURN_IF_ERROR(send(at + run_start, {chunk.data() + run_start, run_end - run_start}));
        sent += run_end - run_start;
      }
      at += length;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DiskWriter>> DiskWriter::open(
    const flotilla::v1::MigrationDisks& disks,
    const std::function<absl::StatusOr<std::string>(uint32_t index)>& path_of) {
  std::unique_ptr<DiskWriter> writer(new DiskWriter());
  for (const flotilla::v1::MigrationDisk& disk : disks.disks()) {
    for (const Target& other : writer->targets_) {
      if (other.index == disk.index()) {
        return absl::DataLossError(fmt::format("disk {} announced twice", disk.index()));
      }
    }
    auto path = path_of(disk.index());
    if (!path.ok()) {
      writer->discard();
      return annotate(path.status(),
                      fmt::format("the source's disk {} ({})", disk.index(), disk.source()));
    }
    Target target;
    target.index = disk.index();
    target.path = *path;
    target.size = disk.size_bytes();
    // Never over data: the file must be new, or hold nothing yet (a sparse file of any size).
    target.fd = UniqueFd(::open(path->c_str(), O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, 0600));
    target.created = target.fd.valid();
    if (!target.created && errno == EEXIST) {
      target.fd = UniqueFd(::open(path->c_str(), O_RDWR | O_CLOEXEC));
    }
    absl::Status usable = target.fd.valid()
                              ? absl::OkStatus()
                              : errnoStatus(errno, fmt::format("opening {} for the source's "
                                                               "disk {}",
                                                               *path, disk.index()));
    struct stat info {};
    if (usable.ok() && ::fstat(target.fd.get(), &info) != 0) usable = errnoStatus(errno, "fstat");
    if (usable.ok() && !S_ISREG(info.st_mode)) {
      usable = absl::FailedPreconditionError(
          fmt::format("{} is not a regular file: the source's disk {} goes into an image file",
                      *path, disk.index()));
    }
    if (usable.ok() && !target.created) {
      target.original_size = static_cast<uint64_t>(info.st_size);
      auto extents = vmm::dataExtents(target.fd.get(), target.original_size, *path);
      if (!extents.ok()) {
        usable = extents.status();
      } else if (!extents->empty()) {
        usable = absl::FailedPreconditionError(
            fmt::format("{} already holds data: a migrated disk goes only into a new or empty file "
                        "(remove it, or give the target another --disk path)",
                        *path));
      }
    }
    if (!usable.ok()) {
      // Left as it was (a file created here goes again).
      if (target.created) (void)::unlink(path->c_str());
      writer->discard();
      return usable;
    }
    writer->targets_.push_back(std::move(target));
    Target& sized = writer->targets_.back();
    if (::ftruncate(sized.fd.get(), static_cast<off_t>(sized.size)) != 0) {
      absl::Status failed =
          errnoStatus(errno, fmt::format("sizing {} to {} bytes", sized.path, sized.size));
      writer->discard();
      return failed;
    }
  }
  return writer;
}

DiskWriter::~DiskWriter() = default;

absl::Status DiskWriter::receive(Connection& connection, const FrameHeader& header) {
  DiskDataHeader data{};
  if (header.length < sizeof(data) || header.length - sizeof(data) > kMaxDiskDataBytes) {
    return absl::DataLossError(
        fmt::format("{} sent a disk data frame of {} bytes", connection.peer(), header.length));
  }
  const iovec head{&data, sizeof(data)};
  RETURN_IF_ERROR(connection.readPayload(std::span<const iovec>(&head, 1)));
  const uint64_t length = header.length - sizeof(data);
  Target* target = nullptr;
  for (Target& candidate : targets_) {
    if (candidate.index == data.disk) target = &candidate;
  }
  if (target == nullptr || data.reserved != 0 || data.offset > target->size ||
      length > target->size - data.offset || length == 0) {
    return absl::DataLossError(
        fmt::format("{} sent {} bytes for disk {} at offset {}, outside the disks it announced",
                    connection.peer(), length, data.disk, data.offset));
  }
  // Into a buffer first: nothing reaches the disk before the checksum checked out.
  buffer_.resize(length);
  const iovec piece{buffer_.data(), buffer_.size()};
  RETURN_IF_ERROR(connection.readPayload(std::span<const iovec>(&piece, 1)));
  RETURN_IF_ERROR(connection.verify());
  RETURN_IF_ERROR(writeAt(target->fd.get(), buffer_.data(), length, data.offset, target->path));
  target->written += length;
  bytes_written_ += length;
  return absl::OkStatus();
}

absl::Status DiskWriter::finish(const flotilla::v1::MigrationDisks& done) {
  if (done.disks_size() != static_cast<int>(targets_.size())) {
    return absl::DataLossError(fmt::format("the source finished {} disks of the {} it announced",
                                           done.disks_size(), targets_.size()));
  }
  for (const flotilla::v1::MigrationDisk& disk : done.disks()) {
    const Target* target = nullptr;
    for (const Target& candidate : targets_) {
      if (candidate.index == disk.index()) target = &candidate;
    }
    if (target == nullptr || target->written != disk.data_bytes()) {
      return absl::DataLossError(
          fmt::format("disk {}: the source sent {} bytes of data, {} arrived", disk.index(),
                      disk.data_bytes(), target == nullptr ? 0 : target->written));
    }
  }
  for (const Target& target : targets_) {
    if (::fsync(target.fd.get()) != 0) {
      return errnoStatus(errno, fmt::format("flushing the migrated disk {}", target.path));
    }
  }
  finished_ = true;
  return absl::OkStatus();
}

void DiskWriter::discard() {
  for (Target& target : targets_) {
    if (target.created) {
      (void)::unlink(target.path.c_str());
    } else if (target.fd.valid()) {
      // It held no data before: empty it again, at its old size.
      (void)::ftruncate(target.fd.get(), 0);
      (void)::ftruncate(target.fd.get(), static_cast<off_t>(target.original_size));
    }
    target.fd.reset();
  }
  targets_.clear();
}

}  // namespace flotilla::migration
