// Test doubles for the legacy devices' seams: an interrupt line that records every level the
// device sets, and a serial sink that collects what the guest transmitted. Both may be used
// from several threads (the console socket feeds the UART from its event loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "vmm/devices/interrupt_line.h"
#include "vmm/devices/serial.h"

namespace flotilla::vmm::testing {

class FakeInterruptLine final : public InterruptLine {
 public:
  void setLevel(bool high) override {
    absl::MutexLock lock(&mu_);
    levels_.push_back(high);
  }

  // Every level set so far, in order.
  std::vector<bool> levels() const {
    absl::MutexLock lock(&mu_);
    return levels_;
  }
  // The current level (low before the device ever set one).
  bool high() const {
    absl::MutexLock lock(&mu_);
    return !levels_.empty() && levels_.back();
  }
  // How many times the line went from low to high.
  size_t risingEdges() const {
    absl::MutexLock lock(&mu_);
    size_t edges = 0;
    bool previous = false;
    for (bool level : levels_) {
      if (level && !previous) ++edges;
      previous = level;
    }
    return edges;
  }
  void clear() {
    absl::MutexLock lock(&mu_);
    levels_.clear();
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<bool> levels_ ABSL_GUARDED_BY(mu_);
};

class FakeSerialSink final : public SerialSink {
 public:
  void write(std::span<const uint8_t> bytes) override {
    absl::MutexLock lock(&mu_);
    bytes_.append(bytes.begin(), bytes.end());
  }

  std::string bytes() const {
    absl::MutexLock lock(&mu_);
    return bytes_;
  }

 private:
  mutable absl::Mutex mu_;
  std::string bytes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::vmm::testing
