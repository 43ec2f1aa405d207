// Typed reading of YAML configuration files with errors that name the file, line, key and
// what was expected (see config.h). yaml-cpp throws; nothing thrown leaves this file.
#include "common/config.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "common/config_scalars.h"
#include "common/files.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "common/units.h"
#include "fmt/format.h"

namespace flotilla {
namespace config_internal {

// A place in the document, 0-based like yaml-cpp's Mark; -1 when unknown.
struct Position {
  int line = -1;
  int column = -1;
};

struct MappingState {
  std::string path;
  YAML::Node node;       // the mapping; meaningful only when `present`
  bool present = false;  // false for a missing optional child: every key is missing
  bool silent = false;   // an error about this node was already reported: reads do nothing
  Position position;     // of the mapping, or of the nearest enclosing one when absent
  std::set<std::string, std::less<>> asked;
};

struct Problem {
  Position position;
  std::string text;  // without the "source:line:column: " prefix
};

struct DocumentState {
  DocumentState(std::string source_name, const YAML::Node& root_node)
      : source(std::move(source_name)), root(root_node) {}

  void report(Position where, std::string text) {
    problems.push_back(Problem{where, std::move(text)});
  }

  std::string source;
  YAML::Node root;
  std::vector<Problem> problems;
  // Every mapping read from, by path. Two different mappings can share a path (a key that
  // contains '.'), hence the vector; the same mapping read twice shares one MappingState.
  std::map<std::string, std::vector<std::shared_ptr<MappingState>>, std::less<>> mappings;
};

}  // namespace config_internal

namespace {

using config_internal::DocumentState;
using config_internal::MappingState;
using config_internal::Position;
using config_internal::Problem;

using config_internal::describe;
using config_internal::kMaxQuoted;
using config_internal::Mismatch;
using config_internal::printable;
using config_internal::toBool;
using config_internal::toByteSize;
using config_internal::toDouble;
using config_internal::toDuration;
using config_internal::toInteger;
using config_internal::toString;

constexpr size_t kMaxProblems = 100;
constexpr size_t kMaxFileBytes = size_t{16} << 20;

// yaml-cpp's YAML::Node::operator= rebinds the node it refers to inside the document (it does
// not just copy the handle), so this file only ever copy-constructs nodes, never assigns them.
struct Entry {
  YAML::Node key;
  YAML::Node value;
};

Position positionOf(const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0 || mark.column < 0) return {};
  return {mark.line, mark.column};
}

Position positionOf(const YAML::Node& node) {
  return positionOf(node.Mark());
}

// yaml-cpp marks an empty value ("key:" followed by a newline) at the next token, often on the
// next line, so errors about a null value point at its key instead.
Position valuePosition(const Entry& entry) {
  return entry.value.IsNull() ? positionOf(entry.key) : positionOf(entry.value);
}

std::string at(const std::string& source, Position where) {
  if (where.line < 0) return source;
  return fmt::format("{}:{}:{}", source, where.line + 1, where.column + 1);
}

std::string joinPath(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return fmt::format("{}.{}", parent, key);
}

std::optional<Entry> findEntry(const YAML::Node& mapping, std::string_view key) {
  for (YAML::const_iterator it = mapping.begin(); it != mapping.end(); ++it) {
    if (it->first.IsScalar() && it->first.Scalar() == key) return Entry{it->first, it->second};
  }
  return std::nullopt;
}

// Marks `key` as asked for and returns its entry; reports a missing required key.
std::optional<Entry> lookup(DocumentState& doc, MappingState& mapping, std::string_view key,
                            bool required) {
  mapping.asked.emplace(key);
  std::optional<Entry> entry;
  if (mapping.present) entry = findEntry(mapping.node, key);
  if (!entry && required) {
    doc.report(mapping.position,
               fmt::format("missing required key '{}'", joinPath(mapping.path, key)));
  }
  return entry;
}

std::shared_ptr<MappingState> mappingAt(DocumentState& doc, const std::string& path,
                                        const YAML::Node& node) {
  std::vector<std::shared_ptr<MappingState>>& same_path = doc.mappings[path];
  for (const std::shared_ptr<MappingState>& known : same_path) {
    if (known->node.is(node)) return known;
  }
  auto state = std::make_shared<MappingState>(MappingState{.path = path,
                                                           .node = node,
                                                           .present = true,
                                                           .silent = false,
                                                           .position = positionOf(node),
                                                           .asked = {}});
  same_path.push_back(state);
  return state;
}

std::shared_ptr<MappingState> absentMapping(const std::string& path, Position where, bool silent) {
  auto state = std::make_shared<MappingState>();
  state->path = path;
  state->silent = silent;
  state->position = where;
  return state;
}

// The node for a nested mapping: null reads as an empty mapping; anything else but a mapping
// is reported, and the node stays silent.
std::shared_ptr<MappingState> childMapping(DocumentState& doc, const std::string& path,
                                           const YAML::Node& value, Position where) {
  if (value.IsMap()) return mappingAt(doc, path, value);
  if (!value.IsNull()) {
    doc.report(where, fmt::format("key '{}': expected a mapping, found {}", path, describe(value)));
  }
  return absentMapping(path, where, !value.IsNull());
}

// Runs a reader body unless the node is silent or moved-from; an exception (yaml-cpp's, or
// bad_alloc) becomes a recorded problem.
template <typename Fn>
void guarded(DocumentState* doc, MappingState* mapping, Fn&& body) noexcept {
  if (doc == nullptr || mapping == nullptr || mapping->silent) return;
  try {
    body();
  } catch (const std::exception& e) {  // If reporting throws too (out of memory), terminate.
    doc->report({}, fmt::format("internal error while reading '{}': {}", mapping->path,
                                printable(e.what(), 200)));
  }
}

template <typename T, typename Convert>
void readValue(DocumentState* doc, MappingState* mapping, std::string_view key, bool required,
               T& out, Convert convert) noexcept {
  guarded(doc, mapping, [&] {
    std::optional<Entry> entry = lookup(*doc, *mapping, key, required);
    if (!entry) return;
    T value{};
    if (Mismatch mismatch = convert(entry->value, value)) {
      doc->report(valuePosition(*entry),
                  fmt::format("key '{}': {}", joinPath(mapping->path, key), *mismatch));
      return;
    }
    out = std::move(value);
  });
}

// Appends a problem for every key of `mapping` that no reader asked for, that repeats an
// earlier key, or that is not a string.
void checkKeys(const MappingState& mapping, std::vector<Problem>& problems) {
  std::map<std::string, Position, std::less<>> seen;
  std::string where =
      mapping.path.empty() ? "at the top level" : fmt::format("in '{}'", mapping.path);
  for (YAML::const_iterator it = mapping.node.begin(); it != mapping.node.end(); ++it) {
    // A copy: `it->` returns a proxy that dies at the end of the statement.
    const YAML::Node key = it->first;
    Position position = positionOf(key);
    if (!key.IsScalar()) {
      problems.push_back(
          {position, fmt::format("{}: a key must be a string, found {}", where, describe(key))});
      continue;
    }
    std::string path = printable(joinPath(mapping.path, key.Scalar()), 2 * kMaxQuoted);
    auto [first, inserted] = seen.emplace(key.Scalar(), position);
    if (!inserted) {
      problems.push_back({position, fmt::format("duplicate key '{}' (first at line {})", path,
                                                first->second.line + 1)});
      continue;
    }
    if (mapping.asked.contains(key.Scalar())) continue;
    std::string text = fmt::format("unknown key '{}'", path);
    if (key.Scalar() == "<<") text += " (YAML merge keys are not supported)";
    if (mapping.asked.empty()) {
      text += "; no keys are expected here";
    } else {
      text += fmt::format("; known keys here: {}", fmt::join(mapping.asked, ", "));
    }
    problems.push_back({position, std::move(text)});
  }
}

// yaml-cpp's messages about tabs ("illegal map value") do not say that a tab is the problem.
std::string tabHint(std::string_view text, Position where) {
  size_t start = 0;
  for (int line = 0; line < where.line && start != std::string_view::npos; ++line) {
    start = text.find('\n', start);
    start = start == std::string_view::npos ? start : start + 1;
  }
  if (where.line < 0 || start >= text.size()) return "";
  size_t indent_end = text.find_first_not_of(' ', start);
  if (indent_end == std::string_view::npos || text[indent_end] != '\t') return "";
  return " (this line is indented with a tab; YAML allows only spaces)";
}

// Receives parser events only to note where documents start.
class DocumentStartRecorder : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  std::vector<YAML::Mark> starts;
};

