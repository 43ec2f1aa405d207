// Tests for typed YAML configuration reading and its error messages (common/config.h).
#include "common/config.h"

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

ConfigDocument parseOrDie(std::string_view text) {
  absl::StatusOr<ConfigDocument> doc = ConfigDocument::parse(text, "test.yaml");
  EXPECT_TRUE(doc.ok()) << doc.status();
  if (!doc.ok()) return ConfigDocument::parse("{}", "test.yaml").value();
  return *std::move(doc);
}

std::string parseError(std::string_view text) {
  absl::StatusOr<ConfigDocument> doc = ConfigDocument::parse(text, "test.yaml");
  EXPECT_FALSE(doc.ok());
  EXPECT_EQ(doc.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(doc.status().message());
}

// The problems finish() reports, one per element.
std::vector<std::string> problems(ConfigDocument& doc) {
  absl::Status status = doc.finish();
  if (status.ok()) return {};
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  std::vector<std::string> lines;
  std::string message(status.message());
  std::string_view rest = message;
  while (!rest.empty()) {
    size_t end = rest.find('\n');
    lines.emplace_back(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
  }
  return lines;
}

// Most tests parse text; the loadFile tests write a temporary file, removed afterwards.
class ConfigTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (!path_.empty()) ::unlink(path_.c_str());
  }

  std::string write(std::string_view text) {
    path_ = ::testing::TempDir() + "config_test_" + std::to_string(::getpid()) + ".yaml";
    std::ofstream(path_) << text;
    return path_;
  }

  std::string path_;
};

