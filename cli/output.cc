// Output formats of clusterctl (see output.h).
#include "cli/output.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <set>

#include "absl/time/clock.h"
#include "cli/exit_codes.h"
#include "fmt/format.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "yaml-cpp/yaml.h"

namespace flotilla::cli {
namespace {

namespace pb = google::protobuf;
using Json = nlohmann::ordered_json;

std::string lowercase(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower;
}

// Whether a plain YAML scalar with this text would be read as something other than a string
// (a number, a boolean, null), so that it has to be quoted.
bool readsAsNonString(const std::string& text) {
  if (text.empty()) return true;
  static const std::set<std::string> kWords = {"~",    "null",  "true",  "false", "yes",
                                               "no",   "on",    "off",   "y",     "n",
                                               ".inf", "-.inf", "+.inf", ".nan"};
  if (kWords.count(lowercase(text)) != 0) return true;
  char* end = nullptr;
  std::strtod(text.c_str(), &end);
  if (end == text.c_str() + text.size()) return true;
  return text.starts_with("0o") || text.starts_with("0x");
}

void emitString(YAML::Emitter& out, const std::string& text) {
  if (readsAsNonString(text)) {
    out << YAML::DoubleQuoted << text;
  } else {
    out << text;
  }
}

void emitObject(YAML::Emitter& out, const Json& object, const pb::Descriptor* type);

// One value of `field` (an element, for repeated fields); `field` is null for values that
// are not fields of a known message (maps of a well-known type, ...).
void emitSingle(YAML::Emitter& out, const Json& value, const pb::FieldDescriptor* field) {
  if (value.is_object()) {
    const pb::Descriptor* type = field != nullptr ? field->message_type() : nullptr;
    emitObject(out, value, type);
  } else if (value.is_array()) {
    if (value.empty()) {
      out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
      return;
    }
    out << YAML::BeginSeq;
    for (const Json& element : value) emitSingle(out, element, nullptr);
    out << YAML::EndSeq;
  } else if (value.is_string()) {
    const std::string text = value.get<std::string>();
    const bool integer =
        field != nullptr && (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64 ||
                             field->cpp_type() == pb::FieldDescriptor::CPPTYPE_UINT64);
    // Protobuf's JSON mapping writes 64-bit integers as strings; YAML has no such limit.
    if (integer || (field != nullptr && field->cpp_type() == pb::FieldDescriptor::CPPTYPE_ENUM)) {
      out << text;
    } else {
      emitString(out, text);
    }
  } else if (value.is_boolean()) {
    out << value.get<bool>();
  } else if (value.is_number()) {
    out << value.dump();
  } else {
    out << YAML::Null;
  }
}

void emitObject(YAML::Emitter& out, const Json& object, const pb::Descriptor* type) {
  if (object.empty()) {
    out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
    return;
  }
  out << YAML::BeginMap;
  for (const auto& [key, value] : object.items()) {
    out << YAML::Key;
    emitString(out, key);
    out << YAML::Value;
    const pb::FieldDescriptor* field = type != nullptr ? type->FindFieldByName(key) : nullptr;
    if (field != nullptr && field->is_map() && value.is_object()) {
      const pb::FieldDescriptor* value_field = field->message_type()->FindFieldByName("value");
      if (value.empty()) {
        out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
        continue;
      }
      out << YAML::BeginMap;
      for (const auto& [map_key, map_value] : value.items()) {
        out << YAML::Key;
        emitString(out, map_key);
        out << YAML::Value;
        emitSingle(out, map_value, value_field);
      }
      out << YAML::EndMap;
    } else if (field != nullptr && field->is_repeated() && value.is_array()) {
      if (value.empty()) {
        out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
        continue;
      }
      out << YAML::BeginSeq;
      for (const Json& element : value) emitSingle(out, element, field);
      out << YAML::EndSeq;
    } else {
      emitSingle(out, value, field);
    }
  }
  out << YAML::EndMap;
}

}  // namespace

absl::StatusOr<OutputFormat> parseOutputFormat(std::string_view text) {
  if (text == "table" || text.empty()) return OutputFormat::kTable;
  if (text == "wide") return OutputFormat::kWide;
  if (text == "json") return OutputFormat::kJson;
  if (text == "yaml") return OutputFormat::kYaml;
  if (text == "name") return OutputFormat::kName;
  return usageError(
      fmt::format("-o {}: unknown output format; use table, wide, json, yaml or name", text));
}

std::string toJson(const google::protobuf::Message& message, bool pretty) {
  pb::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string text;
  auto status = pb::util::MessageToJsonString(message, &text, options);
  if (!status.ok()) {
    // Only invalid UTF-8 in a string field gets here; say so rather than print half a document.
    return fmt::format("{{\"error\": \"cannot print {} as JSON: {}\"}}", message.GetTypeName(),
                       std::string(status.message()));
  }
  if (!pretty) return text;
  // Protobuf indents by one space; re-indent by two (the field order is kept).
  const Json tree = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (tree.is_discarded()) return text + "\n";
  return tree.dump(2) + "\n";
}

std::string toYaml(const google::protobuf::Message& message) {
  const Json tree = Json::parse(toJson(message, false), nullptr, /*allow_exceptions=*/false);
  YAML::Emitter out;
  out.SetIndent(2);
  emitObject(out, tree, message.GetDescriptor());
  return std::string(out.c_str()) + "\n";
}

void printMessage(std::ostream& out, const google::protobuf::Message& message,
                  OutputFormat format) {
  if (format == OutputFormat::kYaml) {
    out << toYaml(message);
  } else {
    out << toJson(message, true);
  }
}

void Table::print(std::ostream& out) const {
  std::vector<size_t> widths(headers_.size(), 0);
  auto measure = [&widths](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], cells[i].size());
    }
  };
  measure(headers_);
  for (const auto& row : rows_) measure(row);
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string cell = i < cells.size() ? cells[i] : std::string();
      text += cell;
      if (i + 1 < widths.size()) text += std::string(widths[i] - cell.size() + 3, ' ');
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    out << text << "\n";
  };
  line(headers_);
  for (const auto& row : rows_) line(row);
}