// Where the first two documents of `text` start (fewer if it has fewer). Throws
// YAML::ParserException for a syntax error in either.
std::vector<YAML::Mark> documentStarts(const std::string& text) {
  std::istringstream stream(text);
  YAML::Parser parser(stream);
  DocumentStartRecorder recorder;
  while (recorder.starts.size() < 2 && parser.HandleNextDocument(recorder)) {
  }
  return std::move(recorder.starts);
}

absl::StatusOr<std::string> readFile(const std::string& path) {
  return readFileToString(path, kMaxFileBytes, "config file");
}

}  // namespace

ConfigNode::ConfigNode(std::shared_ptr<DocumentState> doc, std::string path,
                       std::shared_ptr<MappingState> mapping)
    : doc_(std::move(doc)), path_(std::move(path)), mapping_(std::move(mapping)) {}

void ConfigNode::required(std::string_view key, std::string& out) {
  readValue(doc_.get(), mapping_.get(), key, true, out, toString);
}

void ConfigNode::required(std::string_view key, uint64_t& out, IntegerFormat format) {
  readValue(doc_.get(), mapping_.get(), key, true, out,
            format == kByteSize ? toByteSize : toInteger<uint64_t>);
}

void ConfigNode::optional(std::string_view key, std::string& out) {
  readValue(doc_.get(), mapping_.get(), key, false, out, toString);
}

