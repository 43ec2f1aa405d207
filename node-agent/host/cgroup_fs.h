// The file operations CgroupManager performs on cgroupfs, behind an interface so that unit
// tests can run the manager against a temporary directory that behaves like cgroupfs
// (tests/unit/node-agent/host/fake_cgroupfs.h). Each operation returns 0 or the errno of
// the system call it stands for, so that the manager can tell EBUSY from ENOENT and word
// the error itself.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.h"

namespace flotilla::agent {

class CgroupFilesystem {
 public:
  virtual ~CgroupFilesystem() = default;

  // Reads the whole file into *content.
  virtual int readFile(const std::string& path, std::string* content) = 0;
  // Writes `value` with a single write() to an existing file (cgroupfs files cannot be
  // created, and the kernel parses each write on its own).
  virtual int writeFile(const std::string& path, std::string_view value) = 0;
  // mkdir (EEXIST when it exists) and rmdir (ENOENT when it does not).
  virtual int makeDirectory(const std::string& path) = 0;
  virtual int removeDirectory(const std::string& path) = 0;
  // The names of the subdirectories of `path`, unsorted.
  virtual int listDirectories(const std::string& path, std::vector<std::string>* names) = 0;
  // A close-on-exec O_DIRECTORY descriptor of `path` (for clone3's CLONE_INTO_CGROUP).
  virtual int openDirectory(const std::string& path, UniqueFd* fd) = 0;
};

// The real file system, through plain system calls.
class SystemCgroupFilesystem : public CgroupFilesystem {
 public:
  int readFile(const std::string& path, std::string* content) override;
  int writeFile(const std::string& path, std::string_view value) override;
  int makeDirectory(const std::string& path) override;
  int removeDirectory(const std::string& path) override;
  int listDirectories(const std::string& path, std::vector<std::string>* names) override;
  int openDirectory(const std::string& path, UniqueFd* fd) override;
};

}  // namespace flotilla::agent
