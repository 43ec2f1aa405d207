// Helpers of cluster_bench's steps (see bench_util.h).
#include "bench/cluster/bench_util.h"

#include <algorithm>
#include <cmath>

#include "bench/cluster/controller_replicas.h"
#include "common/clock.h"
#include "common/rpc/status.h"
#include "fmt/format.h"

namespace flotilla::bench {

flotilla::v1::VmSpec benchVmSpec(int i) {
  static constexpr uint64_t kMemoryMib[] = {512, 1024, 2048};
  flotilla::v1::VmSpec spec;
  spec.set_vcpus(1 + static_cast<uint32_t>(i % 2));
  spec.set_memory_bytes(kMemoryMib[i % 3] << 20);
  spec.mutable_boot()->set_kernel("/var/lib/flotilla/images/guest.elf");
  spec.mutable_boot()->set_cmdline("console=ttyS0");
  return spec;
}

absl::Status createVm(flotilla::v1::ClusterService::Stub& stub, const std::string& name,
                      const flotilla::v1::VmSpec& spec,
                      const std::map<std::string, std::string>& host_labels) {
  flotilla::v1::CreateVmClusterRequest request;
  request.set_name(name);
  *request.mutable_spec() = spec;
  request.set_start(true);
  for (const auto& [key, value] : host_labels) {
    (*request.mutable_placement()->mutable_host_labels())[key] = value;
  }
  bool retried = false;
  for (int attempt = 0;; ++attempt) {
    auto context = callContext(absl::Seconds(30));
    flotilla::v1::Vm vm;
    grpc::Status status = stub.CreateVm(context.get(), request, &vm);
    if (status.ok()) return absl::OkStatus();
    if (status.error_code() == grpc::StatusCode::ALREADY_EXISTS && retried) {
      return absl::OkStatus();
    }
    const bool transient = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           status.error_code() == grpc::StatusCode::ABORTED ||
                           status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (!transient || attempt >= 20) return fromGrpcStatus(status, "CreateVm " + name);
    retried = true;
    absl::SleepFor(absl::Milliseconds(20 * (attempt + 1)));
  }
}

absl::Status setHostLabels(flotilla::v1::ClusterService::Stub& stub, const std::string& host,
                           const std::map<std::string, std::string>& labels) {
  flotilla::v1::SetLabelsRequest request;
  request.set_name(host);
  for (const auto& [key, value] : labels) (*request.mutable_set())[key] = value;
  auto context = callContext(absl::Seconds(30));
  flotilla::v1::Host response;
  grpc::Status status = stub.SetHostLabels(context.get(), request, &response);
  if (!status.ok()) return fromGrpcStatus(status, "SetHostLabels " + host);
  return absl::OkStatus();
}

absl::Status waitForHosts(flotilla::v1::ClusterService::Stub& stub, int hosts,
                          absl::Duration timeout) {
  const absl::Duration deadline = systemClock().monotonicNow() + timeout;
  int reporting = 0;
  std::string last_error;
  while (systemClock().monotonicNow() < deadline) {
    auto context = callContext(absl::Seconds(30));
    flotilla::v1::ListHostsResponse response;
    grpc::Status status =
        stub.ListHosts(context.get(), flotilla::v1::ListHostsRequest(), &response);
    if (status.ok()) {
      reporting = 0;
      for (const flotilla::v1::Host& host : response.hosts()) {
        const flotilla::v1::HostState state = host.record().state();
        if (host.reporting() && state != flotilla::v1::HOST_STATE_UNREACHABLE &&
            state != flotilla::v1::HOST_STATE_FENCED) {
          ++reporting;
        }
      }
      if (reporting >= hosts) return absl::OkStatus();
    } else {
      last_error = status.error_message();
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  return absl::DeadlineExceededError(
      fmt::format("the controller listed {} of {} simulated hosts as reporting within {}{}",
                  reporting, hosts, absl::FormatDuration(timeout),
                  last_error.empty() ? "" : "; last ListHosts error: " + last_error));
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(p / 100.0 * static_cast<double>(values.size()));
  const size_t index =
      static_cast<size_t>(std::clamp(rank, 1.0, static_cast<double>(values.size()))) - 1;
  return values[index];
}

std::string formatRate(double per_second) {
  return fmt::format("{:.0f}/s", per_second);
}

std::string formatSeconds(double seconds) {
  return fmt::format("{:.2f} s", seconds);
}

std::string formatMs(double milliseconds) {
  return milliseconds < 100 ? fmt::format("{:.1f} ms", milliseconds)
                            : fmt::format("{:.0f} ms", milliseconds);
}

std::string formatRatio(double ratio) {
  return fmt::format("{:.2f}x", ratio);
}

}  // namespace flotilla::bench
