// Tap devices for real, each test in a network namespace of its own: frames with a virtio-net
// header in both directions, offloads as the kernel applies them, adopting descriptors,
// persistent taps, link administration and the errors. Needs root.
#include "network/tap.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "network/announce.h"
#include "network/mac_address.h"
#include "tests/integration/network/frames.h"
#include "tests/support/netns.h"

namespace flotilla::network {
namespace {

using testframes::broadcastFrame;
using testframes::tagOf;
using testframes::withoutVnetHeader;
using testframes::withVnetHeader;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr absl::Duration kFrameTimeout = absl::Seconds(10);

// The virtio-net header fields the kernel fills in (little-endian, virtio 1.x 5.1.6).
struct VnetHeader {
  uint8_t flags = 0;
  uint8_t gso_type = 0;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
};
constexpr uint8_t kVnetFlagNeedsCsum = 1;

VnetHeader parseVnetHeader(std::span<const uint8_t> data) {
  auto le16 = [&](size_t at) { return static_cast<uint16_t>(data[at] | (data[at + 1] << 8)); };
  return VnetHeader{data[0], data[1], le16(2), le16(4), le16(6), le16(8)};
}

class TapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ns = testing::NetNamespace::create("tap");
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = std::move(*ns);
  }

  // A tap in the namespace, up (with a 12-byte header unless `options` say otherwise).
  absl::StatusOr<Tap> openUpTap(const std::string& name, const TapOptions& options = {}) {
    ASSIGN_OR_RETURN(Tap tap, ns_->openTap(name, options));
    RETURN_IF_ERROR(ns_->setLinkUp(name));
    return tap;
  }

  std::unique_ptr<testing::NetNamespace> ns_;
  const MacAddress mac_ = MacAddress::randomLocal();
};

TEST_F(TapTest, FrameWrittenWithVnetHeaderArrivesInTheNamespace) {
  auto tap_or = openUpTap("vt0");
  ASSERT_TRUE(tap_or.ok()) << tap_or.status();
  Tap tap = std::move(*tap_or);
  EXPECT_EQ(tap.name(), "vt0");
  EXPECT_TRUE(tap.hasVnetHeader());
  EXPECT_EQ(tap.vnetHeaderBytes(), 12u);
  int kernel_size = 0;
  ASSERT_EQ(::ioctl(tap.fd(), TUNGETVNETHDRSZ, &kernel_size), 0);
  EXPECT_EQ(kernel_size, 12);
  EXPECT_TRUE(::fcntl(tap.fd(), F_GETFL) & O_NONBLOCK);

  auto socket = ns_->packetSocket("vt0");
  ASSERT_TRUE(socket.ok()) << socket.status();
  const std::vector<uint8_t> frame = broadcastFrame(mac_, "from the vmm");
  ASSERT_TRUE(tap.write(withVnetHeader(frame)).ok());

  auto received = testing::readMatchingFrame(
      socket->get(), [](std::span<const uint8_t> f) { return tagOf(f) == "from the vmm"; },
      kFrameTimeout);
  ASSERT_TRUE(received.ok()) << received.status();
  EXPECT_THAT(*received, ElementsAreArray(frame));  // the header is gone, the frame intact
}

TEST_F(TapTest, FrameSentInTheNamespaceArrivesOnTheTapBehindAHeader) {
  auto tap_or = openUpTap("vt0");
  ASSERT_TRUE(tap_or.ok()) << tap_or.status();
  Tap tap = std::move(*tap_or);
  uint8_t buffer[2048];
  auto nothing = tap.read(buffer);
  ASSERT_TRUE(nothing.ok()) << nothing.status();
  EXPECT_EQ(*nothing, 0u);  // non-blocking: nothing queued yet is not an error

  auto socket = ns_->packetSocket("vt0");
  ASSERT_TRUE(socket.ok()) << socket.status();
  const std::vector<uint8_t> frame = broadcastFrame(mac_, "to the guest");
  ASSERT_EQ(::send(socket->get(), frame.data(), frame.size(), 0),
            static_cast<ssize_t>(frame.size()))
      << std::strerror(errno);

  auto received = testing::readMatchingFrame(
      tap.fd(),
      [](std::span<const uint8_t> f) { return tagOf(withoutVnetHeader(f)) == "to the guest"; },
      kFrameTimeout);
  ASSERT_TRUE(received.ok()) << received.status();
  ASSERT_EQ(received->size(), 12 + frame.size());
  const VnetHeader header = parseVnetHeader(*received);
  EXPECT_EQ(header.flags, 0);
  EXPECT_EQ(header.gso_type, 0);  // VIRTIO_NET_HDR_GSO_NONE
  EXPECT_THAT(withoutVnetHeader(*received), ElementsAreArray(frame));
}

