// LocalDirPool (see local_dir_pool.h): raw sparse files in a directory, built out of sight and
// linked into place without replacing anything.
#include "storage/local_dir_pool.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <utility>

#include "common/status.h"
#include "fmt/format.h"

namespace flotilla::storage {
namespace {

constexpr std::string_view kVolumeSuffix = ".img";
// Hidden temporary files: ".NAME.img.partial-XXXXXX" (only where O_TMPFILE is unavailable).
constexpr std::string_view kPartialMarker = ".img.partial-";
constexpr size_t kCopyChunkBytes = size_t{1} << 20;
constexpr mode_t kVolumeMode = 0600;  // guest data: the agent grants a VMM access when attaching

std::string volumeFileName(std::string_view volume) {
  return std::string(volume) + std::string(kVolumeSuffix);
}

struct DirCloser {
  void operator()(DIR* dir) const { ::closedir(dir); }
};
using DirHandle = std::unique_ptr<DIR, DirCloser>;

// The names in a directory (without "." and "..").
absl::StatusOr<std::vector<std::string>> directoryEntries(int dir_fd, const std::string& path) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errnoStatus(errno, fmt::format("opening directory {}", path));
  DirHandle dir(::fdopendir(fd));
  if (dir == nullptr) {
    const int error = errno;
    ::close(fd);
    return errnoStatus(error, fmt::format("reading directory {}", path));
  }
  std::vector<std::string> names;
  errno = 0;
  while (dirent* entry = ::readdir(dir.get())) {
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
    errno = 0;
  }
  if (errno != 0) return errnoStatus(errno, fmt::format("reading directory {}", path));
  return names;
}

// A directory, symbolic link, device... under a volume's file name.
absl::Status notAVolume(std::string_view pool, const std::string& path) {
  return absl::FailedPreconditionError(fmt::format(
      "pool {}: {} is not a regular file, so not a volume; move it out of the pool's directory",
      pool, path));
}

bool allZero(const char* data, size_t size) {
  return size == 0 || (data[0] == 0 && std::memcmp(data, data + 1, size - 1) == 0);
}

// A volume file being built: unnamed (O_TMPFILE) or under a hidden temporary name, and given
// its final name by commit() with a link that fails when the name exists. Until then (and on
// destruction without commit) nothing is visible under the final name.
class PendingFile {
 public:
  static absl::StatusOr<PendingFile> create(int dir_fd, const std::string& dir,
                                            std::string final_name, bool unnamed) {
    PendingFile file(dir_fd, dir, std::move(final_name));
    if (unnamed) {
      file.fd_.reset(::openat(dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, kVolumeMode));
      if (file.fd_.valid()) return file;
      // Not supported by this file system (or kernel): fall back to a named temporary.
      if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
        return errnoStatus(errno, fmt::format("creating a temporary file in {}", dir));
      }
    }
    std::string pattern = fmt::format(
        "{}/.{}{}XXXXXX", dir,
        file.final_name_.substr(0, file.final_name_.size() - kVolumeSuffix.size()), kPartialMarker);
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    file.fd_.reset(::mkostemp(buffer.data(), O_CLOEXEC));  // mode 0600
    if (!file.fd_.valid()) {
      return errnoStatus(errno, fmt::format("creating a temporary file in {}", dir));
    }
    file.temp_name_ = std::filesystem::path(buffer.data()).filename().string();
    return file;
  }

  PendingFile(PendingFile&& other) noexcept
      : dir_fd_(other.dir_fd_),
        dir_(std::move(other.dir_)),
        final_name_(std::move(other.final_name_)),
        temp_name_(std::exchange(other.temp_name_, {})),
        fd_(std::move(other.fd_)) {}
  PendingFile& operator=(PendingFile&&) = delete;
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;

  // The temporary name goes in every case: once linked, the final name keeps the file.
  ~PendingFile() {
    if (!temp_name_.empty()) (void)::unlinkat(dir_fd_, temp_name_.c_str(), 0);
  }

  int fd() const { return fd_.get(); }

