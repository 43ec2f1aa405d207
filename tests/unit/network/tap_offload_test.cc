// Tests of the pure parts of the tap layer: the TUNSETOFFLOAD mask computed from the guest's
// virtio-net features, and interface name validation.
#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "network/tap.h"

namespace flotilla::network {
namespace {

using ::testing::HasSubstr;

// virtio 1.3 section 5.1.3 feature bits.
constexpr uint64_t bit(int n) {
  return uint64_t{1} << n;
}
constexpr uint64_t kCsum = bit(0);  // the host (device) side: not a receive offload
constexpr uint64_t kGuestCsum = bit(1);
constexpr uint64_t kGuestTso4 = bit(7);
constexpr uint64_t kGuestTso6 = bit(8);
constexpr uint64_t kGuestEcn = bit(9);
constexpr uint64_t kGuestUfo = bit(10);
constexpr uint64_t kHostTso4 = bit(11);
constexpr uint64_t kMrgRxbuf = bit(15);
constexpr uint64_t kVersion1 = bit(32);
constexpr uint64_t kGuestUso4 = bit(54);
constexpr uint64_t kGuestUso6 = bit(55);

TEST(TunOffloadTest, MapsGuestReceiveFeatures) {
  EXPECT_EQ(tunOffloadsForGuestFeatures(0), 0u);
  EXPECT_EQ(tunOffloadsForGuestFeatures(kGuestCsum), kTunOffloadCsum);
  EXPECT_EQ(tunOffloadsForGuestFeatures(kGuestCsum | kGuestTso4),
            kTunOffloadCsum | kTunOffloadTso4);
  EXPECT_EQ(tunOffloadsForGuestFeatures(kGuestCsum | kGuestTso6),
            kTunOffloadCsum | kTunOffloadTso6);
  EXPECT_EQ(tunOffloadsForGuestFeatures(kGuestCsum | kGuestTso4 | kGuestTso6 | kGuestEcn),
            kTunOffloadCsum | kTunOffloadTso4 | kTunOffloadTso6 | kTunOffloadTsoEcn);
  EXPECT_EQ(tunOffloadsForGuestFeatures(kGuestCsum | kGuestUfo), kTunOffloadCsum | kTunOffloadUfo);
  EXPECT_EQ(tunOffloadsForGuestFeatures(kGuestCsum | kGuestUso4 | kGuestUso6),
            kTunOffloadCsum | kTunOffloadUso4 | kTunOffloadUso6);
  // What Linux guests negotiate by default.
  EXPECT_EQ(
      tunOffloadsForGuestFeatures(kVersion1 | kMrgRxbuf | kCsum | kGuestCsum | kGuestTso4 |
                                  kGuestTso6 | kGuestEcn | kGuestUfo | kHostTso4),
      kTunOffloadCsum | kTunOffloadTso4 | kTunOffloadTso6 | kTunOffloadTsoEcn | kTunOffloadUfo);
}

TEST(TunOffloadTest, DropsWhatTheKernelWouldRefuse) {
  // Segmentation without partial checksums: nothing.
  EXPECT_EQ(tunOffloadsForGuestFeatures(kGuestTso4 | kGuestTso6 | kGuestEcn | kGuestUfo), 0u);
  // ECN without TSO.
  EXPECT_EQ(tunOffloadsForGuestFeatures(kGuestCsum | kGuestEcn), kTunOffloadCsum);
  // USO for one family only.
  EXPECT_EQ(tunOffloadsForGuestFeatures(kGuestCsum | kGuestUso4), kTunOffloadCsum);
  EXPECT_EQ(tunOffloadsForGuestFeatures(kGuestCsum | kGuestUso6), kTunOffloadCsum);
  // Host (transmit) features never turn on receive offloads.
  EXPECT_EQ(tunOffloadsForGuestFeatures(kCsum | kHostTso4 | kMrgRxbuf | kVersion1), 0u);
}

TEST(TunOffloadTest, EveryResultIsAMaskTheKernelAccepts) {
  // The kernel's rules (drivers/net/tun.c set_offload): everything needs CSUM, ECN needs
  // TSO4 or TSO6, USO4 and USO6 come together. Check all combinations of the seven features.
  const uint64_t features[] = {kGuestCsum, kGuestTso4, kGuestTso6, kGuestEcn,
                               kGuestUfo,  kGuestUso4, kGuestUso6};
  for (uint32_t combination = 0; combination < 128; ++combination) {
    uint64_t guest = 0;
    for (int i = 0; i < 7; ++i) {
      if (combination & (1u << i)) guest |= features[i];
    }
    const uint32_t mask = tunOffloadsForGuestFeatures(guest);
    SCOPED_TRACE(describeTunOffloads(mask));
    EXPECT_EQ(mask & ~kTunOffloadAll, 0u);
    if (mask != 0) {
      EXPECT_TRUE(mask & kTunOffloadCsum);
    }
    if (mask & kTunOffloadTsoEcn) {
      EXPECT_TRUE(mask & (kTunOffloadTso4 | kTunOffloadTso6));
    }
    EXPECT_EQ((mask & kTunOffloadUso4) != 0, (mask & kTunOffloadUso6) != 0);
  }
}

TEST(TunOffloadTest, Describes) {
  EXPECT_EQ(describeTunOffloads(0), "none");
  EXPECT_EQ(describeTunOffloads(kTunOffloadCsum | kTunOffloadTso4 | kTunOffloadTsoEcn),
            "csum,tso4,tso_ecn");
  EXPECT_EQ(describeTunOffloads(kTunOffloadAll), "csum,tso4,tso6,tso_ecn,ufo,uso4,uso6");
  EXPECT_EQ(describeTunOffloads(kTunOffloadCsum | 0x100), "csum,0x100");
}

TEST(InterfaceNameTest, AcceptsLinuxNamesOnly) {
  EXPECT_TRUE(validateInterfaceName("vm1tap").ok());
  EXPECT_TRUE(validateInterfaceName("tap-123456789ab").ok());  // 15 characters
  auto too_long = validateInterfaceName("tap-123456789abc");
  EXPECT_EQ(too_long.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_long.message(), HasSubstr("\"tap-123456789abc\" is 16 characters long"));
  EXPECT_THAT(too_long.message(), HasSubstr("at most 15"));
  for (const char* bad : {"", ".", "..", "a/b", "a:b", "a b", "a\tb"}) {
    EXPECT_EQ(validateInterfaceName(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(InterfaceNameTest, TapOpenRefusesBadNamesBeforeTouchingTheKernel) {
  // No root needed: the name is checked first, and the message names the tap.
  auto tap = Tap::open("a-very-long-tap-name");
  ASSERT_FALSE(tap.ok());
  EXPECT_EQ(tap.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tap.status().message(), HasSubstr("cannot open tap a-very-long-tap-name"));
  EXPECT_THAT(tap.status().message(), HasSubstr("at most 15"));
}

}  // namespace
}  // namespace flotilla::network