TEST_F(TapTest, TenByteHeadersAndTapsWithoutHeaders) {
  TapOptions legacy;
  legacy.vnet_header_bytes = 10;
  auto with_legacy_or = openUpTap("vt10", legacy);
  ASSERT_TRUE(with_legacy_or.ok()) << with_legacy_or.status();
  Tap with_legacy = std::move(*with_legacy_or);
  EXPECT_EQ(with_legacy.vnetHeaderBytes(), 10u);
  TapOptions plain;
  plain.vnet_header = false;
  auto without_or = openUpTap("vt0", plain);
  ASSERT_TRUE(without_or.ok()) << without_or.status();
  Tap without = std::move(*without_or);
  EXPECT_FALSE(without.hasVnetHeader());
  EXPECT_EQ(without.vnetHeaderBytes(), 0u);
  EXPECT_EQ(without.setOffloads(kTunOffloadCsum).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(without.setVnetHeaderBytes(12).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(with_legacy.setVnetHeaderBytes(8).code(), absl::StatusCode::kInvalidArgument);

  for (auto [tap, header] : {std::pair{&with_legacy, size_t{10}}, std::pair{&without, size_t{0}}}) {
    auto socket = ns_->packetSocket(tap->name());
    ASSERT_TRUE(socket.ok()) << socket.status();
    const std::string tag = "header " + std::to_string(header);
    const std::vector<uint8_t> frame = broadcastFrame(mac_, tag);
    ASSERT_TRUE(tap->write(withVnetHeader(frame, header)).ok());
    auto received = testing::readMatchingFrame(
        socket->get(), [&](std::span<const uint8_t> f) { return tagOf(f) == tag; }, kFrameTimeout);
    ASSERT_TRUE(received.ok()) << received.status();
    EXPECT_THAT(*received, ElementsAreArray(frame));
  }
}

TEST_F(TapTest, AnnouncementsWrittenToTheTapAreSeenOnTheWire) {
  auto tap_or = openUpTap("vt0");
  ASSERT_TRUE(tap_or.ok()) << tap_or.status();
  Tap tap = std::move(*tap_or);
  auto socket = ns_->packetSocket("vt0");
  ASSERT_TRUE(socket.ok()) << socket.status();
  const Ipv4Address ip{{10, 9, 8, 7}};
  for (const std::vector<uint8_t>& frame : buildAnnouncements(mac_, ip)) {
    ASSERT_TRUE(tap.write(withVnetHeader(frame)).ok());
  }
  auto rarp = testing::readMatchingFrame(
      socket->get(),
      [&](std::span<const uint8_t> f) {
        auto a = parseAnnouncement(f);
        return a.has_value() && a->mac == mac_ && a->kind == Announcement::Kind::kRarp;
      },
      kFrameTimeout);
  ASSERT_TRUE(rarp.ok()) << rarp.status();
  auto garp = testing::readMatchingFrame(
      socket->get(),
      [&](std::span<const uint8_t> f) {
        auto a = parseAnnouncement(f);
        return a.has_value() && a->mac == mac_ && a->ip == ip;
      },
      kFrameTimeout);
  ASSERT_TRUE(garp.ok()) << garp.status();
}

// The offload mask decides what the kernel hands the VMM: with CSUM on, a UDP datagram the
// namespace's stack sends through the tap arrives with a partial checksum to complete
// (VIRTIO_NET_HDR_F_NEEDS_CSUM); with offloads off it arrives complete and correct.
TEST_F(TapTest, OffloadsDecideWhetherChecksumsArriveIncomplete) {
  auto tap_or = openUpTap("vt0");
  ASSERT_TRUE(tap_or.ok()) << tap_or.status();
  Tap tap = std::move(*tap_or);
  ASSERT_TRUE(ns_->addAddress("vt0", "10.77.0.1/24").ok());
  // A permanent neighbour entry, so that the datagram leaves without an ARP exchange.
  ASSERT_TRUE(ns_->execChecked({"ip", "neigh", "add", "10.77.0.2", "lladdr", "52:54:00:77:00:02",
                                "dev", "vt0", "nud", "permanent"})
                  .ok());
  auto udp = ns_->udpSocket("10.77.0.1", 0);
  ASSERT_TRUE(udp.ok()) << udp.status();
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(7777);
  ASSERT_EQ(::inet_pton(AF_INET, "10.77.0.2", &to.sin_addr), 1);

  auto probed = tap.probeOffloads();
  ASSERT_TRUE(probed.ok()) << probed.status();
  const uint32_t expected =
      kTunOffloadCsum | kTunOffloadTso4 | kTunOffloadTso6 | kTunOffloadTsoEcn | kTunOffloadUfo;
  EXPECT_EQ(*probed & expected, expected) << describeTunOffloads(*probed);
  EXPECT_EQ(tap.offloads(), 0u);  // probing leaves them off

  // A Linux guest's usual receive features.
  const uint64_t guest = (1ull << 1) | (1ull << 7) | (1ull << 8) | (1ull << 9) | (1ull << 10);
  for (bool offloads_on : {true, false}) {
    SCOPED_TRACE(offloads_on ? "offloads on" : "offloads off");
    if (offloads_on) {
      ASSERT_TRUE(tap.setOffloads(tunOffloadsForGuestFeatures(guest)).ok());
      EXPECT_EQ(tap.offloads(), expected);
    } else {
      ASSERT_TRUE(tap.disableOffloads().ok());
    }
    const std::string payload = offloads_on ? "partial" : "complete";
    ASSERT_EQ(::sendto(udp->get(), payload.data(), payload.size(), 0,
                       reinterpret_cast<const sockaddr*>(&to), sizeof(to)),
              static_cast<ssize_t>(payload.size()));
    constexpr size_t kUdp = 12 + 14 + 20;  // vnet header, Ethernet, IPv4 without options
    auto received = testing::readMatchingFrame(
        tap.fd(),
        [&](std::span<const uint8_t> f) {
          return f.size() == kUdp + 8 + payload.size() && f[12 + 12] == 0x08 &&
                 f[12 + 13] == 0x00 && f[12 + 14 + 9] == IPPROTO_UDP &&
                 std::memcmp(f.data() + kUdp + 8, payload.data(), payload.size()) == 0;
        },
        kFrameTimeout);
    ASSERT_TRUE(received.ok()) << received.status();
    const VnetHeader header = parseVnetHeader(*received);
    if (offloads_on) {
      EXPECT_EQ(header.flags & kVnetFlagNeedsCsum, kVnetFlagNeedsCsum);
      EXPECT_EQ(header.csum_start, 14 + 20);  // the UDP header
      EXPECT_EQ(header.csum_offset, 6);       // its checksum field
    } else {
      EXPECT_EQ(header.flags, 0);
      EXPECT_TRUE(testframes::udpChecksumValid(withoutVnetHeader(*received)));
    }
  }
}

TEST_F(TapTest, KernelRefusesInconsistentOffloads) {
  auto tap_or = openUpTap("vt0");
  ASSERT_TRUE(tap_or.ok()) << tap_or.status();
  Tap tap = std::move(*tap_or);
  absl::Status tso_alone = tap.setOffloads(kTunOffloadTso4);
  EXPECT_EQ(tso_alone.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tso_alone.message(), HasSubstr("tap vt0"));
  EXPECT_THAT(tso_alone.message(), HasSubstr("tso4"));
  EXPECT_EQ(tap.setOffloads(kTunOffloadCsum | kTunOffloadTsoEcn).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(tap.setOffloads(kTunOffloadCsum).ok());
  EXPECT_EQ(tap.offloads(), kTunOffloadCsum);
}

TEST_F(TapTest, MalformedFramesFromTheGuestAreErrorsNotCrashes) {
  auto tap_or = openUpTap("vt0");
  ASSERT_TRUE(tap_or.ok()) << tap_or.status();
  Tap tap = std::move(*tap_or);
  const uint8_t too_short[5] = {};
  absl::Status shorter_than_header = tap.write(too_short);
  EXPECT_EQ(shorter_than_header.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shorter_than_header.message(), HasSubstr("tap vt0"));
  // A GSO type the kernel does not know.
  std::vector<uint8_t> bad_gso = withVnetHeader(broadcastFrame(mac_, "bad gso"));
  bad_gso[1] = 0x42;
  EXPECT_EQ(tap.write(bad_gso).code(), absl::StatusCode::kInvalidArgument);
  // The tap keeps working.
  EXPECT_TRUE(tap.write(withVnetHeader(broadcastFrame(mac_, "fine"))).ok());
}

TEST_F(TapTest, WritesToADownTapAreRefusedAndReadsFindNothing) {
  auto tap = ns_->openTap("vt0");  // not set up
  ASSERT_TRUE(tap.ok()) << tap.status();
  absl::Status down = tap->write(withVnetHeader(broadcastFrame(mac_, "nobody listens")));
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(down.message(), HasSubstr("tap vt0: the interface is down"));
  uint8_t buffer[2048];
  auto nothing = tap->read(buffer);
  ASSERT_TRUE(nothing.ok()) << nothing.status();
  EXPECT_EQ(*nothing, 0u);
  ASSERT_TRUE(ns_->setLinkUp("vt0").ok());
  EXPECT_TRUE(tap->write(withVnetHeader(broadcastFrame(mac_, "now up"))).ok());
}

// Scatter-gather I/O, as a virtio-net device uses it with descriptor chains.
TEST_F(TapTest, VectoredReadAndWrite) {
  auto tap_or = openUpTap("vt0");
  ASSERT_TRUE(tap_or.ok()) << tap_or.status();
  Tap tap = std::move(*tap_or);
  auto socket = ns_->packetSocket("vt0");
  ASSERT_TRUE(socket.ok()) << socket.status();
  std::vector<uint8_t> header(12, 0);
  const std::vector<uint8_t> frame = broadcastFrame(mac_, "in two pieces");
  const iovec out[] = {{header.data(), header.size()},
                       {const_cast<uint8_t*>(frame.data()), frame.size()}};
  ASSERT_TRUE(tap.writev(out).ok());
  auto received = testing::readMatchingFrame(
      socket->get(), [](std::span<const uint8_t> f) { return tagOf(f) == "in two pieces"; },
      kFrameTimeout);
  ASSERT_TRUE(received.ok()) << received.status();

  const std::vector<uint8_t> reply = broadcastFrame(mac_, "read in pieces");
  ASSERT_EQ(::send(socket->get(), reply.data(), reply.size(), 0),
            static_cast<ssize_t>(reply.size()));
  // Read until the reply comes (other frames may precede it), into a 12-byte header buffer
  // and a frame buffer, as a guest's receive chain would be split.
  std::vector<uint8_t> in_header(12), in_frame(2048);
  const iovec in[] = {{in_header.data(), in_header.size()}, {in_frame.data(), in_frame.size()}};
  bool found = false;
  for (int attempt = 0; attempt < 100 && !found; ++attempt) {
    pollfd entry{.fd = tap.fd(), .events = POLLIN, .revents = 0};
    ASSERT_EQ(::poll(&entry, 1, 10000), 1);
    std::fill(in_header.begin(), in_header.end(), 0xab);
    auto got = tap.readv(in);
    ASSERT_TRUE(got.ok()) << got.status();
    found = *got == 12 + reply.size() &&
            tagOf(std::span<const uint8_t>(in_frame.data(), reply.size())) == "read in pieces";
  }
  ASSERT_TRUE(found);
  // The kernel wrote the legacy header (no offloads: all zero). Bytes 10-11 (num_buffers) it
  // does not fill in (the kernel here zeroes them; older ones may leave them untouched): the
  // VMM sets num_buffers itself.
  EXPECT_THAT(std::span(in_header).first(10), ::testing::Each(0));
}

TEST_F(TapTest, FromFdAdoptsATapAndRejectsEverythingElse) {
  auto original_or = openUpTap("vt0");
  ASSERT_TRUE(original_or.ok()) << original_or.status();
  Tap original = std::move(*original_or);
  auto copy = UniqueFd(::fcntl(original.fd(), F_DUPFD_CLOEXEC, 0));
  ASSERT_TRUE(copy.valid());
  auto adopted = Tap::fromFd(std::move(copy));
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ(adopted->name(), "vt0");
  EXPECT_EQ(adopted->vnetHeaderBytes(), 12u);

  // A file.
  UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  const int null_number = null.get();
  auto from_null = Tap::fromFd(std::move(null));
  ASSERT_FALSE(from_null.ok());
  EXPECT_EQ(from_null.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(from_null.status().message(),
              HasSubstr(fmt::format("fd {} is not a tap device", null_number)));

  // A socket.
  auto udp = ns_->udpSocket();
  ASSERT_TRUE(udp.ok());
  auto from_socket = Tap::fromFd(std::move(*udp));
  EXPECT_THAT(from_socket.status().message(), HasSubstr("is not a tap device"));

  // /dev/net/tun before TUNSETIFF.
  UniqueFd unattached(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(unattached.valid());
  auto from_unattached = Tap::fromFd(std::move(unattached));
  EXPECT_THAT(from_unattached.status().message(), HasSubstr("not attached to any device"));

  // A tun (layer 3) device.
  auto tun = ns_->runInside([]() -> absl::StatusOr<UniqueFd> {
    UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    ifreq ifr{};
    std::strcpy(ifr.ifr_name, "l3tun");
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    if (!fd.valid() || ::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
      return absl::InternalError(std::strerror(errno));
    }
    return fd;
  });
  ASSERT_TRUE(tun.ok()) << tun.status();
  auto from_tun = Tap::fromFd(std::move(*tun));
  EXPECT_THAT(from_tun.status().message(), HasSubstr("l3tun is a tun (layer 3) device"));

  // A tap without the header this device expects, and the reverse.
  TapOptions plain;
  plain.vnet_header = false;
  auto headerless = ns_->openTap("vt1", plain);
  ASSERT_TRUE(headerless.ok()) << headerless.status();
  auto needs_header = Tap::fromFd(headerless->release());
  EXPECT_THAT(needs_header.status().message(), HasSubstr("opened without IFF_VNET_HDR"));
  auto copy2 = UniqueFd(::fcntl(original.fd(), F_DUPFD_CLOEXEC, 0));
  auto needs_none = Tap::fromFd(std::move(copy2), plain);
  EXPECT_THAT(needs_none.status().message(), HasSubstr("opened with IFF_VNET_HDR"));

  EXPECT_EQ(Tap::fromFd(UniqueFd()).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TapTest, OpenExplainsConflicts) {
  auto first_or = openUpTap("vt0");
  ASSERT_TRUE(first_or.ok()) << first_or.status();
  Tap first = std::move(*first_or);
  auto second = ns_->openTap("vt0");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("cannot open tap vt0"));
  EXPECT_THAT(second.status().message(), HasSubstr("already attached to another process"));

  auto loopback = ns_->openTap("lo");
  ASSERT_FALSE(loopback.ok());
  EXPECT_THAT(loopback.status().message(), HasSubstr("cannot open tap lo"));
  EXPECT_THAT(loopback.status().message(), HasSubstr("is not a (single-queue) tap device"));

  // The kernel picks a name when none is given.
  auto any = ns_->openTap("");
  ASSERT_TRUE(any.ok()) << any.status();
  EXPECT_THAT(any->name(), ::testing::StartsWith("tap"));
}

TEST_F(TapTest, PersistentTapOutlivesItsDescriptorsUntilDeleted) {
  auto inside = [&](auto fn) { return ns_->runInside(fn); };
  ASSERT_TRUE(inside([] { return createPersistentTap("pt0", 4242); }).ok());
  EXPECT_TRUE(ns_->hasLink("pt0"));
  auto owner = ns_->execChecked({"cat", "/sys/class/net/pt0/owner"});
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_EQ(*owner, "4242\n");

  absl::Status again = inside([] { return createPersistentTap("pt0"); });
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.message(), HasSubstr("pt0"));

  {
    // A VMM attaches, and closes it again: the tap stays.
    auto tap = ns_->openTap("pt0");
    ASSERT_TRUE(tap.ok()) << tap.status();
    absl::Status busy = inside([] { return deleteTap("pt0"); });
    EXPECT_EQ(busy.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(busy.message(), HasSubstr("still has it open"));
  }
  EXPECT_TRUE(ns_->hasLink("pt0"));

  ASSERT_TRUE(inside([] { return deleteTap("pt0"); }).ok());
  EXPECT_FALSE(ns_->hasLink("pt0"));
  EXPECT_EQ(inside([] { return deleteTap("pt0"); }).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(inside([] { return deleteTap("lo"); }).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(TapTest, LinkUpDownAndMtu) {
  auto tap = ns_->openTap("vt0");
  ASSERT_TRUE(tap.ok()) << tap.status();
  absl::Status result = ns_->runInside([]() -> absl::Status {
    ASSIGN_OR_RETURN(bool up, isLinkUp("vt0"));
    if (up) return absl::InternalError("a new tap is up");
    RETURN_IF_ERROR(setLinkUp("vt0"));
    ASSIGN_OR_RETURN(up, isLinkUp("vt0"));
    if (!up) return absl::InternalError("still down after setLinkUp");
    RETURN_IF_ERROR(setMtu("vt0", 9000));
    ASSIGN_OR_RETURN(uint32_t mtu, linkMtu("vt0"));
    if (mtu != 9000) return absl::InternalError(fmt::format("MTU {} after setMtu 9000", mtu));
    RETURN_IF_ERROR(setLinkDown("vt0"));
    ASSIGN_OR_RETURN(up, isLinkUp("vt0"));
    if (up) return absl::InternalError("still up after setLinkDown");
    return absl::OkStatus();
  });
  EXPECT_TRUE(result.ok()) << result;

  absl::Status missing = ns_->runInside([] { return setLinkUp("nosuchdev"); });
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("nosuchdev"));
  absl::Status too_big = ns_->runInside([] { return setMtu("vt0", 1u << 20); });
  EXPECT_EQ(too_big.code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace flotilla::network
