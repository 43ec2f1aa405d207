// Checks of ClusterService requests that need no cluster state: names, sizes, ranges. Each
// error names the field and the fix.
#pragma once

#include "absl/status/status.h"
#include "flotilla/v1/cluster.pb.h"

namespace flotilla::controller {

absl::Status validateVmRequest(const v1::CreateVmClusterRequest& request);
absl::Status validateNetwork(const v1::NetworkRecord& network);
absl::Status validatePool(const v1::PoolRecord& pool);
absl::Status validateVolumeRequest(const v1::CreateVolumeRequest& request);

}  // namespace flotilla::controller
