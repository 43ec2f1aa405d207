// Samples and the result table (see report.h).
#include "bench/report.h"

#include <algorithm>
#include <cmath>
#include <string_view>

#include "fmt/format.h"

namespace flotilla::bench {

double Samples::median() const {
  if (values_.empty()) return 0;
  std::vector<double> sorted = values_;
  std::sort(sorted.begin(), sorted.end());
  const size_t middle = sorted.size() / 2;
  if (sorted.size() % 2 == 1) return sorted[middle];
  return (sorted[middle - 1] + sorted[middle]) / 2;
}

double Samples::p90() const {
  if (values_.empty()) return 0;
  std::vector<double> sorted = values_;
  std::sort(sorted.begin(), sorted.end());
  // Nearest rank: ceil(0.9 n), counted from 1.
  const auto rank = static_cast<size_t>(std::ceil(0.9 * static_cast<double>(sorted.size())));
  return sorted[std::max<size_t>(rank, 1) - 1];
}

std::string formatFigure(double value, const std::string& unit) {
  const double magnitude = std::fabs(value);
  std::string number;
  if (unit.empty() && value == std::floor(value)) {
    number = fmt::format("{:.0f}", value);  // a count: "3", not "3.00"
  } else if (magnitude >= 100) {
    number = fmt::format("{:.0f}", value);
  } else if (magnitude >= 10) {
    number = fmt::format("{:.1f}", value);
  } else {
    number = fmt::format("{:.2f}", value);
  }
  return unit.empty() ? number : number + " " + unit;
}

std::string formatRatio(const Row& row) {
  if (row.flotilla.empty() || row.qemu.empty() || row.qemu.median() == 0) return "-";
  return fmt::format("{:.2f}x", row.flotilla.median() / row.qemu.median());
}

std::string formatTable(const std::vector<Section>& sections) {
  constexpr size_t kFigure = 12;
  size_t label = std::string_view("measurement").size();
  for (const Section& section : sections) {
    for (const Row* row : section.rows) label = std::max(label, row->label.size() + 2);
  }
  auto line = [&](std::string_view first, const std::string& flotilla,
                  const std::string& flotilla_p90, const std::string& qemu,
                  const std::string& qemu_p90, const std::string& ratio) {
    return fmt::format("{:<{}} {:>{}} {:>{}} {:>{}} {:>{}} {:>14}\n", first, label, flotilla,
                       kFigure, flotilla_p90, kFigure, qemu, kFigure, qemu_p90, kFigure, ratio);
  };
  std::string text = line("measurement", "Flotilla med", "p90", "QEMU med", "p90", "Flotilla/QEMU");
  text += std::string(label + 4 * (kFigure + 1) + 15, '-') + "\n";
  for (const Section& section : sections) {
    text += section.title + "\n";
    for (const Row* row : section.rows) {
      auto figure = [&](const Samples& samples, bool p90) {
        if (samples.empty()) return std::string("-");
        return formatFigure(p90 ? samples.p90() : samples.median(), row->unit);
      };
      text += line("  " + row->label, figure(row->flotilla, false), figure(row->flotilla, true),
                   figure(row->qemu, false), figure(row->qemu, true), formatRatio(*row));
    }
    for (const std::string& note : section.notes) text += "    " + note + "\n";
  }
  return text;
}

}  // namespace flotilla::bench
