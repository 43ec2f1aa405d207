// Fake VMs for the migration engine's unit tests: a source whose "guest" is a thread writing
// its memory, and a target that keeps what it receives in plain memory.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "fmt/format.h"
#include "migration/protocol.h"
#include "migration/vm_interface.h"

namespace flotilla::migration::testing {

constexpr uint64_t kPages = 1024;  // 4 MiB
constexpr uint64_t kBytes = kPages * kPageBytes;

inline flotilla::v1::MigrationMemoryLayout layoutOf(uint64_t bytes) {
  flotilla::v1::MigrationMemoryLayout layout;
  layout.set_ram_bytes(bytes);
  layout.set_memory_bytes(bytes);
  layout.set_page_size(kPageBytes);
  layout.set_vcpus(1);
  layout.set_cpu_model("host");
  return layout;
}

// A VM whose "guest" is a thread incrementing one byte of page after page (of the first
// `busy_pages`), marking each page dirty, and pausing `pace` between writes.
class FakeSourceVm : public SourceVm {
 public:
  explicit FakeSourceVm(uint64_t busy_pages = 64, absl::Duration pace = absl::Microseconds(200))
      : memory_(kBytes, 0), dirty_(kPages), busy_pages_(busy_pages), pace_(pace) {
    // Some content, some zero pages, some never touched.
    for (uint64_t page = 0; page < kPages / 2; page += 3) memory_[page * kPageBytes + 7] = 1;
    guest_ = std::thread([this] { runGuest(); });
  }
  ~FakeSourceVm() override {
    stop_.store(true);
    guest_.join();
  }

  flotilla::v1::MigrationMemoryLayout layout() const override { return layoutOf(kBytes); }
  std::span<const uint8_t> memory() const override { return memory_; }
  absl::StatusOr<std::vector<ByteRange>> populated() const override {
    return std::vector<ByteRange>{{0, kBytes}};
  }
  absl::Status startDirtyLog() override {
    logging_.store(true);
    return absl::OkStatus();
  }
  absl::StatusOr<uint64_t> fetchDirtyLog(vmm::DirtyBitmap& out) override {
    const uint64_t before = out.count();
    dirty_.drainInto(out);
    return out.count() - before;
  }
  absl::Status stopDirtyLog() override {
    logging_.store(false);
    return absl::OkStatus();
  }
  absl::Status pause() override {
    absl::MutexLock lock(&mu_);
    paused_ = true;
    mu_.Await(absl::Condition(&idle_));  // the guest finished its current write
    return absl::OkStatus();
  }
  absl::Status resume() override {
    absl::MutexLock lock(&mu_);
    paused_ = false;
    ++resumes_;
    return absl::OkStatus();
  }
  absl::StatusOr<std::string> saveDeviceState() override { return std::string("device state"); }
  absl::StatusOr<std::vector<LocalDisk>> localDisks() const override { return disks; }
  void setThrottle(int percent) override {
    absl::MutexLock lock(&mu_);
    throttles_.push_back(percent);
    throttle_.store(percent);
  }

  bool paused() {
    absl::MutexLock lock(&mu_);
    return paused_;
  }
  int resumes() {
    absl::MutexLock lock(&mu_);
    return resumes_;
  }
  std::vector<int> throttles() {
    absl::MutexLock lock(&mu_);
    return throttles_;
  }
  uint64_t writes() const { return writes_.load(); }
  std::vector<LocalDisk> disks;  // a cold migration with disks moves these
  const std::vector<uint8_t>& bytes() const { return memory_; }

 private:
  void runGuest() {
    uint64_t page = 0;
    while (!stop_.load()) {
      {
        absl::MutexLock lock(&mu_);
        if (paused_) {
          idle_ = true;
          mu_.AwaitWithTimeout(absl::Condition(
                                   +[](bool* paused) { return !*paused; }, &paused_),
                               absl::Milliseconds(10));
          continue;
        }
        idle_ = false;
      }
      ++memory_[page * kPageBytes + 100];
      if (logging_.load()) dirty_.markBytes(page * kPageBytes + 100, 1);
      writes_.fetch_add(1);
      page = (page + 1) % busy_pages_;
      {
        absl::MutexLock lock(&mu_);
        idle_ = true;
      }
      const int throttle = throttle_.load();
      std::this_thread::sleep_for(std::chrono::microseconds(absl::ToInt64Microseconds(pace_)) *
                                  (100 + 10 * throttle) / 100);
    }
  }

  std::vector<uint8_t> memory_;
  vmm::ConcurrentDirtyBitmap dirty_;
  const uint64_t busy_pages_;
  const absl::Duration pace_;
  std::atomic<bool> logging_{false};
  std::atomic<bool> stop_{false};
  std::atomic<int> throttle_{0};
  std::atomic<uint64_t> writes_{0};
  absl::Mutex mu_;
  bool paused_ = false;
  bool idle_ = true;
  int resumes_ = 0;
  std::vector<int> throttles_;
  std::thread guest_;
};

class FakeTargetVm : public TargetVm {
 public:
  absl::Status prepare(const flotilla::v1::MigrationMemoryLayout& layout) override {
    if (layout.ram_bytes() != expected_bytes) {
      return absl::FailedPreconditionError(
          fmt::format("this target was started for {} bytes of RAM, the VM has {}", expected_bytes,
                      layout.ram_bytes()));
    }
    memory_.assign(layout.memory_bytes(), 0);
    return absl::OkStatus();
  }
  std::span<uint8_t> memory() override { return memory_; }
  absl::Status load(const std::string& state) override {
    if (!load_error.ok()) return load_error;
    state_ = state;
    return absl::OkStatus();
  }
  absl::Status resume() override {
    if (on_resume) on_resume();
    running = true;
    return absl::OkStatus();
  }
  void discard() override { discarded = true; }
  absl::StatusOr<std::string> diskPath(uint32_t index) override {
    if (index >= disk_paths.size()) {
      return absl::FailedPreconditionError(
          fmt::format("this target has {} disks", disk_paths.size()));
    }
    return disk_paths[index];
  }

  uint64_t expected_bytes = kBytes;
  absl::Status load_error = absl::OkStatus();
  std::function<void()> on_resume;
  bool running = false;
  bool discarded = false;
  std::vector<std::string> disk_paths;  // where the source's disks go
  std::vector<uint8_t> memory_;
  std::string state_;
};

// "" when equal, else where the first difference is.
inline std::string firstDifference(const std::vector<uint8_t>& target,
                                   const std::vector<uint8_t>& source) {
  if (target.size() != source.size()) {
    return fmt::format("sizes {} and {}", target.size(), source.size());
  }
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] != source[i]) {
      return fmt::format("page {} byte {}: target {}, source {}", i / kPageBytes, i % kPageBytes,
                         target[i], source[i]);
    }
  }
  return "";
}

}  // namespace flotilla::migration::testing