TEST_F(ConfigTest, ReadsEveryType) {
  ConfigDocument doc = parseOrDie(R"(
name: web1
enabled: yes
offset: -42
port: 8080
count: 18446744073709551615
memory: 512M
ratio: 0.75
timeout: 1m30s
tags: [a, "b c", 3]
etcd:
  endpoints:
    - http://10.0.0.1:2379
    - http://10.0.0.2:2379
disks:
  - path: /a
  - path: /b
)");
  ConfigNode root = doc.root();
  std::string name;
  bool enabled = false;
  int64_t offset = 0;
  uint32_t port = 0;
  uint64_t count = 0;
  uint64_t memory = 0;
  double ratio = 0;
  absl::Duration timeout;
  std::vector<std::string> tags;
  std::vector<std::string> endpoints;
  root.required("name", name);
  root.optional("enabled", enabled);
  root.optional("offset", offset);
  root.optional("port", port);
  root.required("count", count);
  root.required("memory", memory, ConfigNode::kByteSize);
  root.optional("ratio", ratio);
  root.optional("timeout", timeout);
  root.optional("tags", tags);
  root.child("etcd").optional("endpoints", endpoints);
  std::vector<std::string> paths;
  for (ConfigNode disk : root.children("disks")) {
    std::string path;
    disk.required("path", path);
    paths.push_back(path);
  }
  EXPECT_TRUE(doc.finish().ok()) << doc.finish();
  EXPECT_EQ(name, "web1");
  EXPECT_TRUE(enabled);
  EXPECT_EQ(offset, -42);
  EXPECT_EQ(port, 8080u);
  EXPECT_EQ(count, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(memory, uint64_t{512} << 20);
  EXPECT_EQ(ratio, 0.75);
  EXPECT_EQ(timeout, absl::Seconds(90));
  EXPECT_THAT(tags, ElementsAre("a", "b c", "3"));
  EXPECT_THAT(endpoints, ElementsAre("http://10.0.0.1:2379", "http://10.0.0.2:2379"));
  EXPECT_THAT(paths, ElementsAre("/a", "/b"));
}

TEST_F(ConfigTest, MissingOptionalKeysKeepTheirDefaults) {
  ConfigDocument doc = parseOrDie("other: 1\n");
  ConfigNode root = doc.root();
  std::string name = "default";
  bool enabled = true;
  int64_t offset = -1;
  uint32_t port = 80;
  uint64_t memory = 4096;
  double ratio = 0.5;
  absl::Duration timeout = absl::Seconds(3);
  std::vector<std::string> tags = {"x"};
  root.optional("name", name);
  root.optional("enabled", enabled);
  root.optional("offset", offset);
  root.optional("port", port);
  root.optional("memory", memory, ConfigNode::kByteSize);
  root.optional("ratio", ratio);
  root.optional("timeout", timeout);
  root.optional("tags", tags);
  ConfigNode etcd = root.child("etcd");
  etcd.optional("name", name);
  EXPECT_THAT(root.children("disks"), IsEmpty());
  root.has("other");
  EXPECT_TRUE(doc.finish().ok()) << doc.finish();
  EXPECT_EQ(name, "default");
  EXPECT_TRUE(enabled);
  EXPECT_EQ(offset, -1);
  EXPECT_EQ(port, 80u);
  EXPECT_EQ(memory, 4096u);
  EXPECT_EQ(ratio, 0.5);
  EXPECT_EQ(timeout, absl::Seconds(3));
  EXPECT_THAT(tags, ElementsAre("x"));
}

TEST_F(ConfigTest, MissingRequiredKeyPointsAtTheEnclosingMapping) {
  ConfigDocument doc = parseOrDie("log: info\netcd:\n  timeout: 3s\n");
  ConfigNode root = doc.root();
  std::string value;
  root.optional("log", value);
  root.required("listen", value);
  ConfigNode etcd = root.child("etcd");
  etcd.optional("timeout", value);
  etcd.required("endpoint", value);
  EXPECT_THAT(problems(doc), ElementsAre("test.yaml:1:1: missing required key 'listen'",
                                         "test.yaml:3:3: missing required key 'etcd.endpoint'"));
}

TEST_F(ConfigTest, MissingRequiredKeyInAMissingOptionalChild) {
  ConfigDocument doc = parseOrDie("a: 1\nouter:\n  x: 1\n");
  ConfigNode root = doc.root();
  root.has("a");
  ConfigNode outer = root.child("outer");
  outer.has("x");
  std::string value;
  outer.child("inner").required("name", value);
  EXPECT_THAT(problems(doc), ElementsAre("test.yaml:3:3: missing required key 'outer.inner.name'"));
}

TEST_F(ConfigTest, MissingRequiredChildIsOneError) {
  ConfigDocument doc = parseOrDie("a: 1\n");
  ConfigNode root = doc.root();
  root.has("a");
  ConfigNode etcd = root.child("etcd", /*required=*/true);
  EXPECT_EQ(etcd.path(), "etcd");
  std::string value;
  uint64_t number = 0;
  etcd.required("endpoint", value);
  etcd.required("port", number);
  etcd.fail("port", "must not be zero");
  EXPECT_THAT(etcd.children("x"), IsEmpty());
  EXPECT_THAT(problems(doc), ElementsAre("test.yaml:1:1: missing required key 'etcd'"));
}

TEST_F(ConfigTest, EmptyChildIsAnEmptyMapping) {
  ConfigDocument doc = parseOrDie("a: 1\netcd:\n# endpoint: x\n");
  ConfigNode root = doc.root();
  root.has("a");
  ConfigNode etcd = root.child("etcd", /*required=*/true);
  std::string value = "kept";
  etcd.optional("endpoint", value);
  EXPECT_EQ(value, "kept");
  etcd.required("port", value);
  EXPECT_THAT(problems(doc), ElementsAre("test.yaml:2:1: missing required key 'etcd.port'"));
}

TEST_F(ConfigTest, WrongTypeNamesTheKeyAndLeavesTheOutputUnchanged) {
  ConfigDocument doc = parseOrDie("name: {first: a}\nport: [1]\nenabled: 1\nratio: x\n");
  ConfigNode root = doc.root();
  std::string name = "kept";
  uint32_t port = 7;
  bool enabled = true;
  double ratio = 0.5;
  root.required("name", name);
  root.optional("port", port);
  root.optional("enabled", enabled);
  root.optional("ratio", ratio);
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:1:7: key 'name': expected a string, found a mapping",
                          "test.yaml:2:7: key 'port': expected an unsigned integer (0 to "
                          "4294967295), found a sequence",
                          "test.yaml:3:10: key 'enabled': expected true or false, found '1'",
                          "test.yaml:4:8: key 'ratio': expected a number, found 'x'"));
  EXPECT_EQ(name, "kept");
  EXPECT_EQ(port, 7u);
  EXPECT_TRUE(enabled);
  EXPECT_EQ(ratio, 0.5);
}

