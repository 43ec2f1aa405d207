#include "controller/model/cluster_view.h"

#include <algorithm>

namespace flotilla::controller {

bool HostView::ready() const {
  return status.has_value() && record.state() != v1::HOST_STATE_UNREACHABLE &&
         record.state() != v1::HOST_STATE_FENCED;
}

bool HostView::schedulable() const {
  return ready() && !record.cordoned();
}

bool migrationActive(v1::MigrationPhase phase) {
  switch (phase) {
    case v1::MIGRATION_PHASE_PENDING:
    case v1::MIGRATION_PHASE_PREPARING:
    case v1::MIGRATION_PHASE_TRANSFERRING:
    case v1::MIGRATION_PHASE_SWITCHING:
      return true;
    default:
      return false;
  }
}

const v1::MigrationRecord* ClusterView::activeMigration(const std::string& vm) const {
  for (const auto& [name, migration] : migrations) {
    if (migration.vm() == vm && migrationActive(migration.phase())) return &migration;
  }
  return nullptr;
}

uint64_t nextGeneration(uint64_t previous, int64_t now_unix_seconds) {
  return std::max(previous + 1, static_cast<uint64_t>(std::max<int64_t>(now_unix_seconds, 0)));
}

}  // namespace flotilla::controller
