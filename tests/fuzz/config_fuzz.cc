// libFuzzer target for the configuration reader (common/config.h) and the unit parsers it uses
// (common/units.h): any input must give a document or an error, never a crash, hang or leak.
// The keys read below are the ones the seed corpus (corpus/config/) uses.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/units.h"

namespace {

using flotilla::ConfigDocument;
using flotilla::ConfigNode;

// Reads every kind of value from `node`, as a daemon's option parser would.
void readScalars(ConfigNode& node) {
  std::string name;
  bool enabled = false;
  int64_t offset = 0;
  uint32_t port = 0;
  uint64_t count = 0;
  uint64_t memory = 0;
  double ratio = 0;
  absl::Duration timeout;
  std::vector<std::string> tags;
  node.required("name", name);
  node.required("count", count);
  node.required("memory", memory, ConfigNode::kByteSize);
  node.optional("listen", name);
  node.optional("enabled", enabled);
  node.optional("offset", offset);
  node.optional("port", port);
  node.optional("size", memory, ConfigNode::kByteSize);
  node.optional("limit", count);
  node.optional("ratio", ratio);
  node.optional("timeout", timeout);
  node.optional("tags", tags);
  if (node.has("mtu") && port > 65535) node.fail("port", "must be at most 65535");
}

// parseByteSize and formatByteSize must round-trip; parseDuration must honour its contract.
void checkUnits(std::string_view text) {
  absl::StatusOr<uint64_t> size = flotilla::parseByteSize(text);
  if (size.ok()) {
    absl::StatusOr<uint64_t> again = flotilla::parseByteSize(flotilla::formatByteSize(*size));
    if (!again.ok() || *again != *size) std::abort();
  } else if (size.status().message().empty()) {
    std::abort();
  }
  absl::StatusOr<absl::Duration> duration = flotilla::parseDuration(text);
  if (duration.ok() &&
      (*duration < absl::ZeroDuration() || *duration == absl::InfiniteDuration())) {
    std::abort();
  }
}

// Every line of an error names the source: document text never breaks a message in two.
void checkOneProblemPerLine(absl::string_view message) {
  std::string_view rest(message.data(), message.size());
  if (rest.empty()) std::abort();
  while (!rest.empty()) {
    if (rest.substr(0, 9) != "fuzz.yaml") std::abort();
    size_t end = rest.find('\n');
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (size <= 64) checkUnits(text);

  absl::StatusOr<ConfigDocument> doc = ConfigDocument::parse(text, "fuzz.yaml");
  if (!doc.ok()) {
    if (doc.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    checkOneProblemPerLine(doc.status().message());
    return 0;
  }
  ConfigNode root = doc->root();
  readScalars(root);

  ConfigNode etcd = root.child("etcd");
  readScalars(etcd);
  std::vector<std::string> endpoints;
  etcd.optional("endpoints", endpoints);
  ConfigNode tls = etcd.child("tls");
  readScalars(tls);

  ConfigNode vm = root.child("vm", /*required=*/true);
  readScalars(vm);
  ConfigNode nested = vm.child("vm").child("vm");  // aliases can make this a cycle
  readScalars(nested);

  for (ConfigNode& disk : root.children("disks")) {
    readScalars(disk);
    ConfigNode options = disk.child("options");
    readScalars(options);
    for (ConfigNode& inner : disk.children("disks")) readScalars(inner);
  }
  if (root.has("dry_run")) root.fail("", "cannot be combined with dry_run");

  absl::Status first = doc->finish();
  absl::Status second = doc->finish();
  if (first.ok() != second.ok() || first.message() != second.message()) std::abort();
  if (!first.ok() && first.code() != absl::StatusCode::kInvalidArgument) std::abort();
  if (!first.ok()) checkOneProblemPerLine(first.message());
  return 0;
}
