// Tests of the bzImage parser: load address, entry point and limits from the setup header,
// and refusal of truncated, old, 32-bit and inconsistent images.
#include "vmm/boot/bzimage.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_images.h"

namespace flotilla::vmm {
namespace {

using ::testing::HasSubstr;
using testing::kMiB;

class BzImageTest : public ::testing::Test {
 protected:
  GuestMemory memory_ = testing::testMemory(64 * kMiB);

  std::string errorOf(const std::vector<uint8_t>& image) {
    absl::StatusOr<BzImage> parsed = parseBzImage(image, memory_);
    EXPECT_FALSE(parsed.ok());
    EXPECT_TRUE(absl::IsInvalidArgument(parsed.status())) << parsed.status();
    return std::string(parsed.status().message());
  }
};

TEST_F(BzImageTest, LoadsAtThePreferredAddressWithTheEntryAt0x200) {
  testing::BzImageSpec spec;
  spec.payload = testing::pattern(0x3000, 7);
  const std::vector<uint8_t> image = testing::buildBzImage(spec);
  ASSERT_TRUE(looksLikeBzImage(image));
  auto parsed = parseBzImage(image, memory_);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->load_address, GuestAddress(16 * kMiB));
  EXPECT_EQ(parsed->entry64, GuestAddress(16 * kMiB + 0x200));
  EXPECT_EQ(parsed->footprint, 8 * kMiB) << "init_size is larger than the payload";
  EXPECT_EQ(parsed->kernel.size(), 0x3000u);
  EXPECT_EQ(parsed->kernel[0], testing::pattern(1, 7)[0]);
  EXPECT_EQ(parsed->cmdline_max, 2047u);
  EXPECT_EQ(parsed->initrd_end_max, 0x80000000u);
  EXPECT_EQ(parsed->header_bytes.size(), 0x26cu - 0x1f1u);
  EXPECT_EQ(parsed->header.version, 0x020f);

  ASSERT_TRUE(loadBzImage(memory_, *parsed).ok());
  std::vector<uint8_t> loaded(0x3000);
  ASSERT_TRUE(memory_.read(GuestAddress(16 * kMiB), loaded).ok());
  EXPECT_EQ(loaded, spec.payload);
}

TEST_F(BzImageTest, SetupSectsZeroMeansFour) {
  testing::BzImageSpec spec;
  spec.setup_sects = 0;
  spec.payload = testing::pattern(0x1000, 1);
  auto parsed = parseBzImage(testing::buildBzImage(spec), memory_);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->kernel.size(), 0x1000u);
  EXPECT_EQ(parsed->kernel[5], spec.payload[5]);
}

TEST_F(BzImageTest, RelocatableKernelsAreAlignedFixedOnesAreNot) {
  testing::BzImageSpec spec;
  spec.pref_address = 16 * kMiB + 0x1000;
  auto relocatable = parseBzImage(testing::buildBzImage(spec), memory_);
  ASSERT_TRUE(relocatable.ok()) << relocatable.status();
  EXPECT_EQ(relocatable->load_address, GuestAddress(18 * kMiB));

  spec.relocatable = 0;
  spec.kernel_alignment = 3;  // ignored: the kernel is not relocatable
  auto fixed = parseBzImage(testing::buildBzImage(spec), memory_);
  ASSERT_TRUE(fixed.ok()) << fixed.status();
  EXPECT_EQ(fixed->load_address, GuestAddress(16 * kMiB + 0x1000));
}

TEST_F(BzImageTest, SetupSectsPastTheEnd) {
  testing::BzImageSpec spec;
  std::vector<uint8_t> image = testing::buildBzImage(spec);
  image[0x1f1] = 200;
  EXPECT_THAT(errorOf(image), HasSubstr("setup_sects = 200 puts the kernel at offset 0x19200, at "
                                        "or past the end of the"));
}

TEST_F(BzImageTest, TooOldProtocol) {
  testing::BzImageSpec spec;
  spec.version = 0x0204;
  EXPECT_THAT(errorOf(testing::buildBzImage(spec)),
              HasSubstr("bzImage: boot protocol 2.04 is too old for 64-bit boot (need 2.12 or "
                        "later"));
}

TEST_F(BzImageTest, Not64Bit) {
  testing::BzImageSpec spec;
  spec.xloadflags = 0;
  EXPECT_THAT(errorOf(testing::buildBzImage(spec)),
              HasSubstr("no 64-bit entry point (XLF_KERNEL_64 is not set"));
  spec.xloadflags = 1;
  spec.loadflags = 0;
  EXPECT_THAT(errorOf(testing::buildBzImage(spec)), HasSubstr("it is a zImage"));
}

TEST_F(BzImageTest, TruncatedHeader) {
  std::vector<uint8_t> image = testing::buildBzImage({});
  image.resize(0x240);
  EXPECT_THAT(errorOf(image), HasSubstr("the setup header ends at 0x26c, past the end of the "
                                        "576-byte image"));
}

TEST_F(BzImageTest, HeaderTooShortForItsProtocol) {
  std::vector<uint8_t> image = testing::buildBzImage({});
  image[0x201] = 0x30;  // the header would end at 0x232, before init_size
  EXPECT_THAT(errorOf(image), HasSubstr("before its init_size field"));
}

TEST_F(BzImageTest, KernelLargerThanRam) {
  testing::BzImageSpec spec;
  spec.init_size = 60 * kMiB;
  EXPECT_THAT(
      errorOf(testing::buildBzImage(spec)),
      HasSubstr("the kernel needs 60 MiB from 0x1000000 (init_size 0x3c00000, 4 KiB in "
                "the image), RAM up to 76 MiB; the VM has 64 MiB: give the VM more memory"));
}

TEST_F(BzImageTest, BadAlignmentOrLoadAddress) {
  testing::BzImageSpec spec;
  spec.kernel_alignment = 0x3000;
  EXPECT_THAT(errorOf(testing::buildBzImage(spec)), HasSubstr("is not a power of two"));
  spec = {};
  spec.relocatable = 0;
  spec.pref_address = 0x10000;
  EXPECT_THAT(errorOf(testing::buildBzImage(spec)), HasSubstr("inside the boot data below 1 MiB"));
  spec = {};
  spec.pref_address = ~uint64_t{0} - 0x1000;
  EXPECT_THAT(errorOf(testing::buildBzImage(spec)), HasSubstr("cannot be aligned"));
}

TEST_F(BzImageTest, PayloadTooShortForTheEntryPoint) {
  testing::BzImageSpec spec;
  spec.payload = testing::pattern(0x100, 1);
  EXPECT_THAT(errorOf(testing::buildBzImage(spec)),
              HasSubstr("too short to hold the 64-bit entry"));
}

TEST_F(BzImageTest, EveryTruncationIsAnErrorNotACrash) {
  testing::BzImageSpec spec;
  spec.payload = testing::pattern(0x300, 1);
  const std::vector<uint8_t> image = testing::buildBzImage(spec);
  for (size_t size = 0; size <= image.size(); ++size) {
    std::vector<uint8_t> prefix(image.begin(), image.begin() + static_cast<ptrdiff_t>(size));
    // Only the whole image (payload just past 0x200 bytes) parses.
    EXPECT_EQ(parseBzImage(prefix, memory_).ok(), size > 4 * 512 + 0x200) << size;
  }
}

}  // namespace
}  // namespace flotilla::vmm