TEST_F(ConfigTest, ScalarsOfAnyKindAreStrings) {
  ConfigDocument doc = parseOrDie("a: 8080\nb: yes\nc: 1.5\nd: ''\ne: |\n  two\n  lines\n");
  ConfigNode root = doc.root();
  std::string a, b, c, d = "x", e;
  root.required("a", a);
  root.required("b", b);
  root.required("c", c);
  root.required("d", d);
  root.required("e", e);
  EXPECT_TRUE(doc.finish().ok()) << doc.finish();
  EXPECT_EQ(a, "8080");
  EXPECT_EQ(b, "yes");
  EXPECT_EQ(c, "1.5");
  EXPECT_EQ(d, "");
  EXPECT_EQ(e, "two\nlines\n");
}

TEST_F(ConfigTest, NullIsNotAValueAndPointsAtItsKey) {
  ConfigDocument doc = parseOrDie("name:\nport: ~\nlist: null\n");
  ConfigNode root = doc.root();
  std::string name = "kept";
  uint32_t port = 1;
  std::vector<std::string> list;
  root.required("name", name);
  root.optional("port", port);
  root.optional("list", list);
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:1:1: key 'name': expected a string, found null",
                          "test.yaml:2:1: key 'port': expected an unsigned integer (0 to "
                          "4294967295), found null",
                          "test.yaml:3:1: key 'list': expected a sequence of strings, found null"));
  EXPECT_EQ(name, "kept");
}

TEST_F(ConfigTest, BooleanWords) {
  ConfigDocument doc = parseOrDie(
      "a: true\nb: False\nc: YES\nd: no\ne: On\nf: off\ng: 'true'\nh: y\ni: 0\nj: TRue\n");
  ConfigNode root = doc.root();
  bool values[10] = {false, true, false, true, false, true, false, false, true, false};
  const char* keys[10] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
  for (int i = 0; i < 10; ++i) root.optional(keys[i], values[i]);
  EXPECT_THAT(values, ElementsAre(true, false, true, false, true, false, true, false, true, false));
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:8:4: key 'h': expected true or false, found 'y'",
                          "test.yaml:9:4: key 'i': expected true or false, found '0'",
                          "test.yaml:10:4: key 'j': expected true or false, found 'TRue'"));
}

TEST_F(ConfigTest, IntegerSyntax) {
  ConfigDocument doc = parseOrDie("a: 0x1F\nb: 0o755\nc: +5\nd: 0\ne: -0x10\nf: '42'\n");
  ConfigNode root = doc.root();
  uint32_t a = 0, b = 0, c = 0, d = 1;
  int64_t e = 0;
  uint64_t f = 0;
  root.optional("a", a);
  root.optional("b", b);
  root.optional("c", c);
  root.optional("d", d);
  root.optional("e", e);
  root.optional("f", f);
  EXPECT_TRUE(doc.finish().ok()) << doc.finish();
  EXPECT_EQ(a, 31u);
  EXPECT_EQ(b, 0755u);
  EXPECT_EQ(c, 5u);
  EXPECT_EQ(d, 0u);
  EXPECT_EQ(e, -16);
  EXPECT_EQ(f, 42u);
}

