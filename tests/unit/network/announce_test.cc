// Tests of the post-migration announcement frames: byte-exact against frames written out by
// hand from RFC 826/903 and QEMU's announce_self, and the parser the integration tests use.
#include "network/announce.h"

#include <cstdint>
#include <vector>

#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace flotilla::network {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

const MacAddress kMac(MacAddress::Bytes{0x52, 0x54, 0x00, 0x12, 0x34, 0x56});
const Ipv4Address kIp{{10, 0, 0, 5}};

TEST(AnnounceTest, RarpMatchesQemusAnnounceSelfByteForByte) {
  const std::vector<uint8_t> expected = {
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // destination: broadcast
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // source: the VM
      0x80, 0x35,                          // ethertype RARP
      0x00, 0x01,                          // hardware type Ethernet
      0x08, 0x00,                          // protocol type IPv4
      0x06, 0x04,                          // address lengths
      0x00, 0x03,                          // opcode 3: reverse request
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // sender hardware address
      0x00, 0x00, 0x00, 0x00,              // sender protocol address
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // target hardware address
      0x00, 0x00, 0x00, 0x00,              // target protocol address
      0,    0,    0,    0,    0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // padding to 60
  };
  ASSERT_EQ(expected.size(), 60u);
  EXPECT_THAT(buildRarpAnnouncement(kMac), ElementsAreArray(expected));
}

TEST(AnnounceTest, GratuitousArpIsABroadcastRequestForItsOwnAddress) {
  const std::vector<uint8_t> expected = {
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // destination: broadcast
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // source: the VM
      0x08, 0x06,                          // ethertype ARP
      0x00, 0x01, 0x08, 0x00, 0x06, 0x04,  // Ethernet / IPv4, lengths 6 and 4
      0x00, 0x01,                          // opcode 1: request
      0x52, 0x54, 0x00, 0x12, 0x34, 0x56,  // sender hardware address
      10,   0,    0,    5,                 // sender protocol address
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // target hardware address: zero (RFC 5227)
      10,   0,    0,    5,                 // target protocol address = sender's
      0,    0,    0,    0,    0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // padding to 60
  };
  ASSERT_EQ(expected.size(), 60u);
  EXPECT_THAT(buildGratuitousArp(kMac, kIp), ElementsAreArray(expected));
}

TEST(AnnounceTest, OneRoundIsRarpThenGratuitousArpWhenTheAddressIsKnown) {
  auto without_ip = buildAnnouncements(kMac, std::nullopt);
  ASSERT_EQ(without_ip.size(), 1u);
  EXPECT_EQ(without_ip[0], buildRarpAnnouncement(kMac));
  auto with_ip = buildAnnouncements(kMac, kIp);
  ASSERT_EQ(with_ip.size(), 2u);
  EXPECT_EQ(with_ip[0], buildRarpAnnouncement(kMac));
  EXPECT_EQ(with_ip[1], buildGratuitousArp(kMac, kIp));
}

TEST(AnnounceTest, ParserRecognisesBothFrames) {
  auto rarp = parseAnnouncement(buildRarpAnnouncement(kMac));
  ASSERT_TRUE(rarp.has_value());
  EXPECT_EQ(rarp->kind, Announcement::Kind::kRarp);
  EXPECT_EQ(rarp->mac, kMac);
  EXPECT_FALSE(rarp->ip.has_value());

  auto garp = parseAnnouncement(buildGratuitousArp(kMac, kIp));
  ASSERT_TRUE(garp.has_value());
  EXPECT_EQ(garp->kind, Announcement::Kind::kGratuitousArp);
  EXPECT_EQ(garp->mac, kMac);
  ASSERT_TRUE(garp->ip.has_value());
  EXPECT_EQ(*garp->ip, kIp);

  const MacAddress other(MacAddress::Bytes{0x52, 0x54, 0x00, 0x12, 0x34, 0x57});
  EXPECT_TRUE(isAnnouncementFor(buildRarpAnnouncement(kMac), kMac));
  EXPECT_TRUE(isAnnouncementFor(buildGratuitousArp(kMac, kIp), kMac));
  EXPECT_FALSE(isAnnouncementFor(buildRarpAnnouncement(kMac), other));
  // Without padding (as a capture may show them) they still parse.
  std::vector<uint8_t> unpadded = buildRarpAnnouncement(kMac);
  unpadded.resize(42);
  EXPECT_TRUE(isAnnouncementFor(unpadded, kMac));
}

