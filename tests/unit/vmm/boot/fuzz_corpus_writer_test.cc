// Writes the seed corpora of the kernel fuzz targets (tests/fuzz/corpus/kernel_elf and
// kernel_bzimage) from the synthetic images of test_images.h. Disabled: run it by hand after
// changing the builders,
//   FLOTILLA_CORPUS_DIR=tests/fuzz/corpus build/tests/vmm_boot_unit_test
//     --gtest_also_run_disabled_tests --gtest_filter='*WriteKernelSeedCorpora'
#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/support/test_images.h"

namespace flotilla::vmm {
namespace {

using testing::kMiB;

void writeFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

TEST(FuzzCorpusWriterTest, DISABLED_WriteKernelSeedCorpora) {
  const char* dir = std::getenv("FLOTILLA_CORPUS_DIR");
  ASSERT_NE(dir, nullptr) << "set FLOTILLA_CORPUS_DIR to tests/fuzz/corpus";
  const std::string elf_dir = std::string(dir) + "/kernel_elf/";
  const std::string bz_dir = std::string(dir) + "/kernel_bzimage/";

  writeFile(elf_dir + "vmlinux_small", testing::simpleElf(false, 0x200));
  writeFile(elf_dir + "pvh_small", testing::simpleElf(true, 0x200));
  writeFile(elf_dir + "vmlinux_bss", testing::simpleElf(false, 0x100, 0x10000));
  testing::ElfSpec two;
  two.segments.push_back({16 * kMiB, testing::pattern(0x100, 1), 0x1000});
  two.segments.push_back({20 * kMiB, testing::pattern(0x80, 2), 0});
  two.entry = 16 * kMiB;
  two.pvh_entry = 16 * kMiB + 0x10;
  two.pvh_desc_size = 4;
  writeFile(elf_dir + "pvh_two_segments_note32", testing::buildElf(two));

  testing::BzImageSpec spec;
  spec.setup_sects = 1;
  spec.payload = testing::pattern(0x280, 3);
  spec.init_size = 0x100000;
  writeFile(bz_dir + "bzimage_2_15", testing::buildBzImage(spec));
  spec.version = 0x020c;
  spec.relocatable = 0;
  writeFile(bz_dir + "bzimage_2_12_fixed", testing::buildBzImage(spec));
  spec = {};
  spec.setup_sects = 0;
  spec.payload = testing::pattern(0x240, 4);
  spec.init_size = 0;
  spec.pref_address = 0x1234567;
  writeFile(bz_dir + "bzimage_sects0_unaligned", testing::buildBzImage(spec));
}

}  // namespace
}  // namespace flotilla::vmm
