// Tests of the --disk option's generation= setting (vmm/device_config.h): parsed for iSCSI
// disks, given back by toOption() (snapshots and migrations record it), refused on files and
// when it is not a number a reservation key can carry; and the same key in the YAML file.
#include "vmm/device_config.h"

#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"
#include "vmm/options.h"

namespace flotilla::vmm {
namespace {

using ::testing::HasSubstr;

constexpr char kUrl[] = "iscsi://10.0.0.5:3260/iqn.2026-01.org.example:pool1:web1/1";

TEST(DiskOptionTest, GenerationOfAnIscsiDisk) {
  auto disk = parseDiskOption(std::string("iscsi=") + kUrl + ",generation=3");
  ASSERT_TRUE(disk.ok()) << disk.status();
  EXPECT_EQ(disk->iscsi, kUrl);
  EXPECT_EQ(disk->generation, 3u);
  EXPECT_EQ(disk->toOption(), std::string("iscsi=") + kUrl + ",generation=3");

  auto first = parseDiskOption(std::string("iscsi=") + kUrl + ",readonly,generation=0");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->generation, 0u);
  EXPECT_TRUE(first->read_only);
  auto again = parseDiskOption(first->toOption());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->generation, 0u);
  EXPECT_TRUE(again->read_only);
}

TEST(DiskOptionTest, WithoutGenerationThereIsNone) {
  auto disk = parseDiskOption(std::string("iscsi=") + kUrl);
  ASSERT_TRUE(disk.ok()) << disk.status();
  EXPECT_EQ(disk->generation, std::nullopt);
  EXPECT_EQ(disk->toOption(), std::string("iscsi=") + kUrl);
}

TEST(DiskOptionTest, BadGenerationsNameTheOption) {
  struct Case {
    std::string text;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {std::string("iscsi=") + kUrl + ",generation=x", "generation=x is not a number"},
      {std::string("iscsi=") + kUrl + ",generation=-1", "generation=-1 is not a number"},
      {std::string("iscsi=") + kUrl + ",generation=", "generation= is not a number"},
      {std::string("iscsi=") + kUrl + ",generation=2x", "generation=2x is not a number"},
      {std::string("iscsi=") + kUrl + ",generation=4294967295", "too large (at most 4294967294)"},
      {std::string("iscsi=") + kUrl + ",generation", "unknown setting 'generation'"},
      {"path=/var/lib/web1.img,generation=1", "applies to iscsi= disks only"},
  };
  for (const Case& c : cases) {
    auto disk = parseDiskOption(c.text);
    ASSERT_FALSE(disk.ok()) << "accepted: " << c.text;
    EXPECT_TRUE(absl::IsInvalidArgument(disk.status())) << disk.status();
    EXPECT_THAT(disk.status().message(), HasSubstr("--disk " + c.text + ":")) << c.text;
    EXPECT_THAT(disk.status().message(), HasSubstr(c.fragment)) << c.text;
  }
}

TEST(DiskOptionTest, GenerationKeyOfTheYamlFile) {
  flotilla::testing::TempDir dir;
  const std::string path = dir.file("vmm.yaml");
  {
    std::ofstream out(path);
    out << "kernel: /images/guest.elf\ndisks:\n  - iscsi: " << kUrl
        << "\n    generation: 7\n  - iscsi: " << kUrl << "\n";
  }
  std::vector<const char*> argv = {"flotilla-vmm", "--config", path.c_str()};
  auto options = parseVmmOptions(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(options.ok()) << options.status();
  ASSERT_EQ(options->vm.disks.size(), 2u);
  EXPECT_EQ(options->vm.disks[0].generation, 7u);
  EXPECT_EQ(options->vm.disks[1].generation, std::nullopt);
}

}  // namespace
}  // namespace flotilla::vmm