TEST_F(ConfigTest, IntegerRanges) {
  ConfigDocument doc = parseOrDie(
      "min: -9223372036854775808\nmax: 9223372036854775807\nbelow: -9223372036854775809\n"
      "above: 9223372036854775808\nu32: 4294967295\nu32big: 4294967296\nneg: -1\n"
      "u64big: 18446744073709551616\n");
  ConfigNode root = doc.root();
  int64_t min = 0, max = 0, below = 1, above = 1;
  uint32_t u32 = 0, u32big = 1, neg = 1;
  uint64_t u64big = 1;
  root.optional("min", min);
  root.optional("max", max);
  root.optional("below", below);
  root.optional("above", above);
  root.optional("u32", u32);
  root.optional("u32big", u32big);
  root.optional("neg", neg);
  root.optional("u64big", u64big);
  EXPECT_EQ(min, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(max, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(u32, 4294967295u);
  EXPECT_EQ(below, 1);
  EXPECT_EQ(above, 1);
  EXPECT_EQ(u32big, 1u);
  EXPECT_EQ(neg, 1u);
  EXPECT_EQ(u64big, 1u);
  EXPECT_THAT(
      problems(doc),
      ElementsAre("test.yaml:3:8: key 'below': expected an integer (-9223372036854775808 to "
                  "9223372036854775807), found '-9223372036854775809'",
                  "test.yaml:4:8: key 'above': expected an integer (-9223372036854775808 to "
                  "9223372036854775807), found '9223372036854775808'",
                  "test.yaml:6:9: key 'u32big': expected an unsigned integer (0 to 4294967295), "
                  "found '4294967296'",
                  "test.yaml:7:6: key 'neg': expected an unsigned integer (0 to 4294967295), "
                  "found '-1'",
                  "test.yaml:8:9: key 'u64big': expected an unsigned integer (0 to "
                  "18446744073709551615), found '18446744073709551616'"));
}

TEST_F(ConfigTest, IntegersRejectFractionsAndAmbiguousLeadingZeros) {
  ConfigDocument doc = parseOrDie("a: 1.0\nb: 0644\nc: 1e3\nd: 12abc\ne: ' 5'\nf: 0x\n");
  ConfigNode root = doc.root();
  uint64_t value = 9;
  for (const char* key : {"a", "b", "c", "d", "e", "f"}) root.optional(key, value);
  EXPECT_EQ(value, 9u);
  std::vector<std::string> lines = problems(doc);
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[0],
            "test.yaml:1:4: key 'a': expected an unsigned integer (0 to 18446744073709551615), "
            "found '1.0'");
  EXPECT_EQ(lines[1],
            "test.yaml:2:4: key 'b': expected an unsigned integer (0 to 18446744073709551615), "
            "found '0644' (a leading 0 is ambiguous: write 0o644 for octal or 644 for decimal)");
  EXPECT_THAT(lines[2], HasSubstr("found '1e3'"));
  EXPECT_THAT(lines[3], HasSubstr("found '12abc'"));
  EXPECT_THAT(lines[4], HasSubstr("found ' 5'"));
  EXPECT_THAT(lines[5], HasSubstr("found '0x'"));
}

TEST_F(ConfigTest, Doubles) {
  ConfigDocument doc =
      parseOrDie("a: 2\nb: -1.5e3\nc: +.5\nd: .inf\ne: nan\nf: 1e999\ng: +-1\nh: 0x10\n");
  ConfigNode root = doc.root();
  double a = 0, b = 0, c = 0, rest = 7;
  root.optional("a", a);
  root.optional("b", b);
  root.optional("c", c);
  for (const char* key : {"d", "e", "f", "g", "h"}) root.optional(key, rest);
  EXPECT_EQ(a, 2.0);
  EXPECT_EQ(b, -1500.0);
  EXPECT_EQ(c, 0.5);
  EXPECT_EQ(rest, 7.0);
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:4:4: key 'd': expected a number, found '.inf'",
                          "test.yaml:5:4: key 'e': expected a number, found 'nan'",
                          "test.yaml:6:4: key 'f': expected a number, found '1e999'",
                          "test.yaml:7:4: key 'g': expected a number, found '+-1'",
                          "test.yaml:8:4: key 'h': expected a number, found '0x10'"));
}

