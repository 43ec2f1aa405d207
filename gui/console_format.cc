// Human-readable text for the console (see console_format.h).
#include "gui/console_format.h"

namespace flotilla::console {

QString vmStateName(v1::VmState state) {
  return enumText(v1::VmState_Name(state), "VM_STATE_");
}

QString hostStateName(v1::HostState state) {
  return enumText(v1::HostState_Name(state), "HOST_STATE_");
}

QString severityName(v1::Event::Severity severity) {
  return enumText(v1::Event::Severity_Name(severity), "SEVERITY_", QStringLiteral("-"));
}

bool migrationActive(const v1::MigrationRecord& migration) {
  switch (migration.phase()) {
    case v1::MIGRATION_PHASE_SUCCEEDED:
    case v1::MIGRATION_PHASE_FAILED:
    case v1::MIGRATION_PHASE_CANCELLED:
      return false;
    default:
      return true;
  }
}

}  // namespace flotilla::console
