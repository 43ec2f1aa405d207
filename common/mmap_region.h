// MmapRegion: sole owner of a memory mapping; unmaps it when destroyed. Move-only.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "absl/status/statusor.h"

namespace flotilla {

class MmapRegion {
 public:
  MmapRegion() = default;
  ~MmapRegion() { reset(); }

  MmapRegion(MmapRegion&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  MmapRegion& operator=(MmapRegion&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  MmapRegion(const MmapRegion&) = delete;
  MmapRegion& operator=(const MmapRegion&) = delete;

  // mmap(2) with the given protection and flags; `fd` -1 with MAP_ANONYMOUS.
  static absl::StatusOr<MmapRegion> map(size_t size, int prot, int flags, int fd = -1,
                                        off_t offset = 0);
  // A private, zero-filled, read-write anonymous mapping.
  static absl::StatusOr<MmapRegion> anonymous(size_t size);

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<uint8_t> bytes() const { return {data_, size_}; }
  bool valid() const { return data_ != nullptr; }

  void reset();

 private:
  MmapRegion(uint8_t* data, size_t size) : data_(data), size_(size) {}

  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace flotilla
