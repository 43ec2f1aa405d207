// Numbers, times and enum values of the API as flotilla-console shows them: binary units
// ("1.5 GiB", "12.3 MiB/s"), percentages, lower-case phase names.
#pragma once

#include <QString>
#include <QtGlobal>
#include <string_view>

#include "absl/status/status.h"
#include "flotilla/v1/cluster_state.pb.h"

namespace flotilla::console {

// "512 B", "1.5 KiB", "300 MiB", "1.25 GiB" (binary units; three significant digits).
QString formatBytes(quint64 bytes);
// formatBytes per second: "12.3 MiB/s". Negative or NaN: "-".
QString formatByteRate(double bytes_per_second);
// A fraction 0..1 as "42%" (one decimal below 10%: "4.2%"). NaN: "-".
QString formatPercent(double fraction);
// Local time "HH:mm:ss" (with the date when it is not today); "-" for 0.
QString formatTimeMillis(qint64 unix_ms);

// An enum value's protobuf name as one lower-case word, as clusterctl spells it but in lower
// case ("MIGRATION_PHASE_TRANSFERRING", "MIGRATION_PHASE_" → "transferring"); `unknown` for
// the unspecified value and values this build does not know.
QString enumText(std::string_view name, std::string_view prefix,
                 const QString& unknown = QStringLiteral("unknown"));

// "pending", "transferring", ...; "unknown" for values this build does not know.
QString migrationPhaseName(v1::MigrationPhase phase);
QString drainPhaseName(v1::DrainPhase phase);
QString drainVmStateName(v1::DrainVm::State state);

// A QString from protobuf's std::string (UTF-8).
inline QString fromProto(const std::string& text) {
  return QString::fromStdString(text);
}
// A status's message (without its code) for a label; the code's name when it has no message.
QString statusMessage(const absl::Status& status);

}  // namespace flotilla::console
