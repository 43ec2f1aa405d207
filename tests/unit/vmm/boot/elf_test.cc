// Tests of the ELF64 kernel parser and loader: segments at p_paddr, zero fill, the PVH note,
// and refusal of every kind of malformed header with a message that names the problem.
#include "vmm/boot/elf.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_images.h"

namespace flotilla::vmm {
namespace {

using ::testing::HasSubstr;
using testing::kMiB;
using testing::poke;

class ElfTest : public ::testing::Test {
 protected:
  GuestMemory memory_ = testing::testMemory(64 * kMiB);

  std::string errorOf(const std::vector<uint8_t>& image) {
    absl::StatusOr<ElfKernel> kernel = parseElfKernel(image, memory_);
    EXPECT_FALSE(kernel.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(kernel.status())) << kernel.status();
    return std::string(kernel.status().message());
  }
};

uint64_t phdrField(uint64_t index, uint64_t field) {
  return testing::kElfProgramHeaders + index * testing::kElfPhdrSize + field;
}

TEST_F(ElfTest, ParsesSegmentsAndThePvhNote) {
  testing::ElfSpec spec;
  spec.segments.push_back({16 * kMiB, testing::pattern(0x2000, 1), 0});
  spec.segments.push_back({20 * kMiB, testing::pattern(0x1000, 2), 0x5000});
  spec.entry = 16 * kMiB;
  spec.pvh_entry = 16 * kMiB + 0x40;
  auto kernel = parseElfKernel(testing::buildElf(spec), memory_);
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  ASSERT_EQ(kernel->segments.size(), 2u);
  EXPECT_EQ(kernel->segments[1].address, GuestAddress(20 * kMiB));
  EXPECT_EQ(kernel->segments[1].file_size, 0x1000u);
  EXPECT_EQ(kernel->segments[1].memory_size, 0x5000u);
  EXPECT_EQ(kernel->entry, GuestAddress(16 * kMiB));
  EXPECT_EQ(kernel->pvh_entry, GuestAddress(16 * kMiB + 0x40));
  EXPECT_EQ(kernel->start, GuestAddress(16 * kMiB));
  EXPECT_EQ(kernel->end, GuestAddress(20 * kMiB + 0x5000));
  EXPECT_TRUE(kernel->loads(GuestAddress(20 * kMiB + 0x4fff)));
  EXPECT_FALSE(kernel->loads(GuestAddress(20 * kMiB + 0x5000)));
  EXPECT_FALSE(kernel->loads(GuestAddress(17 * kMiB)));
}

TEST_F(ElfTest, PvhNoteWithA32BitDescriptor) {
  testing::ElfSpec spec;
  spec.segments.push_back({16 * kMiB, testing::pattern(0x1000, 1), 0});
  spec.pvh_entry = 16 * kMiB + 8;
  spec.pvh_desc_size = 4;
  spec.other_note_first = false;
  auto kernel = parseElfKernel(testing::buildElf(spec), memory_);
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  EXPECT_EQ(kernel->pvh_entry, GuestAddress(16 * kMiB + 8));
}

TEST_F(ElfTest, NoNoteMeansNoPvhEntry) {
  auto kernel = parseElfKernel(testing::simpleElf(false), memory_);
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  EXPECT_FALSE(kernel->pvh_entry.has_value());
}

TEST_F(ElfTest, LoadPlacesBytesAtPaddrAndZeroFillsTheRest) {
  testing::ElfSpec spec;
  spec.segments.push_back({16 * kMiB, testing::pattern(0x1800, 4), 0x4000});
  spec.entry = 16 * kMiB;
  const std::vector<uint8_t> image = testing::buildElf(spec);
  // Stale bytes where the kernel goes must not survive the zero fill.
  auto target = memory_.span(GuestAddress(16 * kMiB), 0x5000);
  ASSERT_TRUE(target.ok());
  std::fill(target->begin(), target->end(), uint8_t{0xcc});

  auto kernel = parseElfKernel(image, memory_);
  ASSERT_TRUE(kernel.ok()) << kernel.status();
  ASSERT_TRUE(loadElfKernel(memory_, image, *kernel).ok());
  std::vector<uint8_t> loaded(0x1800);
  ASSERT_TRUE(memory_.read(GuestAddress(16 * kMiB), loaded).ok());
  EXPECT_EQ(loaded, testing::pattern(0x1800, 4));
  std::vector<uint8_t> bss(0x4000 - 0x1800);
  ASSERT_TRUE(memory_.read(GuestAddress(16 * kMiB + 0x1800), bss).ok());
  EXPECT_EQ(bss, std::vector<uint8_t>(bss.size(), 0));
  EXPECT_EQ(*memory_.readObject<uint8_t>(GuestAddress(16 * kMiB + 0x4000)), 0xcc)
      << "nothing past p_memsz is touched";
}

TEST_F(ElfTest, TruncatedHeader) {
  std::vector<uint8_t> image = testing::simpleElf(false);
  image.resize(40);
  EXPECT_THAT(errorOf(image), HasSubstr("ELF kernel: the image (40 bytes) is too short"));
}

TEST_F(ElfTest, WrongClassMachineOrType) {
  std::vector<uint8_t> image = testing::simpleElf(false);
  image[4] = 1;  // ELFCLASS32
  EXPECT_THAT(errorOf(image), HasSubstr("ELF class 1 is not ELF64"));
  image = testing::simpleElf(false);
  poke<uint16_t>(image, 18, 3);  // EM_386
  EXPECT_THAT(errorOf(image), HasSubstr("machine 3 is not x86-64"));
  image = testing::simpleElf(false);
  poke<uint16_t>(image, 16, 3);  // ET_DYN
  EXPECT_THAT(errorOf(image), HasSubstr("type 3 is not an executable"));
}

TEST_F(ElfTest, ProgramHeadersOutOfRange) {
  std::vector<uint8_t> image = testing::simpleElf(false);
  poke<uint64_t>(image, testing::kElfPhoffOffset, image.size() - 20);
  EXPECT_THAT(errorOf(image), HasSubstr("program headers at offset"));
  poke<uint64_t>(image, testing::kElfPhoffOffset, ~uint64_t{0} - 10);
  EXPECT_THAT(errorOf(image), HasSubstr("lie outside the"));
}

TEST_F(ElfTest, AbsurdProgramHeaderCounts) {
  std::vector<uint8_t> image = testing::simpleElf(false);
  poke<uint16_t>(image, testing::kElfPhnumOffset, 0xffff);
  EXPECT_THAT(errorOf(image), HasSubstr("65535 program headers (a kernel has 1 to 128)"));
  poke<uint16_t>(image, testing::kElfPhnumOffset, 0);
  EXPECT_THAT(errorOf(image), HasSubstr("0 program headers"));
}

TEST_F(ElfTest, SegmentThatWrapsAround) {
  std::vector<uint8_t> image = testing::simpleElf(false);
  poke<uint64_t>(image, phdrField(0, testing::kPhdrPaddr), ~uint64_t{0} - 0xfff);
  EXPECT_THAT(errorOf(image), HasSubstr("program header 0 (PT_LOAD at 0xfffffffffffff000, "
                                        "0x3000 bytes) wraps around the address space"));
}

TEST_F(ElfTest, SegmentBeyondRam) {
  std::vector<uint8_t> image = testing::simpleElf(false);
  poke<uint64_t>(image, phdrField(0, testing::kPhdrMemsz), 0x4000000);
  EXPECT_THAT(errorOf(image),
              HasSubstr("ELF kernel: program header 0 (PT_LOAD at 0x1000000, 0x4000000 bytes) "
                        "does not fit in the VM's 64 MiB of RAM: give the VM more memory"));
}

TEST_F(ElfTest, SegmentInTheMmioHoleOfALargeVm) {
  GuestMemory large = testing::testMemory(uint64_t{5} << 30);
  std::vector<uint8_t> image = testing::simpleElf(false);
  poke<uint64_t>(image, phdrField(0, testing::kPhdrPaddr), (uint64_t{3} << 30) - 0x1000);
  auto kernel = parseElfKernel(image, large);
  ASSERT_FALSE(kernel.ok());
  EXPECT_THAT(kernel.status().message(), HasSubstr("lies beyond the RAM below 3 GiB"));
}

TEST_F(ElfTest, SegmentOverTheBootData) {
  std::vector<uint8_t> image = testing::simpleElf(false);
  poke<uint64_t>(image, phdrField(0, testing::kPhdrPaddr), 0x9000);
  EXPECT_THAT(errorOf(image), HasSubstr("overlaps the boot data below 1 MiB"));
}

TEST_F(ElfTest, SegmentBytesOutsideTheImage) {
  std::vector<uint8_t> image = testing::simpleElf(false);
  poke<uint64_t>(image, phdrField(0, testing::kPhdrFilesz), image.size());
  poke<uint64_t>(image, phdrField(0, testing::kPhdrMemsz), image.size());
  EXPECT_THAT(errorOf(image), HasSubstr("outside the"));
  image = testing::simpleElf(false);
  poke<uint64_t>(image, phdrField(0, testing::kPhdrOffset), ~uint64_t{0} - 4);
  EXPECT_THAT(errorOf(image), HasSubstr("the file is truncated or corrupt"));
}

TEST_F(ElfTest, MoreFileBytesThanMemoryBytes) {
  std::vector<uint8_t> image = testing::simpleElf(false);
  poke<uint64_t>(image, phdrField(0, testing::kPhdrMemsz), 0x100);
  EXPECT_THAT(errorOf(image), HasSubstr("more bytes in the file (0x3000) than in memory (0x100)"));
}

TEST_F(ElfTest, NoteWithBadSizes) {
  testing::ElfSpec spec;
  spec.segments.push_back({16 * kMiB, testing::pattern(0x1000, 1), 0});
  spec.pvh_entry = 16 * kMiB;
  spec.other_note_first = false;
  std::vector<uint8_t> image = testing::buildElf(spec);
  const uint64_t note = testing::kElfProgramHeaders + 2 * testing::kElfPhdrSize;
  std::vector<uint8_t> bad_name = image;
  poke<uint32_t>(bad_name, note, 0xfffffff0);  // n_namesz
  EXPECT_THAT(errorOf(bad_name), HasSubstr("run past its end"));
  std::vector<uint8_t> bad_desc = image;
  poke<uint32_t>(bad_desc, note + 4, 0xffffffff);  // n_descsz
  EXPECT_THAT(errorOf(bad_desc), HasSubstr("run past its end"));

  spec.pvh_desc_size = 6;
  EXPECT_THAT(errorOf(testing::buildElf(spec)),
              HasSubstr("the PVH entry note (Xen, type 18) has a 6-byte descriptor"));
}

TEST_F(ElfTest, NoteSegmentOutsideTheImage) {
  std::vector<uint8_t> image = testing::simpleElf(true);
  poke<uint64_t>(image, phdrField(1, testing::kPhdrFilesz), image.size());
  EXPECT_THAT(errorOf(image), HasSubstr("program header 1 (PT_NOTE)"));
}

TEST_F(ElfTest, PvhEntryAbove4GiB) {
  testing::ElfSpec spec;
  spec.segments.push_back({16 * kMiB, testing::pattern(0x1000, 1), 0});
  spec.pvh_entry = uint64_t{1} << 32;
  EXPECT_THAT(errorOf(testing::buildElf(spec)), HasSubstr("is above 4 GiB"));
}

TEST_F(ElfTest, NothingToLoad) {
  testing::ElfSpec spec;
  spec.pvh_entry = 16 * kMiB;
  EXPECT_THAT(errorOf(testing::buildElf(spec)), HasSubstr("nothing to load"));
}

TEST_F(ElfTest, EveryTruncationIsAnErrorNotACrash) {
  const std::vector<uint8_t> image = testing::simpleElf(true);
  for (size_t size = 0; size < image.size(); ++size) {
    std::vector<uint8_t> prefix(image.begin(), image.begin() + static_cast<ptrdiff_t>(size));
    EXPECT_FALSE(parseElfKernel(prefix, memory_).ok()) << size;
  }
}

}  // namespace
}  // namespace flotilla::vmm
