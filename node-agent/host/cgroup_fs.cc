// SystemCgroupFilesystem (see cgroup_fs.h).
#include "node-agent/host/cgroup_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace flotilla::agent {

int SystemCgroupFilesystem::readFile(const std::string& path, std::string* content) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return errno;
  content->clear();
  char buffer[4096];
  while (true) {
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return 0;
    content->append(buffer, static_cast<size_t>(n));
  }
}

int SystemCgroupFilesystem::writeFile(const std::string& path, std::string_view value) {
  // No O_CREAT: on cgroupfs a missing file means a controller that is not enabled, and the
  // caller reports that; no O_TRUNC: cgroupfs ignores it, a regular file (tests) needs it.
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_TRUNC));
  if (!fd.valid()) return errno;
  while (true) {
    ssize_t n = ::write(fd.get(), value.data(), value.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    // cgroupfs takes a value whole or fails; a short write would be a kernel bug.
    return static_cast<size_t>(n) == value.size() ? 0 : EIO;
  }
}

int SystemCgroupFilesystem::makeDirectory(const std::string& path) {
  return ::mkdir(path.c_str(), 0755) == 0 ? 0 : errno;
}

int SystemCgroupFilesystem::removeDirectory(const std::string& path) {
  return ::rmdir(path.c_str()) == 0 ? 0 : errno;
}

int SystemCgroupFilesystem::listDirectories(const std::string& path,
                                            std::vector<std::string>* names) {
  names->clear();
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return errno;
  int error = 0;
  while (true) {
    errno = 0;
    dirent* entry = ::readdir(dir);  // NOLINT(concurrency-mt-unsafe): a DIR of its own
    if (entry == nullptr) {
      error = errno;
      break;
    }
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    bool is_dir = entry->d_type == DT_DIR;
    if (entry->d_type == DT_UNKNOWN) {
      struct stat st {};
      is_dir = ::fstatat(::dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
               S_ISDIR(st.st_mode);
    }
    if (is_dir) names->push_back(std::move(name));
  }
  ::closedir(dir);
  return error;
}

int SystemCgroupFilesystem::openDirectory(const std::string& path, UniqueFd* fd) {
  int raw = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (raw < 0) return errno;
  fd->reset(raw);
  return 0;
}

}  // namespace flotilla::agent
