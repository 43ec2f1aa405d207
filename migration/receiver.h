// MigrationReceiver: the target side of a migration (docs/migration.md), an explicit state
// machine over the frames of one connection:
//
//   kHello -> kLayout -> kMemory -> (kComplete) -> kLoading -> kReady -> (kGo) -> kResumed
//
// with kFailed from any state before kResumed: the target's VM is discarded and never runs.
// Pages are read straight into guest memory; every frame is checked (protocol.h) before its
// contents are used, and a frame that is not due in the current state is an error.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "migration/compression.h"
#include "migration/protocol.h"
#include "migration/vm_interface.h"

namespace flotilla::migration {

enum class ReceiverState { kHello, kLayout, kMemory, kLoading, kReady, kResumed, kFailed };

const char* receiverStateName(ReceiverState state);

struct ReceiveOptions {
  std::string token;  // the one-time token a sender must present
};

struct ReceiverStats {
  ReceiverState state = ReceiverState::kHello;
  uint64_t pages = 0;       // with data
  uint64_t zero_pages = 0;  // markers
  uint32_t rounds = 0;
  uint64_t bytes_received = 0;
  std::string error;
};

class MigrationReceiver {
 public:
  MigrationReceiver(TargetVm& vm, ReceiveOptions options);

  // OK once the guest runs here; an error (the VM discarded) otherwise.
  absl::Status run(Connection& connection);
  ReceiverStats stats() const;

 private:
  absl::Status receive(Connection& connection);
  absl::Status hello(Connection& connection);
  absl::Status layout(Connection& connection);
  absl::Status pages(Connection& connection, const FrameHeader& header);
  void setState(ReceiverState state);

  TargetVm& vm_;
  const ReceiveOptions options_;
  const Logger log_;
  std::span<uint8_t> memory_;
  std::string device_state_;
  bool have_device_state_ = false;
  uint64_t capabilities_ = 0;  // negotiated at hello
  std::vector<uint64_t> entries_;
  std::vector<iovec> data_;
  std::unique_ptr<Codec> codec_;
  std::vector<uint8_t> compressed_;
  std::vector<uint8_t> decompressed_;

  mutable absl::Mutex mu_;
  ReceiverStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::migration