  // Gives the file its final name; AlreadyExists when that name exists (nothing replaced).
  absl::Status commit() {
    int result;
    if (temp_name_.empty()) {
      // An O_TMPFILE file is linked through its /proc path (AT_EMPTY_PATH would need
      // CAP_DAC_READ_SEARCH); without /proc mounted, try AT_EMPTY_PATH anyway.
      const std::string proc_path = fmt::format("/proc/self/fd/{}", fd_.get());
      result =
          ::linkat(AT_FDCWD, proc_path.c_str(), dir_fd_, final_name_.c_str(), AT_SYMLINK_FOLLOW);
      if (result != 0 && errno == ENOENT) {
        result = ::linkat(fd_.get(), "", dir_fd_, final_name_.c_str(), AT_EMPTY_PATH);
      }
    } else {
      result = ::linkat(dir_fd_, temp_name_.c_str(), dir_fd_, final_name_.c_str(), 0);
    }
    if (result == 0) return absl::OkStatus();
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(
          fmt::format("{}/{} appeared while it was being built", dir_, final_name_));
    }
    return errnoStatus(errno, fmt::format("linking {}/{} into place", dir_, final_name_));
  }

 private:
  PendingFile(int dir_fd, std::string dir, std::string final_name)
      : dir_fd_(dir_fd), dir_(std::move(dir)), final_name_(std::move(final_name)) {}

  int dir_fd_;
  std::string dir_;
  std::string final_name_;
  std::string temp_name_;  // empty for an O_TMPFILE file
  UniqueFd fd_;
};

// Copies [offset, offset + length) of `src` to the same place in `dst`, with
// copy_file_range while the kernel accepts it (*use_copy_file_range), else read/write that
// leaves zero blocks unwritten (`dst` is sparse and reads as zeroes there).
absl::Status copyRange(int src, int dst, uint64_t offset, uint64_t length,
                       bool* use_copy_file_range, std::vector<char>* buffer) {
  uint64_t done = 0;
  while (done < length && *use_copy_file_range) {
    loff_t in = static_cast<loff_t>(offset + done);
    loff_t out = in;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(length - done, 1u << 30));
    ssize_t n = ::copy_file_range(src, &in, dst, &out, want, 0);
    if (n > 0) {
      done += static_cast<uint64_t>(n);
      continue;
    }
    if (n == 0) return absl::OkStatus();  // the source ended early (it shrank): nothing more
    if (errno == EINTR) continue;
    // Refused for these files (another file system on old kernels, special files, a kernel
    // without it): the rest goes through read/write.
    if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
        errno == EBADF) {
      *use_copy_file_range = false;
      break;
    }
    return errnoStatus(errno, "copy_file_range");
  }
  buffer->resize(kCopyChunkBytes);
  while (done < length) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(length - done, kCopyChunkBytes));
    ssize_t n = ::pread(src, buffer->data(), want, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errnoStatus(errno, "reading the source");
    }
    if (n == 0) return absl::OkStatus();
    const size_t got = static_cast<size_t>(n);
    if (!allZero(buffer->data(), got)) {
      size_t written = 0;
      while (written < got) {
        ssize_t w = ::pwrite(dst, buffer->data() + written, got - written,
                             static_cast<off_t>(offset + done + written));
        if (w < 0) {
          if (errno == EINTR) continue;
          return errnoStatus(errno, "writing the copy");
        }
        written += static_cast<size_t>(w);
      }
    }
    done += got;
  }
  return absl::OkStatus();
}

// Copies the data extents of the first `size` bytes of `src` into `dst` (already `size`
// bytes long and all holes). Returns how.
absl::StatusOr<CloneMethod> copyExtents(int src, int dst, uint64_t size) {
  bool use_copy_file_range = true;
  bool copied_any = false;
  std::vector<char> buffer;
  uint64_t pos = 0;
  while (pos < size) {
    off_t data = ::lseek(src, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only holes from here on
      if (errno != EINVAL) return errnoStatus(errno, "finding the source's data (SEEK_DATA)");
      data = static_cast<off_t>(pos);  // no SEEK_DATA here: everything is data
    }
    if (static_cast<uint64_t>(data) >= size) break;
    off_t hole = ::lseek(src, data, SEEK_HOLE);
    uint64_t end = hole < 0 ? size : std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    if (end <= static_cast<uint64_t>(data)) end = size;  // defensive: always progress
    RETURN_IF_ERROR(copyRange(src, dst, static_cast<uint64_t>(data),
                              end - static_cast<uint64_t>(data), &use_copy_file_range, &buffer));
    copied_any = true;
    pos = end;
  }
  return (use_copy_file_range || !copied_any) ? CloneMethod::kCopyFileRange
                                              : CloneMethod::kReadWrite;
}

}  // namespace

std::string_view cloneMethodName(CloneMethod method) {
  switch (method) {
    case CloneMethod::kReflink:
      return "reflink";
    case CloneMethod::kCopyFileRange:
      return "copy_file_range";
    case CloneMethod::kReadWrite:
      return "read/write";
  }
  return "?";
}

