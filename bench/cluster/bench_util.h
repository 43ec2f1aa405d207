// Helpers shared by cluster_bench's steps: the VMs it creates, ClusterService calls with
// retries, figures and their formatting.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "flotilla/v1/cluster.grpc.pb.h"

namespace flotilla::bench {

// The spec of the i-th benchmark VM: 1 or 2 vCPUs, 512 MiB, 1 GiB or 2 GiB, the simulator's
// kernel path (nothing boots).
flotilla::v1::VmSpec benchVmSpec(int i);

// ClusterService.CreateVm(start=true), retried while the outcome is unknown or a conflict
// asks for it (UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED); ALREADY_EXISTS after such a retry
// means the first attempt went through.
absl::Status createVm(flotilla::v1::ClusterService::Stub& stub, const std::string& name,
                      const flotilla::v1::VmSpec& spec,
                      const std::map<std::string, std::string>& host_labels = {});

// ClusterService.SetHostLabels(name, set).
absl::Status setHostLabels(flotilla::v1::ClusterService::Stub& stub, const std::string& host,
                           const std::map<std::string, std::string>& labels);

// Waits until ListHosts shows `hosts` hosts reporting and not Unreachable (the controller saw
// every agent).
absl::Status waitForHosts(flotilla::v1::ClusterService::Stub& stub, int hosts,
                          absl::Duration timeout);

// The nearest-rank percentile (0..100) of `values`; 0 when empty.
double percentile(std::vector<double> values, double p);

std::string formatRate(double per_second);  // "2345/s"
std::string formatSeconds(double seconds);  // "1.23 s"
std::string formatMs(double milliseconds);  // "12.3 ms"
std::string formatRatio(double ratio);      // "0.46x"

}  // namespace flotilla::bench