TEST_F(ConfigTest, ByteSizesAndDurations) {
  ConfigDocument doc = parseOrDie(
      "plain: 4096\nsize: 1.5G\nhuge: 17179869184T\nlist: [1]\nwait: 30\n"
      "never: {a: 1}\nzero: 0\n");
  ConfigNode root = doc.root();
  uint64_t plain = 0, size = 1, huge = 1, list = 1;
  absl::Duration wait = absl::Seconds(1), never = absl::Seconds(1), zero = absl::Seconds(1);
  root.optional("plain", plain, ConfigNode::kByteSize);
  root.optional("size", size, ConfigNode::kByteSize);
  root.required("huge", huge, ConfigNode::kByteSize);
  root.optional("list", list, ConfigNode::kByteSize);
  root.optional("wait", wait);
  root.optional("never", never);
  root.optional("zero", zero);
  EXPECT_EQ(plain, 4096u);
  EXPECT_EQ(size, 1u);
  EXPECT_EQ(huge, 1u);
  EXPECT_EQ(wait, absl::Seconds(1));
  EXPECT_EQ(zero, absl::ZeroDuration());
  EXPECT_THAT(
      problems(doc),
      ElementsAre(
          "test.yaml:2:7: key 'size': expected a byte size such as 4096, 512M or 2GiB, found "
          "'1.5G' (fractions are not allowed; use a smaller unit, e.g. 1536M for 1.5G)",
          "test.yaml:3:7: key 'huge': expected a byte size such as 4096, 512M or 2GiB, found "
          "'17179869184T' (it is larger than 2^64 - 1 bytes)",
          "test.yaml:4:7: key 'list': expected a byte size such as 4096, 512M or 2GiB, found a "
          "sequence",
          "test.yaml:5:7: key 'wait': expected a duration such as 30s, 250ms or 1h30m, found "
          "'30' (a unit is required: ns, us, ms, s, m or h)",
          "test.yaml:6:8: key 'never': expected a duration such as 30s, 250ms or 1h30m, found "
          "a mapping"));
}

TEST_F(ConfigTest, StringListErrorsNameTheElement) {
  ConfigDocument doc =
      parseOrDie("etcd:\n  endpoints:\n    - a\n    - {host: b}\n    - [c]\n  peers: one\n");
  ConfigNode etcd = doc.root().child("etcd");
  std::vector<std::string> endpoints = {"kept"};
  std::vector<std::string> peers = {"kept"};
  etcd.optional("endpoints", endpoints);
  etcd.optional("peers", peers);
  EXPECT_THAT(endpoints, ElementsAre("kept"));
  EXPECT_THAT(peers, ElementsAre("kept"));
  EXPECT_THAT(
      problems(doc),
      ElementsAre("test.yaml:4:7: key 'etcd.endpoints[1]': expected a string, found a mapping",
                  "test.yaml:5:7: key 'etcd.endpoints[2]': expected a string, found a sequence",
                  "test.yaml:6:10: key 'etcd.peers': expected a sequence of strings, found "
                  "'one'"));
}

TEST_F(ConfigTest, UnknownKeysListTheKnownOnes) {
  ConfigDocument doc = parseOrDie("listne: x\nlog: info\netcd:\n  endpoint: a\n  tiemout: 3s\n");
  ConfigNode root = doc.root();
  std::string value;
  root.optional("log", value);
  root.optional("listen", value);
  ConfigNode etcd = root.child("etcd");
  etcd.optional("endpoint", value);
  etcd.optional("timeout", value);
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:1:1: unknown key 'listne'; known keys here: etcd, listen, log",
                          "test.yaml:5:3: unknown key 'etcd.tiemout'; known keys here: endpoint, "
                          "timeout"));
}

TEST_F(ConfigTest, UnknownKeysAreOnlyCheckedInMappingsReadFrom) {
  ConfigDocument doc = parseOrDie("a: 1\nplugin:\n  anything: goes\n  here: too\n");
  ConfigNode root = doc.root();
  root.has("a");
  root.has("plugin");  // asked for, but never read into
  EXPECT_TRUE(doc.finish().ok()) << doc.finish();
}

TEST_F(ConfigTest, AMappingReadWithoutAskingForAnythingHasOnlyUnknownKeys) {
  ConfigDocument doc = parseOrDie("etcd:\n  x: 1\n");
  doc.root().child("etcd");
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:2:3: unknown key 'etcd.x'; no keys are expected here"));
}

