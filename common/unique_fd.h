// UniqueFd: sole owner of a file descriptor; closes it when destroyed. Move-only.
#pragma once

#include <utility>

#include "absl/status/statusor.h"

namespace flotilla {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }

  // Gives up ownership without closing.
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }

  // Closes the owned descriptor (if any) and takes `fd`.
  void reset(int fd = -1);

  // A close-on-exec duplicate of this descriptor.
  absl::StatusOr<UniqueFd> duplicate() const;

 private:
  int fd_ = -1;
};

// Both ends of a close-on-exec pipe.
struct Pipe {
  UniqueFd read;
  UniqueFd write;
};
absl::StatusOr<Pipe> makePipe();

}  // namespace flotilla