void ConfigNode::optional(std::string_view key, bool& out) {
  readValue(doc_.get(), mapping_.get(), key, false, out, toBool);
}

void ConfigNode::optional(std::string_view key, int64_t& out) {
  readValue(doc_.get(), mapping_.get(), key, false, out, toInteger<int64_t>);
}

void ConfigNode::optional(std::string_view key, uint32_t& out) {
  readValue(doc_.get(), mapping_.get(), key, false, out, toInteger<uint32_t>);
}

void ConfigNode::optional(std::string_view key, uint64_t& out, IntegerFormat format) {
  readValue(doc_.get(), mapping_.get(), key, false, out,
            format == kByteSize ? toByteSize : toInteger<uint64_t>);
}

void ConfigNode::optional(std::string_view key, double& out) {
  readValue(doc_.get(), mapping_.get(), key, false, out, toDouble);
}

void ConfigNode::optional(std::string_view key, absl::Duration& out) {
  readValue(doc_.get(), mapping_.get(), key, false, out, toDuration);
}

void ConfigNode::optional(std::string_view key, std::vector<std::string>& out) {
  DocumentState* doc = doc_.get();
  MappingState* mapping = mapping_.get();
  guarded(doc, mapping, [&] {
    std::optional<Entry> entry = lookup(*doc, *mapping, key, false);
    if (!entry) return;
    std::string path = joinPath(mapping->path, key);
    if (!entry->value.IsSequence()) {
      doc->report(valuePosition(*entry),
                  fmt::format("key '{}': expected a sequence of strings, found {}", path,
                              describe(entry->value)));
      return;
    }
    std::vector<std::string> values;
    bool all_strings = true;
    size_t index = 0;
    for (YAML::const_iterator it = entry->value.begin(); it != entry->value.end(); ++it, ++index) {
      const YAML::Node element = *it;
      if (element.IsScalar()) {
        values.push_back(element.Scalar());
        continue;
      }
      all_strings = false;
      doc->report(positionOf(element), fmt::format("key '{}[{}]': expected a string, found {}",
                                                   path, index, describe(element)));
    }
    if (all_strings) out = std::move(values);
  });
}

bool ConfigNode::has(std::string_view key) {
  bool present = false;
  guarded(doc_.get(), mapping_.get(),
          [&] { present = lookup(*doc_, *mapping_, key, false).has_value(); });
  return present;
}

ConfigNode ConfigNode::child(std::string_view key, bool required) {
  std::string path = joinPath(path_, key);
  // Until proven otherwise: if there is an error, it is reported, so the child stays quiet.
  std::shared_ptr<MappingState> result =
      absentMapping(path, mapping_ ? mapping_->position : Position{}, true);
  guarded(doc_.get(), mapping_.get(), [&] {
    std::optional<Entry> entry = lookup(*doc_, *mapping_, key, required);
    if (!entry) {
      result->silent = required;
    } else {
      result = childMapping(*doc_, path, entry->value, valuePosition(*entry));
    }
  });
  return ConfigNode(doc_, std::move(path), std::move(result));
}

std::vector<ConfigNode> ConfigNode::children(std::string_view key) {
  std::vector<ConfigNode> result;
  guarded(doc_.get(), mapping_.get(), [&] {
    std::optional<Entry> entry = lookup(*doc_, *mapping_, key, false);
    if (!entry || entry->value.IsNull()) return;
    std::string path = joinPath(path_, key);
    if (!entry->value.IsSequence()) {
      doc_->report(valuePosition(*entry),
                   fmt::format("key '{}': expected a sequence of mappings, found {}", path,
                               describe(entry->value)));
      return;
    }
    size_t index = 0;
    for (YAML::const_iterator it = entry->value.begin(); it != entry->value.end(); ++it, ++index) {
      const YAML::Node element = *it;
      std::string element_path = fmt::format("{}[{}]", path, index);
      std::shared_ptr<MappingState> state =
          childMapping(*doc_, element_path, element, positionOf(element));
      result.push_back(ConfigNode(doc_, std::move(element_path), std::move(state)));
    }
  });
  return result;
}

