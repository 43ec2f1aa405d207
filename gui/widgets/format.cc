// Human-readable numbers and names for flotilla-console (see format.h).
#include "gui/widgets/format.h"

#include "cli/output.h"

#include <QDateTime>
#include <QLocale>
#include <algorithm>
#include <cmath>
#include <iterator>

namespace flotilla::console {

QString formatBytes(quint64 bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return QStringLiteral("%1 B").arg(bytes);
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  // Three significant digits: "1.25 GiB", "12.5 MiB", "300 MiB". A value that rounds up to
  // 1024 ("1023.97 MiB") moves to the next unit.
  int decimals = value < 10.0 ? 2 : (value < 100.0 ? 1 : 0);
  const double scale = std::pow(10.0, decimals);
  double rounded = std::round(value * scale) / scale;
  if (rounded >= 1024.0 && unit + 1 < std::size(kUnits)) {
    rounded /= 1024.0;
    ++unit;
    decimals = 2;
  }
  QString number = QString::number(rounded, 'f', decimals);
  // "1.50" → "1.5", "2.00" → "2".
  if (number.contains(QLatin1Char('.'))) {
    while (number.endsWith(QLatin1Char('0'))) number.chop(1);
    if (number.endsWith(QLatin1Char('.'))) number.chop(1);
  }
  return number + QLatin1Char(' ') + QLatin1String(kUnits[unit]);
}

QString formatByteRate(double bytes_per_second) {
  if (std::isnan(bytes_per_second) || bytes_per_second < 0) return QStringLiteral("-");
  // Rates near 2^63 B/s do not happen; clamp instead of overflowing llround.
  const double clamped = std::min(bytes_per_second, 9.2e18);
  return formatBytes(static_cast<quint64>(std::llround(clamped))) + QStringLiteral("/s");
}

QString formatPercent(double fraction) {
  if (std::isnan(fraction)) return QStringLiteral("-");
  const double percent = fraction * 100.0;
  if (std::fabs(percent) < 10.0 && percent != 0.0) {
    return QString::number(percent, 'f', 1) + QLatin1Char('%');
  }
  return QString::number(percent, 'f', 0) + QLatin1Char('%');
}

QString formatTimeMillis(qint64 unix_ms) {
  if (unix_ms == 0) return QStringLiteral("-");
  const QDateTime time = QDateTime::fromMSecsSinceEpoch(unix_ms);
  if (time.date() == QDate::currentDate()) return time.toString(QStringLiteral("HH:mm:ss"));
  return time.toString(QStringLiteral("yyyy-MM-dd HH:mm:ss"));
}

QString statusMessage(const absl::Status& status) {
  if (status.ok()) return QStringLiteral("OK");
  const auto message = status.message();
  if (message.empty()) return QString::fromStdString(absl::StatusCodeToString(status.code()));
  return QString::fromUtf8(message.data(), static_cast<qsizetype>(message.size()));
}

QString enumText(std::string_view name, std::string_view prefix, const QString& unknown) {
  const std::string word = cli::enumWord(name, prefix);
  return word == "-" ? unknown : QString::fromStdString(word).toLower();
}

QString migrationPhaseName(v1::MigrationPhase phase) {
  return enumText(v1::MigrationPhase_Name(phase), "MIGRATION_PHASE_");
}

QString drainPhaseName(v1::DrainPhase phase) {
  return enumText(v1::DrainPhase_Name(phase), "DRAIN_PHASE_");
}

QString drainVmStateName(v1::DrainVm::State state) {
  return enumText(v1::DrainVm::State_Name(state), "STATE_");
}

}  // namespace flotilla::console
