// Typed reading of YAML configuration files (/etc/flotilla/*.yaml, VM files) whose errors
// name the file, the line, the key and what was expected, e.g.
//   /etc/flotilla/agent.yaml:4:3: key 'etcd.endpoints[1]': expected a string, found a mapping
//   /etc/flotilla/agent.yaml:7:1: unknown key 'listne'; known keys here: etcd, listen, log
//
// Usage:
//   ASSIGN_OR_RETURN(ConfigDocument doc, ConfigDocument::loadFile(path));
//   ConfigNode root = doc.root();
//   root.required("listen", options.listen);
//   root.optional("memory", options.memory_bytes, ConfigNode::kByteSize);
//   ConfigNode etcd = root.child("etcd");
//   etcd.optional("endpoints", options.endpoints);
//   RETURN_IF_ERROR(doc.finish());
//
// Readers never throw and never stop at the first problem: every error is recorded, and
// finish() reports them all (one per line), together with every key that no reader asked
// for (a misspelled key must not be silently ignored).
//
// What the readers accept:
//   strings   any scalar, as written ("8080", "yes"); null ("key:" or "~") is not a string.
//   integers  decimal, 0x hex or 0o octal, with an optional sign; no fractions, no leading
//             zeros ("0644" is refused as ambiguous), and the range of the C++ type.
//   booleans  true/false, yes/no, on/off, in lower, Capitalized or UPPER case; not 1/0 or y/n.
//   doubles   decimal or exponent notation; not .inf or .nan.
//   child() and children() read a null value ("etcd:" with nothing under it) as empty.
// A mapping that was read from must not repeat a key, and its keys must be strings. YAML merge
// keys ("<<: *defaults") are not supported and are reported as unknown keys. A ConfigDocument
// and its nodes share state and are not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace flotilla {

namespace config_internal {
struct DocumentState;
struct MappingState;
}  // namespace config_internal

class ConfigNode {
 public:
  // How an unsigned integer is written: a plain number, or a byte size ("512M", see units.h).
  enum IntegerFormat { kPlain, kByteSize };

  // A required key: missing is an error ("missing required key 'x'"). A key with the wrong
  // type is an error and leaves `out` unchanged.
  void required(std::string_view key, std::string& out);
  void required(std::string_view key, uint64_t& out, IntegerFormat format = kPlain);

  // An optional key: when missing, `out` keeps its value (the default).
  void optional(std::string_view key, std::string& out);
  void optional(std::string_view key, bool& out);
  void optional(std::string_view key, int64_t& out);
  void optional(std::string_view key, uint32_t& out);
  void optional(std::string_view key, uint64_t& out, IntegerFormat format = kPlain);
  void optional(std::string_view key, double& out);
  void optional(std::string_view key, absl::Duration& out);            // "30s", see parseDuration
  void optional(std::string_view key, std::vector<std::string>& out);  // a sequence of strings

  // Whether the key is present (and marks it as read).
  bool has(std::string_view key);

  // A nested mapping. A missing optional child is an empty mapping whose readers all see
  // missing keys; a missing required child is an error.
  ConfigNode child(std::string_view key, bool required = false);

  // A sequence of mappings ("disks: [{path: a}, {path: b}]"); missing means empty. An element
  // that is not a mapping is an error; it still gets a node (whose readers do nothing), so
  // that the result has one node per element.
  std::vector<ConfigNode> children(std::string_view key);

  // Records an error about `key` of this mapping (for checks that only the caller can make,
  // e.g. a value out of range), in the same file:line:column format.
  void fail(std::string_view key, std::string_view message);

  // The dotted path of this node from the root ("etcd", "disks[1]"); empty for the root.
  const std::string& path() const { return path_; }

 private:
  friend class ConfigDocument;
  ConfigNode(std::shared_ptr<config_internal::DocumentState> doc, std::string path,
             std::shared_ptr<config_internal::MappingState> mapping);

  std::shared_ptr<config_internal::DocumentState> doc_;
  std::string path_;
  // The YAML mapping and the keys asked for in it. A missing optional child has no YAML node;
  // a node whose own error was already reported (a missing required child, a child that is
  // not a mapping) is silent, so that one mistake does not cascade into many messages.
  std::shared_ptr<config_internal::MappingState> mapping_;
};

class ConfigDocument {
 public:
  // Reads and parses a file. A missing or unreadable file (NotFound, PermissionDenied, ...),
  // one over 16M, or invalid YAML is an error naming the file (and line and column for syntax
  // errors). The file must hold exactly one YAML document whose top level is a mapping; an
  // empty file is an error.
  static absl::StatusOr<ConfigDocument> loadFile(const std::string& path);
  // Parses `text`; `source_name` stands for the file name in messages.
  static absl::StatusOr<ConfigDocument> parse(std::string_view text, std::string_view source_name);

  ConfigNode root();

  // OK when every read succeeded and every key of every mapping that was read from was
  // asked for; otherwise InvalidArgument listing every problem, one per line, in document
  // order (the first 100, then a count of the rest).
  absl::Status finish();

 private:
  explicit ConfigDocument(std::shared_ptr<config_internal::DocumentState> state);
  std::shared_ptr<config_internal::DocumentState> state_;
};

}  // namespace flotilla