TEST_F(ConfigTest, ReadingAChildTwiceSharesTheKeysAskedFor) {
  ConfigDocument doc = parseOrDie("etcd:\n  a: 1\n  b: 2\n");
  ConfigNode root = doc.root();
  root.child("etcd").has("a");
  root.child("etcd").has("b");
  EXPECT_TRUE(doc.finish().ok()) << doc.finish();
}

TEST_F(ConfigTest, HasMarksTheKeyAsRead) {
  ConfigDocument doc = parseOrDie("a: 1\nb: ~\n");
  ConfigNode root = doc.root();
  EXPECT_TRUE(root.has("a"));
  EXPECT_TRUE(root.has("b"));
  EXPECT_FALSE(root.has("c"));
  EXPECT_TRUE(doc.finish().ok()) << doc.finish();
}

TEST_F(ConfigTest, ChildrenHaveIndexedPaths) {
  ConfigDocument doc = parseOrDie(
      "disks:\n  - path: /a\n    size: 1G\n  - size: 2G\n  - path: [x]\n  - nope\n  -\n");
  std::vector<ConfigNode> disks = doc.root().children("disks");
  ASSERT_EQ(disks.size(), 5u);
  EXPECT_EQ(disks[1].path(), "disks[1]");
  for (ConfigNode& disk : disks) {
    std::string path;
    uint64_t size = 0;
    disk.required("path", path);
    disk.optional("size", size, ConfigNode::kByteSize);
  }
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:4:5: missing required key 'disks[1].path'",
                          "test.yaml:5:11: key 'disks[2].path': expected a string, found a "
                          "sequence",
                          "test.yaml:6:5: key 'disks[3]': expected a mapping, found 'nope'",
                          "test.yaml:8:1: missing required key 'disks[4].path'"));
}

TEST_F(ConfigTest, ChildAndChildrenOfTheWrongKind) {
  ConfigDocument doc = parseOrDie("etcd: localhost\ndisks: {a: 1}\nnics: x\n");
  ConfigNode root = doc.root();
  ConfigNode etcd = root.child("etcd");
  std::string value;
  etcd.required("endpoint", value);  // silent: the error is about etcd itself
  EXPECT_THAT(root.children("disks"), IsEmpty());
  EXPECT_THAT(root.children("nics"), IsEmpty());
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:1:7: key 'etcd': expected a mapping, found 'localhost'",
                          "test.yaml:2:8: key 'disks': expected a sequence of mappings, found a "
                          "mapping",
                          "test.yaml:3:7: key 'nics': expected a sequence of mappings, found 'x'"));
}

TEST_F(ConfigTest, ReportsEveryProblemInDocumentOrder) {
  ConfigDocument doc = parseOrDie("z: 1\nport: big\nextra: 1\nname: {}\n");
  ConfigNode root = doc.root();
  std::string name;
  uint32_t port = 0;
  std::string missing;
  // Read in a different order than the document's.
  root.required("name", name);
  root.required("missing", missing);
  root.optional("port", port);
  root.has("z");
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:1:1: missing required key 'missing'",
                          "test.yaml:2:7: key 'port': expected an unsigned integer (0 to "
                          "4294967295), found 'big'",
                          "test.yaml:3:1: unknown key 'extra'; known keys here: missing, name, "
                          "port, z",
                          "test.yaml:4:7: key 'name': expected a string, found a mapping"));
}

TEST_F(ConfigTest, SameProblemIsReportedOnce) {
  ConfigDocument doc = parseOrDie("port: big\n");
  ConfigNode root = doc.root();
  uint32_t port = 0;
  root.optional("port", port);
  root.optional("port", port);
  EXPECT_EQ(problems(doc).size(), 1u);
}

TEST_F(ConfigTest, ManyProblemsAreCapped) {
  std::string text;
  for (int i = 0; i < 150; ++i) text += "k" + std::to_string(i) + ": 1\n";
  ConfigDocument doc = parseOrDie(text);
  doc.root().has("k0");
  std::vector<std::string> lines = problems(doc);
  ASSERT_EQ(lines.size(), 101u);
  EXPECT_THAT(lines[0], HasSubstr("test.yaml:2:1: unknown key 'k1'"));
  EXPECT_EQ(lines[100], "test.yaml: ... and 49 more problems");
}