TEST(AnnounceTest, ParserRejectsEverythingElse) {
  auto mutated = [](std::vector<uint8_t> frame, size_t at, uint8_t value) {
    frame[at] = value;
    return frame;
  };
  const std::vector<uint8_t> rarp = buildRarpAnnouncement(kMac);
  const std::vector<uint8_t> garp = buildGratuitousArp(kMac, kIp);
  EXPECT_FALSE(parseAnnouncement({}).has_value());
  EXPECT_FALSE(parseAnnouncement(std::span(rarp).first(41)).has_value());  // truncated
  EXPECT_FALSE(parseAnnouncement(mutated(rarp, 0, 0x52)).has_value());     // not broadcast
  EXPECT_FALSE(parseAnnouncement(mutated(rarp, 12, 0x86)).has_value());    // other ethertype
  EXPECT_FALSE(parseAnnouncement(mutated(rarp, 21, 4)).has_value());       // reverse reply
  EXPECT_FALSE(parseAnnouncement(mutated(rarp, 27, 0x57)).has_value());    // sender != source
  EXPECT_FALSE(parseAnnouncement(mutated(rarp, 37, 0x57)).has_value());    // target != source
  EXPECT_FALSE(parseAnnouncement(mutated(rarp, 18, 8)).has_value());       // bad lengths
  EXPECT_FALSE(parseAnnouncement(mutated(garp, 41, 6)).has_value());       // asks for another IP
  EXPECT_FALSE(parseAnnouncement(mutated(garp, 21, 3)).has_value());       // ARP with opcode 3
  // A multicast source cannot be a station's address.
  std::vector<uint8_t> group_source = mutated(mutated(rarp, 6, 0x53), 22, 0x53);
  group_source[32] = 0x53;
  EXPECT_FALSE(parseAnnouncement(group_source).has_value());
  // An ARP reply announcing itself (some stacks send those) is accepted.
  EXPECT_TRUE(parseAnnouncement(mutated(garp, 21, 2)).has_value());
}

TEST(AnnounceTest, ScheduleFollowsQemusDefaults) {
  AnnounceSchedule schedule;
  EXPECT_EQ(schedule.rounds, 5);
  EXPECT_EQ(announcePauseAfter(schedule, 0), absl::Milliseconds(50));
  EXPECT_EQ(announcePauseAfter(schedule, 1), absl::Milliseconds(150));
  EXPECT_EQ(announcePauseAfter(schedule, 4), absl::Milliseconds(450));
  EXPECT_EQ(announcePauseAfter(schedule, 5), absl::Milliseconds(550));
  EXPECT_EQ(announcePauseAfter(schedule, 9), absl::Milliseconds(550));  // capped at max
}

TEST(Ipv4AddressTest, ParsesDottedQuadsOnly) {
  auto ip = Ipv4Address::parse("192.168.1.254");
  ASSERT_TRUE(ip.ok()) << ip.status();
  EXPECT_EQ(ip->octets, (std::array<uint8_t, 4>{192, 168, 1, 254}));
  EXPECT_EQ(ip->toString(), "192.168.1.254");
  for (const char* bad :
       {"", "10.0.0", "10.0.0.256", "10.0.0.1/24", "::1", "a.b.c.d", "10.0.0.1 ", "10.0.0.1.2"}) {
    auto parsed = Ipv4Address::parse(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_THAT(parsed.status().message(), HasSubstr(fmt::format("\"{}\"", bad)));
  }
}

}  // namespace
}  // namespace flotilla::network
