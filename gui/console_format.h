// Human-readable text for the console's tables and panes, beyond gui/widgets/format.h
// (sizes, rates, percentages, migration and drain phases): VM and host states, load figures.
#pragma once

#include <QString>
#include <string>

#include "flotilla/v1/cluster.pb.h"
#include "gui/widgets/format.h"
#include "gui/widgets/migration_progress_delegate.h"  // migrationProgress()

namespace flotilla::console {

QString vmStateName(v1::VmState state);      // "running"
QString hostStateName(v1::HostState state);  // "ready"
QString severityName(v1::Event::Severity severity);

// Whether a migration still runs (not succeeded, failed or cancelled).
bool migrationActive(const v1::MigrationRecord& migration);

}  // namespace flotilla::console