TEST_F(ConfigTest, DuplicateKeysAreErrors) {
  ConfigDocument doc = parseOrDie("a: 1\nb: 2\na: 3\n");
  ConfigNode root = doc.root();
  uint32_t a = 0;
  root.optional("a", a);
  root.has("b");
  EXPECT_EQ(a, 1u);
  EXPECT_THAT(problems(doc), ElementsAre("test.yaml:3:1: duplicate key 'a' (first at line 1)"));
}

TEST_F(ConfigTest, KeysMustBeStrings) {
  ConfigDocument doc = parseOrDie("a: 1\n[x, y]: 2\netcd:\n  {k: v}: 3\n  ~: 4\n");
  ConfigNode root = doc.root();
  root.has("a");
  root.child("etcd");
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:2:1: at the top level: a key must be a string, found a "
                          "sequence",
                          "test.yaml:4:3: in 'etcd': a key must be a string, found a mapping",
                          "test.yaml:5:3: in 'etcd': a key must be a string, found null"));
}

TEST_F(ConfigTest, UnknownKeysAreQuotedOnOneLine) {
  ConfigDocument doc = parseOrDie("\"bad\\nkey\\t\": 1\n");
  doc.root().has("a");
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:1:1: unknown key 'bad\\nkey\\t'; known keys here: a"));
}

TEST_F(ConfigTest, AnchorsAndAliasesAreFollowed) {
  ConfigDocument doc =
      parseOrDie("defaults: &d {cpus: 2, memory: 1G}\nvms:\n  - *d\n  - {cpus: 4, memory: 2G}\n");
  ConfigNode root = doc.root();
  root.has("defaults");
  std::vector<uint64_t> cpus;
  for (ConfigNode vm : root.children("vms")) {
    uint64_t value = 0;
    uint64_t memory = 0;
    vm.required("cpus", value);
    vm.required("memory", memory, ConfigNode::kByteSize);
    cpus.push_back(value);
  }
  EXPECT_THAT(cpus, ElementsAre(2u, 4u));
  EXPECT_TRUE(doc.finish().ok()) << doc.finish();
}

TEST_F(ConfigTest, MergeKeysAreReportedAsUnsupported) {
  ConfigDocument doc = parseOrDie("base: &b {cpus: 2}\nvm:\n  <<: *b\n  memory: 1G\n");
  ConfigNode root = doc.root();
  root.has("base");
  uint64_t memory = 0;
  root.child("vm").required("memory", memory, ConfigNode::kByteSize);
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:3:3: unknown key 'vm.<<' (YAML merge keys are not "
                          "supported); known keys here: memory"));
}

TEST_F(ConfigTest, SelfReferentialAliasDoesNotLoop) {
  ConfigDocument doc = parseOrDie("a: &x [*x]\nb: &y {self: *y}\n");
  ConfigNode root = doc.root();
  std::vector<std::string> list;
  root.optional("a", list);
  EXPECT_THAT(root.children("a"), Not(IsEmpty()));
  ConfigNode b = root.child("b").child("self").child("self");
  EXPECT_EQ(b.path(), "b.self.self");
  b.has("self");
  EXPECT_FALSE(doc.finish().ok());
}

TEST_F(ConfigTest, FailRecordsCallerChecks) {
  ConfigDocument doc = parseOrDie("a: 1\nnet:\n  mtu: 70000\n");
  ConfigNode root = doc.root();
  root.has("a");
  ConfigNode net = root.child("net");
  net.fail("mtu", "must be at most 65535");
  net.fail("bridge", "is required when mtu is set");
  net.fail("", "is not usable");
  root.fail("", "cannot be used with --dry-run");
  EXPECT_THAT(problems(doc),
              ElementsAre("test.yaml:1:1: cannot be used with --dry-run",
                          "test.yaml:3:3: key 'net.bridge': is required when mtu is set",
                          "test.yaml:3:3: key 'net': is not usable",
                          "test.yaml:3:8: key 'net.mtu': must be at most 65535"));
}