LocalDirPool::LocalDirPool(LocalDirPoolOptions options, UniqueFd dir)
    : options_(std::move(options)),
      log_(Logger("storage").with("pool", options_.name)),
      dir_(std::move(dir)) {}

absl::StatusOr<std::unique_ptr<LocalDirPool>> LocalDirPool::open(LocalDirPoolOptions options) {
  RETURN_IF_ERROR(validatePoolName(options.name));
  const std::string& raw = options.directory;
  if (raw.empty() || raw.front() != '/') {
    return absl::InvalidArgumentError(
        fmt::format("pool {}: directory '{}' must be an absolute path", options.name, raw));
  }
  if (raw.find(',') != std::string::npos) {
    return absl::InvalidArgumentError(fmt::format(
        "pool {}: directory '{}' contains ',', which the VMM's --disk path= option cannot carry; "
        "choose a directory without commas",
        options.name, raw));
  }
  std::string normal = std::filesystem::path(raw).lexically_normal().string();
  while (normal.size() > 1 && normal.back() == '/') normal.pop_back();
  options.directory = normal;

  if (options.create_directory) {
    std::error_code error;
    std::filesystem::create_directories(options.directory, error);
    if (error) {
      return absl::FailedPreconditionError(fmt::format("pool {}: cannot create directory {}: {}",
                                                       options.name, options.directory,
                                                       error.message()));
    }
  }
  UniqueFd dir(::open(options.directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) {
    if (errno == ENOENT) {
      return absl::NotFoundError(fmt::format(
          "pool {}: directory {} does not exist; create it (mkdir -p {}) or fix the pool's "
          "directory in the configuration",
          options.name, options.directory, options.directory));
    }
    if (errno == ENOTDIR) {
      return absl::FailedPreconditionError(
          fmt::format("pool {}: {} is not a directory; a local pool needs a directory of its own",
                      options.name, options.directory));
    }
    return errnoStatus(
        errno, fmt::format("pool {}: opening directory {}", options.name, options.directory));
  }
  if (::faccessat(dir.get(), ".", W_OK | X_OK, AT_EACCESS) != 0) {
    return absl::PermissionDeniedError(fmt::format(
        "pool {}: cannot create files in {} ({}); give the agent's user write access to it",
        options.name, options.directory, std::strerror(errno)));
  }
  std::unique_ptr<LocalDirPool> pool(new LocalDirPool(std::move(options), std::move(dir)));
  RETURN_IF_ERROR(pool->removeStaleTemporaries());
  return pool;
}

std::string LocalDirPool::volumePath(std::string_view volume) const {
  return fmt::format("{}/{}", options_.directory, volumeFileName(volume));
}

absl::Status LocalDirPool::syncDirectory() {
  if (::fsync(dir_.get()) != 0) {
    return errnoStatus(
        errno, fmt::format("pool {}: syncing directory {}", options_.name, options_.directory));
  }
  return absl::OkStatus();
}

absl::Status LocalDirPool::removeStaleTemporaries() {
  ASSIGN_OR_RETURN(std::vector<std::string> names,
                   directoryEntries(dir_.get(), options_.directory));
  for (const std::string& name : names) {
    if (name.empty() || name.front() != '.' || name.find(kPartialMarker) == std::string::npos) {
      continue;
    }
    if (::unlinkat(dir_.get(), name.c_str(), 0) == 0) {
      log_.warn("removed {}/{}, left by an interrupted create or clone", options_.directory, name);
    } else if (errno != ENOENT) {
      return errnoStatus(errno, fmt::format("pool {}: removing the stale temporary file {}/{}",
                                            options_.name, options_.directory, name));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<VolumeInfo> LocalDirPool::statVolume(std::string_view volume) {
  const std::string file = volumeFileName(volume);
  struct stat st {};
  if (::fstatat(dir_.get(), file.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(fmt::format("pool {} has no volume {} (no file {})", options_.name,
                                             volume, volumePath(volume)));
    }
    return errnoStatus(errno,
                       fmt::format("pool {}: examining {}", options_.name, volumePath(volume)));
  }
  if (!S_ISREG(st.st_mode)) return notAVolume(options_.name, volumePath(volume));
  VolumeInfo info;
  info.name = std::string(volume);
  info.size_bytes = static_cast<uint64_t>(st.st_size);
  info.allocated_bytes = static_cast<uint64_t>(st.st_blocks) * 512;  // st_blocks: 512-byte units
  return info;
}

absl::StatusOr<VolumeInfo> LocalDirPool::create(std::string_view volume, uint64_t size_bytes) {
  RETURN_IF_ERROR(validateVolumeName(volume));
  RETURN_IF_ERROR(validateVolumeSize(volume, size_bytes));
  if (size_bytes > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
    return absl::InvalidArgumentError(
        fmt::format("volume {}: size {} bytes is larger than a file can be", volume, size_bytes));
  }
  const std::string path = volumePath(volume);
  const std::string exists_message =
      fmt::format("pool {}: volume {} already exists ({}); remove it first or choose another name",
                  options_.name, volume, path);
  struct stat st {};
  if (::fstatat(dir_.get(), volumeFileName(volume).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    return absl::AlreadyExistsError(exists_message);
  }
  ASSIGN_OR_RETURN(PendingFile file,
                   PendingFile::create(dir_.get(), options_.directory, volumeFileName(volume),
                                       options_.unnamed_temp_files));
  if (::ftruncate(file.fd(), static_cast<off_t>(size_bytes)) != 0) {
    return errnoStatus(errno, fmt::format("pool {}: giving volume {} its size of {} bytes",
                                          options_.name, volume, size_bytes));
  }
  if (::fsync(file.fd()) != 0) {
    return errnoStatus(errno, fmt::format("pool {}: syncing volume {}", options_.name, volume));
  }
  absl::Status linked = file.commit();
  if (absl::IsAlreadyExists(linked)) return absl::AlreadyExistsError(exists_message);
  RETURN_IF_ERROR(
      annotate(linked, fmt::format("pool {}: creating volume {}", options_.name, volume)));
  RETURN_IF_ERROR(syncDirectory());
  log_.info("created volume {} ({} bytes) at {}", volume, size_bytes, path);
  return statVolume(volume);
}

absl::Status LocalDirPool::resize(std::string_view volume, uint64_t new_size) {
  RETURN_IF_ERROR(validateVolumeName(volume));
  RETURN_IF_ERROR(validateVolumeSize(volume, new_size));
  if (new_size > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) {
    return absl::InvalidArgumentError(
        fmt::format("volume {}: size {} bytes is larger than a file can be", volume, new_size));
  }
  const std::string path = volumePath(volume);
  UniqueFd fd(
      ::openat(dir_.get(), volumeFileName(volume).c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) {
      return absl::NotFoundError(
          fmt::format("pool {} has no volume {} (no file {})", options_.name, volume, path));
    }
    if (errno == ELOOP) return notAVolume(options_.name, path);
    return errnoStatus(errno, fmt::format("pool {}: opening volume {} ({}) to resize it",
                                          options_.name, volume, path));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errnoStatus(errno, fmt::format("examining {}", path));
  if (!S_ISREG(st.st_mode)) return notAVolume(options_.name, path);
  const uint64_t old_size = static_cast<uint64_t>(st.st_size);
  if (new_size < old_size) {
    return absl::FailedPreconditionError(fmt::format(
        "pool {}: cannot shrink volume {} from {} to {} bytes: volumes only grow (shrinking "
        "would cut off the guest's data); give a size of at least {} bytes",
        options_.name, volume, old_size, new_size, old_size));
  }
  if (new_size == old_size) return absl::OkStatus();
  if (::ftruncate(fd.get(), static_cast<off_t>(new_size)) != 0) {
    return errnoStatus(errno, fmt::format("pool {}: growing volume {} from {} to {} bytes",
                                          options_.name, volume, old_size, new_size));
  }
  if (::fsync(fd.get()) != 0) return errnoStatus(errno, fmt::format("syncing {}", path));
  log_.info("grew volume {} from {} to {} bytes", volume, old_size, new_size);
  return absl::OkStatus();
}

absl::Status LocalDirPool::remove(std::string_view volume) {
  RETURN_IF_ERROR(validateVolumeName(volume));
  if (::unlinkat(dir_.get(), volumeFileName(volume).c_str(), 0) != 0) {
    if (errno == ENOENT) return absl::OkStatus();  // already gone: removal is idempotent
    return errnoStatus(errno, fmt::format("pool {}: removing volume {} ({})", options_.name, volume,
                                          volumePath(volume)));
  }
  RETURN_IF_ERROR(syncDirectory());
  log_.info("removed volume {}", volume);
  return absl::OkStatus();
}

absl::StatusOr<VolumeInfo> LocalDirPool::clone(std::string_view source, std::string_view target) {
  RETURN_IF_ERROR(validateVolumeName(source));
  RETURN_IF_ERROR(validateVolumeName(target));
  if (source == target) {
    return absl::InvalidArgumentError(
        fmt::format("pool {}: cannot clone volume {} onto itself; give the copy another name",
                    options_.name, source));
  }
  UniqueFd src(
      ::openat(dir_.get(), volumeFileName(source).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!src.valid()) {
    if (errno == ENOENT) {
      return absl::NotFoundError(fmt::format("pool {} has no volume {} to clone (no file {})",
                                             options_.name, source, volumePath(source)));
    }
    if (errno == ELOOP) return notAVolume(options_.name, volumePath(source));
    return errnoStatus(errno, fmt::format("pool {}: opening volume {} ({}) to clone it",
                                          options_.name, source, volumePath(source)));
  }
  struct stat st {};
  if (::fstat(src.get(), &st) != 0) {
    return errnoStatus(errno, fmt::format("examining {}", volumePath(source)));
  }
  if (!S_ISREG(st.st_mode)) return notAVolume(options_.name, volumePath(source));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  const std::string exists_message = fmt::format(
      "pool {}: volume {} already exists ({}); remove it first or clone to another name",
      options_.name, target, volumePath(target));
  struct stat target_st {};
  if (::fstatat(dir_.get(), volumeFileName(target).c_str(), &target_st, AT_SYMLINK_NOFOLLOW) == 0) {
    return absl::AlreadyExistsError(exists_message);
  }

  ASSIGN_OR_RETURN(PendingFile file,
                   PendingFile::create(dir_.get(), options_.directory, volumeFileName(target),
                                       options_.unnamed_temp_files));
  const std::string what =
      fmt::format("pool {}: cloning volume {} to {}", options_.name, source, target);
  CloneMethod method = CloneMethod::kReflink;
  if (::ioctl(file.fd(), FICLONE, src.get()) != 0) {
    // No shared extents here (ext4, tmpfs, another file system): copy the data.
    if (::ftruncate(file.fd(), static_cast<off_t>(size)) != 0) {
      return errnoStatus(errno, fmt::format("{}: sizing the copy to {} bytes", what, size));
    }
    absl::StatusOr<CloneMethod> copied = copyExtents(src.get(), file.fd(), size);
    if (!copied.ok()) return annotate(copied.status(), what);
    method = *copied;
  }
  if (::fdatasync(file.fd()) != 0) return errnoStatus(errno, fmt::format("{}: syncing", what));
  absl::Status linked = file.commit();
  if (absl::IsAlreadyExists(linked)) return absl::AlreadyExistsError(exists_message);
  RETURN_IF_ERROR(annotate(linked, what));
  RETURN_IF_ERROR(syncDirectory());
  last_clone_method_.store(method);
  log_.info("cloned volume {} to {} ({} bytes, {})", source, target, size, cloneMethodName(method));
  return statVolume(target);
}

absl::StatusOr<std::vector<VolumeInfo>> LocalDirPool::list() {
  ASSIGN_OR_RETURN(std::vector<std::string> names,
                   directoryEntries(dir_.get(), options_.directory));
  std::vector<VolumeInfo> volumes;
  for (const std::string& name : names) {
    if (name.size() <= kVolumeSuffix.size() || !name.ends_with(kVolumeSuffix)) continue;
    std::string_view volume(name.data(), name.size() - kVolumeSuffix.size());
    if (!validateVolumeName(volume).ok()) continue;  // not a volume of ours
    absl::StatusOr<VolumeInfo> info = statVolume(volume);
    if (absl::IsNotFound(info.status()) || absl::IsFailedPrecondition(info.status())) {
      continue;  // removed meanwhile, or not a regular file
    }
    if (!info.ok()) return info.status();
    volumes.push_back(*std::move(info));
  }
  std::sort(volumes.begin(), volumes.end(),
            [](const VolumeInfo& a, const VolumeInfo& b) { return a.name < b.name; });
  return volumes;
}

absl::StatusOr<VolumeInfo> LocalDirPool::get(std::string_view volume) {
  RETURN_IF_ERROR(validateVolumeName(volume));
  return statVolume(volume);
}

absl::StatusOr<std::string> LocalDirPool::diskOption(std::string_view volume) {
  RETURN_IF_ERROR(validateVolumeName(volume));
  RETURN_IF_ERROR(statVolume(volume).status());
  return fmt::format("path={}", volumePath(volume));
}

}  // namespace flotilla::storage