void ConfigNode::fail(std::string_view key, std::string_view message) {
  guarded(doc_.get(), mapping_.get(), [&] {
    if (key.empty()) {
      doc_->report(mapping_->position, path_.empty() ? std::string(message)
                                                     : fmt::format("key '{}': {}", path_, message));
      return;
    }
    mapping_->asked.emplace(key);
    std::optional<Entry> entry;
    if (mapping_->present) entry = findEntry(mapping_->node, key);
    doc_->report(entry ? valuePosition(*entry) : mapping_->position,
                 fmt::format("key '{}': {}", joinPath(path_, key), message));
  });
}

ConfigDocument::ConfigDocument(std::shared_ptr<DocumentState> state) : state_(std::move(state)) {}

absl::StatusOr<ConfigDocument> ConfigDocument::loadFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, readFile(path));
  return parse(text, path);
}

absl::StatusOr<ConfigDocument> ConfigDocument::parse(std::string_view text,
                                                     std::string_view source_name) {
  std::string source(source_name);
  auto invalid = [&](Position where, std::string_view what) {
    return absl::InvalidArgumentError(fmt::format("{}: {}", at(source, where), what));
  };
  try {
    std::string copy(text);
    std::vector<YAML::Mark> starts = documentStarts(copy);
    if (starts.empty()) {
      return invalid({}, "the file is empty; the top level must be a mapping (key: value lines)");
    }
    if (starts.size() > 1 && starts[1].pos == starts[0].pos) {
      // yaml-cpp's LoadAll() loops forever on this: a token that starts no node (a stray ','
      // outside [...] or {...}) yields an empty document without being consumed.
      Position where = positionOf(starts[0]);
      size_t offset = static_cast<size_t>(std::max(starts[0].pos, 0));
      std::string token = offset < text.size() ? printable(text.substr(offset, 1)) : "";
      return invalid(where, fmt::format("invalid YAML: unexpected '{}'", token));
    }
    if (starts.size() > 1) {
      return invalid(positionOf(starts[1]),
                     "a second YAML document starts here; a configuration file holds exactly one");
    }
    // Only the first document: YAML::Load() does not have LoadAll()'s loop.
    const YAML::Node root = YAML::Load(copy);
    if (!root.IsMap()) {
      return invalid(positionOf(root),
                     fmt::format("the top level must be a mapping (key: value lines), found {}",
                                 root.IsNull() ? "an empty document" : describe(root)));
    }
    return ConfigDocument(std::make_shared<DocumentState>(std::move(source), root));
  } catch (const YAML::Exception& e) {
    Position where = positionOf(e.mark);
    // The message can quote the document (an undefined anchor's name).
    return invalid(where,
                   fmt::format("invalid YAML: {}{}", printable(e.msg, 200), tabHint(text, where)));
  } catch (const std::exception& e) {
    return invalid({}, fmt::format("invalid YAML: {}", printable(e.what(), 200)));
  }
}

ConfigNode ConfigDocument::root() {
  if (!state_) return ConfigNode(nullptr, "", nullptr);  // moved-from: readers do nothing
  std::shared_ptr<MappingState> state;
  try {
    state = mappingAt(*state_, "", state_->root);
  } catch (const std::exception& e) {
    state = absentMapping("", {}, true);
    state_->report({}, fmt::format("internal error while reading the configuration: {}", e.what()));
  }
  return ConfigNode(state_, "", std::move(state));
}

absl::Status ConfigDocument::finish() {
  if (!state_) return absl::FailedPreconditionError("finish() on a moved-from ConfigDocument");
  try {
    std::vector<Problem> problems = state_->problems;
    for (const auto& [path, same_path] : state_->mappings) {
      for (const std::shared_ptr<MappingState>& mapping : same_path) {
        if (mapping->present) checkKeys(*mapping, problems);
      }
    }
    if (problems.empty()) return absl::OkStatus();
    std::stable_sort(problems.begin(), problems.end(), [](const Problem& a, const Problem& b) {
      return std::pair(a.position.line, a.position.column) <
             std::pair(b.position.line, b.position.column);
    });
    std::vector<std::string> lines;
    for (const Problem& problem : problems) {
      std::string line = fmt::format("{}: {}", at(state_->source, problem.position), problem.text);
      if (lines.empty() || lines.back() != line) lines.push_back(std::move(line));
    }
    if (lines.size() > kMaxProblems) {
      size_t more = lines.size() - kMaxProblems;
      lines.resize(kMaxProblems);
      lines.push_back(fmt::format("{}: ... and {} more problems", state_->source, more));
    }
    return absl::InvalidArgumentError(fmt::format("{}", fmt::join(lines, "\n")));
  } catch (const std::exception& e) {
    return absl::InternalError(
        fmt::format("{}: checking the configuration failed: {}", state_->source, e.what()));
  }
}

}  // namespace flotilla
