// The details of the selected object as HTML for the main window's detail pane: a host's
// inventory, labels and load; a VM's spec, status, disks and NICs; a migration's figures.
#pragma once

#include <QString>

#include "gui/cluster_store.h"

namespace flotilla::console {

QString hostDetailsHtml(const v1::Host& host, const ClusterStore& store);
QString vmDetailsHtml(const v1::Vm& vm);
QString migrationDetailsHtml(const v1::MigrationRecord& migration);

}  // namespace flotilla::console
