// Human-readable text for the console (see console_format.h).
#include "gui/console_format.h"

namespace flotilla::console {

QString vmStateName(v1::VmState state) {
  switch (state) {
    case v1::VM_STATE_PENDING:
      return QStringLiteral("pending");
    case v1::VM_STATE_CREATING:
      return QStringLiteral("creating");
    case v1::VM_STATE_RUNNING:
      return QStringLiteral("running");
    case v1::VM_STATE_PAUSED:
      return QStringLiteral("paused");
    case v1::VM_STATE_MIGRATING:
      return QStringLiteral("migrating");
    case v1::VM_STATE_STOPPED:
      return QStringLiteral("stopped");
    case v1::VM_STATE_FAILED:
      return QStringLiteral("failed");
    default:
      return QStringLiteral("unknown");
  }
}

QString hostStateName(v1::HostState state) {
  switch (state) {
    case v1::HOST_STATE_READY:
      return QStringLiteral("ready");
    case v1::HOST_STATE_UNREACHABLE:
      return QStringLiteral("unreachable");
    case v1::HOST_STATE_FENCED:
      return QStringLiteral("fenced");
    default:
      return QStringLiteral("unknown");
  }
}

QString severityName(v1::Event::Severity severity) {
  switch (severity) {
    case v1::Event::SEVERITY_INFO:
      return QStringLiteral("info");
    case v1::Event::SEVERITY_WARNING:
      return QStringLiteral("warning");
    case v1::Event::SEVERITY_ERROR:
      return QStringLiteral("error");
    default:
      return QStringLiteral("-");
  }
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
