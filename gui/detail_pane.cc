// The detail pane's HTML (see detail_pane.h). Every value is escaped: names and messages come
// from the cluster.
#include "gui/detail_pane.h"

#include <QStringList>

#include "gui/console_format.h"
#include "gui/widgets/host_load_chart.h"

namespace flotilla::console {
namespace {

// A two-column table of label → value rows, values escaped.
class Html {
 public:
  explicit Html(const QString& title) {
    text_ = QStringLiteral("<h3>%1</h3>").arg(title.toHtmlEscaped());
  }
  void section(const QString& title) {
    close();
    text_ += QStringLiteral("<h4>%1</h4><table cellspacing='2'>").arg(title.toHtmlEscaped());
    open_ = true;
  }
  void row(const QString& label, const QString& value) {
    if (!open_) section(QString());
    text_ += QStringLiteral("<tr><td><b>%1</b></td><td>%2</td></tr>")
                 .arg(label.toHtmlEscaped(), value.toHtmlEscaped());
  }
  QString finish() {
    close();
    return text_;
  }

 private:
  void close() {
    if (open_) text_ += QStringLiteral("</table>");
    open_ = false;
  }
  QString text_;
  bool open_ = false;
};

QString labelsText(const google::protobuf::Map<std::string, std::string>& labels) {
  QStringList parts;
  for (const auto& [key, value] : labels)
    parts << fromProto(key) + QLatin1Char('=') + fromProto(value);
  parts.sort();
  return parts.isEmpty() ? QStringLiteral("-") : parts.join(QStringLiteral(", "));
}

QString yesNo(bool value) {
  return value ? QStringLiteral("yes") : QStringLiteral("no");
}

}  // namespace

QString hostDetailsHtml(const v1::Host& host, const ClusterStore& store) {
  Html html(QStringLiteral("Host %1").arg(fromProto(host.name())));
  const v1::HostRecord& record = host.record();
  const v1::HostStatus& status = host.status();
  html.section(QStringLiteral("State"));
  html.row(QStringLiteral("State"), hostStateName(record.state()));
  html.row(QStringLiteral("Since"), formatTimeMillis(record.state_since_unix_ms()));
  html.row(QStringLiteral("Reporting"), yesNo(host.reporting()));
  html.row(QStringLiteral("Cordoned"),
           record.cordoned() ? QStringLiteral("yes: %1").arg(fromProto(record.cordon_reason()))
                             : QStringLiteral("no"));
  if (const v1::DrainRecord* drain = store.drain(fromProto(host.name())); drain != nullptr) {
    html.row(QStringLiteral("Drain"), drainPhaseName(drain->phase()));
  }
  html.row(QStringLiteral("Labels"), labelsText(record.meta().labels()));
  html.section(QStringLiteral("Inventory"));
  html.row(QStringLiteral("CPUs"), QStringLiteral("%1 × %2")
                                       .arg(status.inventory().cpus())
                                       .arg(fromProto(status.inventory().cpu_model_name())));
  html.row(QStringLiteral("Memory"), formatBytes(status.inventory().memory_bytes()));
  QStringList pools, networks;
  for (const std::string& pool : status.inventory().pools()) pools << fromProto(pool);
  for (const std::string& network : status.inventory().networks()) networks << fromProto(network);
  html.row(QStringLiteral("Pools"),
           pools.isEmpty() ? QStringLiteral("-") : pools.join(QStringLiteral(", ")));
  html.row(QStringLiteral("Networks"),
           networks.isEmpty() ? QStringLiteral("-") : networks.join(QStringLiteral(", ")));
  html.row(QStringLiteral("Agent"),
           QStringLiteral("%1 (%2)").arg(fromProto(status.agent_address()),
                                         fromProto(status.agent_version())));
  html.section(QStringLiteral("Load"));
  html.row(QStringLiteral("CPU busy"), formatPercent(status.load().cpu_busy()));
  html.row(QStringLiteral("Load average (1 min)"),
           QString::number(status.load().load_average_1m(), 'f', 2));
  html.row(QStringLiteral("Memory available"), formatBytes(status.load().memory_available_bytes()));
  html.row(QStringLiteral("Memory used"), formatPercent(memoryUsedFraction(status).value_or(0.0)));
  html.row(QStringLiteral("VMs running"), QString::number(status.load().vms_running()));
  html.row(QStringLiteral("VM memory"), formatBytes(status.load().vm_memory_bytes()));
  html.row(QStringLiteral("Reported"), formatTimeMillis(status.updated_unix_ms()));
  return html.finish();
}

QString vmDetailsHtml(const v1::Vm& vm) {
  Html html(QStringLiteral("VM %1").arg(fromProto(vm.name())));
  const v1::VmSpec& spec = vm.record().spec();
  const v1::VmStatus& status = vm.status();
  html.section(QStringLiteral("Status"));
  html.row(QStringLiteral("State"), vmStateName(status.state()));
  html.row(QStringLiteral("Wanted"),
           vm.record().want_running() ? QStringLiteral("running") : QStringLiteral("stopped"));
  html.row(QStringLiteral("Host"),
           status.host().empty() ? QStringLiteral("-") : fromProto(status.host()));
  if (!status.message().empty()) html.row(QStringLiteral("Message"), fromProto(status.message()));
  if (!status.migration().empty())
    html.row(QStringLiteral("Migration"), fromProto(status.migration()));
  html.row(QStringLiteral("Since"), formatTimeMillis(status.state_since_unix_ms()));
  html.row(QStringLiteral("Generation"), QString::number(status.generation()));
  html.row(QStringLiteral("HA restarts"), QString::number(status.restarts()));
  for (const std::string& reason : status.unschedulable_reasons()) {
    html.row(QStringLiteral("Unschedulable"), fromProto(reason));
  }
  html.section(QStringLiteral("Spec"));
  html.row(QStringLiteral("vCPUs"), QString::number(spec.vcpus()));
  html.row(QStringLiteral("Memory"), formatBytes(spec.memory_bytes()));
  html.row(QStringLiteral("CPU model"),
           spec.cpu_model().empty() ? QStringLiteral("host") : fromProto(spec.cpu_model()));
  html.row(QStringLiteral("Kernel"), fromProto(spec.boot().kernel()));
  if (!spec.boot().cmdline().empty())
    html.row(QStringLiteral("Command line"), fromProto(spec.boot().cmdline()));
  html.row(QStringLiteral("HA"), yesNo(spec.ha()));
  html.row(QStringLiteral("Labels"), labelsText(vm.record().meta().labels()));
  html.section(QStringLiteral("Disks"));
  if (spec.disks().empty()) html.row(QStringLiteral("-"), QStringLiteral("none"));
  for (const v1::DiskSpec& disk : spec.disks()) {
    html.row(fromProto(disk.pool()) + QLatin1Char('/') + fromProto(disk.volume()),
             disk.read_only() ? QStringLiteral("read-only") : QStringLiteral("read-write"));
  }
  html.section(QStringLiteral("NICs"));
  if (spec.nics().empty()) html.row(QStringLiteral("-"), QStringLiteral("none"));
  for (const v1::NicSpec& nic : spec.nics()) {
    html.row(fromProto(nic.network()),
             (nic.mac().empty() ? QStringLiteral("MAC allocated") : fromProto(nic.mac())) +
                 (nic.offload() ? QStringLiteral(", offload") : QString()));
  }
  return html.finish();
}

QString migrationDetailsHtml(const v1::MigrationRecord& migration) {
  Html html(QStringLiteral("Migration %1").arg(fromProto(migration.meta().name())));
  html.section(QStringLiteral("Migration"));
  html.row(QStringLiteral("VM"), fromProto(migration.vm()));
  html.row(
      QStringLiteral("Source → target"),
      QStringLiteral("%1 → %2").arg(fromProto(migration.source()),
                                    migration.target().empty() ? QStringLiteral("(scheduler)")
                                                               : fromProto(migration.target())));
  html.row(QStringLiteral("Mode"), migration.mode() == v1::MIGRATION_MODE_COLD
                                       ? QStringLiteral("cold")
                                       : QStringLiteral("live"));
  html.row(QStringLiteral("Phase"), migrationPhaseName(migration.phase()));
  if (!migration.message().empty())
    html.row(QStringLiteral("Message"), fromProto(migration.message()));
  if (!migration.drain().empty())
    html.row(QStringLiteral("For the drain of"), fromProto(migration.drain()));
  html.row(QStringLiteral("Progress"), formatPercent(migrationProgress(migration)));
  html.row(QStringLiteral("Sent"), formatBytes(migration.bytes_sent()));
  html.row(QStringLiteral("Remaining"), formatBytes(migration.remaining_bytes()));
  html.row(QStringLiteral("Dirty rate"), formatByteRate(migration.dirty_rate_bytes()));
  html.row(QStringLiteral("Bandwidth"), formatByteRate(migration.bandwidth_bytes()));
  html.row(QStringLiteral("Rounds"), QString::number(migration.rounds()));
  if (migration.downtime_ms() > 0) {
    html.row(QStringLiteral("Downtime"),
             QStringLiteral("%1 ms").arg(migration.downtime_ms(), 0, 'f', 1));
  }
  html.row(QStringLiteral("Started"), formatTimeMillis(migration.started_unix_ms()));
  html.row(QStringLiteral("Finished"), formatTimeMillis(migration.finished_unix_ms()));
  return html.finish();
}

}  // namespace flotilla::console