std::string humanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "K", "M", "G", "T", "P"};
  size_t unit = 0;
  double value = static_cast<double>(bytes);
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  if (unit == 0) return fmt::format("{}B", bytes);
  // Whole numbers without a decimal ("256M"), others with one ("1.5G"); 1023.96M is "1G".
  double rounded = static_cast<double>(static_cast<uint64_t>(value * 10.0 + 0.5)) / 10.0;
  if (rounded >= 1024.0 && unit + 1 < std::size(kUnits)) {
    rounded /= 1024.0;
    ++unit;
  }
  if (rounded == static_cast<double>(static_cast<uint64_t>(rounded))) {
    return fmt::format("{}{}", static_cast<uint64_t>(rounded), kUnits[unit]);
  }
  return fmt::format("{:.1f}{}", rounded, kUnits[unit]);
}

std::string formatAge(absl::Duration age) {
  if (age < absl::ZeroDuration()) age = absl::ZeroDuration();
  const int64_t seconds = absl::ToInt64Seconds(age);
  if (seconds < 120) return fmt::format("{}s", seconds);
  if (seconds < 120 * 60) return fmt::format("{}m", seconds / 60);
  if (seconds < 48 * 3600) return fmt::format("{}h", seconds / 3600);
  return fmt::format("{}d", seconds / 86400);
}

std::string ageOf(const google::protobuf::Timestamp& created, absl::Time now) {
  if (created.seconds() == 0 && created.nanos() == 0) return "-";
  return formatAge(now - absl::FromUnixSeconds(created.seconds()));
}

std::string ageOfMillis(int64_t unix_ms, absl::Time now) {
  if (unix_ms == 0) return "-";
  return formatAge(now - absl::FromUnixMillis(unix_ms));
}

std::string formatTimeMillis(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

std::string formatTimestamp(const google::protobuf::Timestamp& timestamp) {
  if (timestamp.seconds() == 0 && timestamp.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(timestamp.seconds()),
                          absl::UTCTimeZone());
}

std::string enumWord(std::string_view name, std::string_view prefix) {
  if (name.starts_with(prefix)) name.remove_prefix(prefix.size());
  if (name.empty() || name == "UNSPECIFIED") return "-";
  std::string word;
  bool upper = true;
  for (char c : name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    word += upper ? c : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    upper = false;
  }
  return word;
}

}  // namespace flotilla::cli
