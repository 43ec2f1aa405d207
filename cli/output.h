// Output of clusterctl: -o table|wide|json|yaml|name, aligned tables, protobuf messages as JSON
// (protobuf's JSON mapping, proto field names) or YAML (the same tree, with 64-bit integers as
// numbers), and the short human forms of sizes, ages and enum values used in tables.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"

namespace flotilla::cli {

enum class OutputFormat { kTable, kWide, kJson, kYaml, kName };

// "table", "wide", "json", "yaml" or "name"; anything else is a usage error.
absl::StatusOr<OutputFormat> parseOutputFormat(std::string_view text);

// The message in protobuf's JSON mapping with proto field names and every field (defaults
// included); `pretty`: indented, else one line.
std::string toJson(const google::protobuf::Message& message, bool pretty = true);

// The same tree as toJson as a YAML document (block style, 64-bit integers as numbers,
// strings that would read as something else quoted), ending with a newline.
std::string toYaml(const google::protobuf::Message& message);

// Prints `message` as JSON or YAML (`format` is kJson or kYaml).
void printMessage(std::ostream& out, const google::protobuf::Message& message, OutputFormat format);

// Columns separated by three spaces, each as wide as its widest cell, like kubectl.
class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void addRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  size_t rows() const { return rows_.size(); }
  void print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// A byte size for people: "256M", "1.5G", "900K", "12B" (binary units, one decimal at most).
std::string humanBytes(uint64_t bytes);

// An age like kubectl's: "45s", "12m", "5h", "3d"; "-" for a zero or unknown start.
std::string formatAge(absl::Duration age);
std::string ageOf(const google::protobuf::Timestamp& created, absl::Time now);
std::string ageOfMillis(int64_t unix_ms, absl::Time now);

// "2026-11-22T12:00:00Z" (UTC); "-" for 0.
std::string formatTimeMillis(int64_t unix_ms);
std::string formatTimestamp(const google::protobuf::Timestamp& timestamp);

// An enum value's name without its type prefix, in CamelCase: VM_STATE_RUNNING → "Running";
// "-" for *_UNSPECIFIED. `prefix` is "VM_STATE_".
std::string enumWord(std::string_view name, std::string_view prefix);

// `text`, or "-" when it is empty.
inline std::string orDash(std::string_view text) {
  return text.empty() ? std::string("-") : std::string(text);
}

// "k=v,k2=v2" (sorted by key); "-" when empty.
template <typename Map>
std::string formatLabels(const Map& labels) {
  std::map<std::string, std::string> sorted(labels.begin(), labels.end());
  std::string text;
  for (const auto& [key, value] : sorted) {
    if (!text.empty()) text += ",";
    text += key + "=" + value;
  }
  return orDash(text);
}

}  // namespace flotilla::cli
