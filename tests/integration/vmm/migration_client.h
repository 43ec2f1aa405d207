// Starting a live migration from a test: a flotilla-vmm --incoming target that listens, and
// MigrateSend on the source's API.
#pragma once

#include <cstdint>
#include <string>

#include "fmt/format.h"
#include "gtest/gtest.h"
#include "tests/support/vmm_process.h"

namespace flotilla::vmm {

struct MigrationOptions {
  std::string token{};
  uint32_t downtime_limit_ms = 50;
  uint64_t bandwidth_limit = 0;  // bytes per second; 0: none
  bool cold = false;
  std::string compression{};  // "": none
  uint32_t streams = 1;
  bool with_disks = false;  // with cold
  uint32_t max_rounds = 0;  // 0: the VMM's default
  bool auto_converge = false;
};

// Waits until the target VMM listens for its migration (it logs so).
inline void expectListening(testing::VmmProcess& target) {
  auto listening = target.waitForLog("waiting for an incoming migration", absl::Seconds(10));
  EXPECT_TRUE(listening.ok()) << listening.status();
}

// MigrateSend from `source` to the target listening on 127.0.0.1:`port`.
inline grpc::Status sendMigration(testing::VmmProcess& source, uint16_t port,
                                  const MigrationOptions& options) {
  auto api = source.api();
  if (!api.ok()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, std::string(api.status().message()));
  }
  flotilla::v1::MigrateSendRequest request;
  request.set_address(fmt::format("127.0.0.1:{}", port));
  request.set_token(options.token);
  request.set_downtime_limit_ms(options.downtime_limit_ms);
  request.set_bandwidth_limit_bytes(options.bandwidth_limit);
  request.set_cold(options.cold);
  request.set_compression(options.compression);
  request.set_streams(options.streams);
  request.set_with_disks(options.with_disks);
  request.set_max_rounds(options.max_rounds);
  request.set_auto_converge(options.auto_converge);
  flotilla::v1::MigrateSendResponse response;
  grpc::ClientContext context;
  return (*api)->MigrateSend(&context, request, &response);
}

}  // namespace flotilla::vmm
