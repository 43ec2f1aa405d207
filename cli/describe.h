// `clusterctl describe host|vm|migration|drain NAME`: the object's spec and status for
// people, with the reasons the controller recorded and the object's recent events.
#pragma once

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cli/client.h"
#include "cli/views.h"

namespace flotilla::cli {

// Kinds that can be described: host, vm, migration, drain (others are a usage error).
absl::Status describeObject(ClusterClient& client, Kind kind, const std::string& name,
                            std::ostream& out, absl::Time now);

// The text of each kind (for tests and for describeObject).
void describeHost(const v1::Host& host, const v1::DrainRecord* drain, std::ostream& out,
                  absl::Time now);
void describeVm(const v1::Vm& vm, std::ostream& out, absl::Time now);
void describeMigration(const v1::MigrationRecord& migration, std::ostream& out, absl::Time now);
void describeDrain(const v1::DrainRecord& drain, std::ostream& out, absl::Time now);
void describeEvents(const v1::ListEventsResponse& events, std::ostream& out, absl::Time now);

}  // namespace flotilla::cli