TEST_F(ConfigTest, SyntaxErrorsNameTheLineAndColumn) {
  EXPECT_EQ(parseError("a: [1, 2\n"),
            "test.yaml:2:1: invalid YAML: end of sequence flow not found");
  EXPECT_THAT(parseError("a: 1\n b: 2\n"), HasSubstr("test.yaml:2:3: invalid YAML: "));
}

TEST_F(ConfigTest, SyntaxErrorsFromTabsSaySo) {
  EXPECT_EQ(parseError("a:\n\tb: 1\n"),
            "test.yaml:2:3: invalid YAML: illegal map value (this line is indented with a tab; "
            "YAML allows only spaces)");
}

TEST_F(ConfigTest, TopLevelMustBeOneMapping) {
  EXPECT_EQ(parseError(""),
            "test.yaml: the file is empty; the top level must be a mapping (key: value lines)");
  EXPECT_THAT(parseError("# nothing\n"), HasSubstr("the file is empty"));
  EXPECT_EQ(parseError("---\n"),
            "test.yaml:2:1: the top level must be a mapping (key: value lines), found an empty "
            "document");
  EXPECT_EQ(parseError("- a\n- b\n"),
            "test.yaml:1:1: the top level must be a mapping (key: value lines), found a "
            "sequence");
  EXPECT_THAT(parseError("hello\n"), HasSubstr("found 'hello'"));
  EXPECT_EQ(parseError("a: 1\n---\nb: 2\n"),
            "test.yaml:2:1: a second YAML document starts here; a configuration file holds "
            "exactly one");
}

// yaml-cpp's LoadAll() never returns on these (found by config_fuzz).
TEST_F(ConfigTest, StrayCommaIsASyntaxError) {
  EXPECT_EQ(parseError(std::string(",\0", 2)), "test.yaml:1:1: invalid YAML: unexpected ','");
  EXPECT_EQ(parseError(","), "test.yaml:1:1: invalid YAML: unexpected ','");
  EXPECT_THAT(parseError("a: 1\n---\n,"), HasSubstr("a second YAML document starts here"));
}

TEST_F(ConfigTest, LoadsAFile) {
  std::string path = write("listen: 0.0.0.0:7000\nextra: 1\n");
  absl::StatusOr<ConfigDocument> doc = ConfigDocument::loadFile(path);
  ASSERT_TRUE(doc.ok()) << doc.status();
  std::string listen;
  doc->root().required("listen", listen);
  EXPECT_EQ(listen, "0.0.0.0:7000");
  absl::Status status = doc->finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), path + ":2:1: unknown key 'extra'; known keys here: listen");
}

TEST_F(ConfigTest, SyntaxErrorsNameTheFile) {
  std::string path = write("a: 1\nb: [\n");
  absl::StatusOr<ConfigDocument> doc = ConfigDocument::loadFile(path);
  EXPECT_EQ(doc.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(doc.status().message(), HasSubstr(path + ":3:1: invalid YAML: "));
}

TEST_F(ConfigTest, MissingFileIsNotFound) {
  absl::StatusOr<ConfigDocument> doc = ConfigDocument::loadFile("/nonexistent/flotilla.yaml");
  EXPECT_EQ(doc.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(doc.status().message(),
            "cannot read config file /nonexistent/flotilla.yaml: No such file or directory");
}

TEST_F(ConfigTest, DirectoryIsAnError) {
  absl::StatusOr<ConfigDocument> doc = ConfigDocument::loadFile(::testing::TempDir());
  EXPECT_FALSE(doc.ok());
  EXPECT_THAT(doc.status().message(), HasSubstr("Is a directory"));
}

TEST_F(ConfigTest, NodesOutliveTheirDocument) {
  std::optional<ConfigNode> etcd;
  std::string value;
  {
    ConfigDocument doc = parseOrDie("etcd:\n  endpoint: x\n");
    etcd.emplace(doc.root().child("etcd"));
  }
  etcd->required("endpoint", value);
  EXPECT_EQ(value, "x");
}

}  // namespace
}  // namespace flotilla
