// Live migration with devices in use, between two flotilla-vmm processes over loopback:
// a guest writing and verifying rounds on a virtio-blk disk that is an iSCSI LUN (shared
// storage: both VMMs log in to the same tgtd) keeps verifying at the target; a guest
// answering UDP echo on a NIC keeps answering after it moved from one tap to another on the
// same bridge (the target announces the MAC; the bridge also forgets the source's port when
// its tap loses its carrier, so the announcement itself is checked in the target's log, and
// on the wire by virtio_net_test); a guest on a local raw-file disk moved by a cold migration
// with its disk keeps verifying at the target, whose new image holds the source's data and
// stays sparse.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/files.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "network/tap.h"
#include "tests/integration/vmm/migration_client.h"
#include "tests/support/netns.h"
#include "tests/support/test_env.h"
#include "tests/support/tgt_target.h"
#include "tests/support/vmm_process.h"

namespace flotilla::vmm {
namespace {

using ::flotilla::testing::NetNamespace;
using ::flotilla::testing::TempDir;
using ::flotilla::testing::TgtTarget;
using ::flotilla::testing::VmmProcess;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kVmm[] = FLOTILLA_VMM;
constexpr char kGuest[] = FLOTILLA_GUEST_ELF;
constexpr char kToken[] = "device-test-token";

grpc::Status migrate(VmmProcess& source, uint16_t port) {
  return sendMigration(source, port, {.token = kToken});
}

TEST(MigrationWithDevicesTest, DiskIoOnASharedIscsiLunContinuesAtTheTarget) {
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok());
  TempDir dir;
  auto lun = dir.sparseFile("lun.img", uint64_t{32} << 20);
  ASSERT_TRUE(lun.ok()) << lun.status();
  auto tgt = TgtTarget::start(*lun);
  ASSERT_TRUE(tgt.ok()) << tgt.status();
  const std::string disk = "iscsi=" + (*tgt)->url();
  auto source =
      VmmProcess::start(kVmm,
                        {"--kernel", kGuest, "--memory", "256M", "--disk", disk, "--cmdline",
                         "workload=blk blk.mib=4 blk.loop=1 virtio.irq=1 "
                         "virtio.event_idx=1"},
                        dir, "source");
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE((*source)->waitForSerialCount("blk loop round=", 2, absl::Minutes(2)).ok())
      << (*source)->serial() << (*source)->log();
  auto port = ::flotilla::testing::pickFreePort();
  ASSERT_TRUE(port.ok());
  auto target = VmmProcess::start(kVmm,
                                  {"--incoming", fmt::format("tcp:127.0.0.1:{}", *port),
                                   "--migration-token", kToken, "--memory", "256M", "--disk", disk},
                                  dir, "target");
  ASSERT_TRUE(target.ok()) << target.status();
  expectListening(**target);
  grpc::Status sent = migrate(**source, *port);
  ASSERT_TRUE(sent.ok()) << sent.error_message();
  auto exit = (*source)->wait(absl::Minutes(1));
  ASSERT_TRUE(exit.ok()) << exit.status() << (*source)->log() << (*target)->log();
  EXPECT_EQ(exit->code, 0) << (*source)->log();
  // Every round the guest writes and then verifies: two more rounds at the target, with no
  // error, mean the disk holds what the source's guest wrote and in-flight I/O was not lost.
  auto more = (*target)->waitForSerialCount("blk loop round=", 2, absl::Minutes(2));
  ASSERT_TRUE(more.ok()) << more.status() << (*target)->log();
  EXPECT_THAT(*more, Not(HasSubstr("error"))) << (*target)->log();
  EXPECT_THAT(*more, Not(HasSubstr("ready"))) << "the guest continued, it did not boot";
  ASSERT_TRUE((*target)->process().terminate(absl::Seconds(10)).ok());
}

TEST(MigrationWithDevicesTest, ColdMigrationMovesALocalDiskAndItsGuestVerifiesOn) {
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok());
  TempDir dir;
  constexpr uint64_t kMiB = uint64_t{1} << 20;
  auto source_disk = dir.sparseFile("source.img", 32 * kMiB);
  ASSERT_TRUE(source_disk.ok()) << source_disk.status();
  // Data the guest never touches (its workload uses the first 4 MiB): it must arrive as it is.
  {
    const int fd = ::open(source_disk->c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    std::string pattern(kMiB, '\0');
    for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = static_cast<char>(i * 7 + i / 4096);
    ASSERT_EQ(::pwrite(fd, pattern.data(), pattern.size(), 16 * kMiB),
              static_cast<ssize_t>(pattern.size()));
    ASSERT_EQ(::pwrite(fd, "end", 3, 32 * kMiB - 3), 3);
    ::close(fd);
  }
  const std::string target_disk = dir.file("target.img");  // made by the migration
  auto source = VmmProcess::start(
      kVmm,
      {"--kernel", kGuest, "--memory", "256M", "--disk", "path=" + *source_disk, "--cmdline",
       "workload=blk blk.mib=4 blk.loop=1 virtio.irq=1 virtio.event_idx=1"},
      dir, "source");
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE((*source)->waitForSerialCount("blk loop round=", 2, absl::Minutes(2)).ok())
      << (*source)->serial() << (*source)->log();
  auto port = ::flotilla::testing::pickFreePort();
  ASSERT_TRUE(port.ok());
  auto target =
      VmmProcess::start(kVmm,
                        {"--incoming", fmt::format("tcp:127.0.0.1:{}", *port), "--migration-token",
                         kToken, "--memory", "256M", "--disk", "path=" + target_disk},
                        dir, "target");
  ASSERT_TRUE(target.ok()) << target.status();
  expectListening(**target);
  grpc::Status sent =
      sendMigration(**source, *port, {.token = kToken, .cold = true, .with_disks = true});
  ASSERT_TRUE(sent.ok()) << sent.error_message();
  auto exit = (*source)->wait(absl::Minutes(1));
  ASSERT_TRUE(exit.ok()) << exit.status() << (*source)->log() << (*target)->log();
  EXPECT_EQ(exit->code, 0) << (*source)->log() << (*target)->log();
  EXPECT_THAT((*source)->log(), HasSubstr("disk 0 (" + *source_disk + ")"));
  // Two more write-and-verify rounds on the new image, no error, no reboot.
  auto more = (*target)->waitForSerialCount("blk loop round=", 2, absl::Minutes(2));
  ASSERT_TRUE(more.ok()) << more.status() << (*target)->log();
  EXPECT_THAT(*more, Not(HasSubstr("error"))) << (*target)->log();
  EXPECT_THAT(*more, Not(HasSubstr("ready"))) << "the guest continued, it did not boot";
  auto api = (*target)->api();
  ASSERT_TRUE(api.ok());
  grpc::ClientContext context;
  flotilla::v1::MigrationStatus status;
  ASSERT_TRUE((*api)->MigrateStatus(&context, {}, &status).ok());
  EXPECT_GT(status.disk_bytes(), kMiB);
  ASSERT_TRUE((*target)->process().terminate(absl::Seconds(10)).ok());
  // Beyond what the guest writes, the images are the same; the holes stayed holes.
  auto source_bytes = readFileToString(*source_disk, 64 * kMiB);
  auto target_bytes = readFileToString(target_disk, 64 * kMiB);
  ASSERT_TRUE(source_bytes.ok() && target_bytes.ok());
  ASSERT_EQ(target_bytes->size(), 32 * kMiB);
  EXPECT_TRUE(source_bytes->compare(4 * kMiB, std::string::npos, *target_bytes, 4 * kMiB,
                                    std::string::npos) == 0)
      << "the data past the guest's 4 MiB differs";
  struct stat info {};
  ASSERT_EQ(::stat(target_disk.c_str(), &info), 0);
  EXPECT_LT(static_cast<uint64_t>(info.st_blocks) * 512, 8 * kMiB) << "the image stayed sparse";
}

TEST(MigrationWithDevicesTest, NicAnswersFromItsNewTapAfterTheMigration) {
  ASSERT_TRUE(::flotilla::testing::requireRoot("taps and network namespaces").ok());
  ASSERT_TRUE(::flotilla::testing::requireKvm().ok());
  auto ns = NetNamespace::create("vmig");
  ASSERT_TRUE(ns.ok()) << ns.status();
  // One "host network": a bridge with the client's address, the source's and the target's
  // taps as its ports.
  ASSERT_TRUE((*ns)->execChecked({"ip", "link", "add", "br0", "type", "bridge"}).ok());
  ASSERT_TRUE((*ns)->setLinkUp("br0").ok());
  ASSERT_TRUE((*ns)->addAddress("br0", "10.80.0.1/24").ok());
  for (const char* tap : {"tapa", "tapb"}) {
    ASSERT_TRUE((*ns)->runInside([tap] { return network::createPersistentTap(tap); }).ok());
    ASSERT_TRUE((*ns)->execChecked({"ip", "link", "set", tap, "master", "br0"}).ok());
    ASSERT_TRUE((*ns)->setLinkUp(tap).ok());
  }
  TempDir dir;
  const std::string mac = "52:54:00:4d:00:01";
  auto inside = [&](std::vector<std::string> args, const std::string& name) {
    std::vector<std::string> argv = {"netns", "exec", (*ns)->name(), kVmm};
    argv.insert(argv.end(), args.begin(), args.end());
    return VmmProcess::start("/usr/sbin/ip", std::move(argv), dir, name);
  };
  auto source =
      inside({"--kernel", kGuest, "--memory", "128M", "--net", fmt::format("tap=tapa,mac={}", mac),
              "--cmdline", "workload=net net.ip=10.80.0.2/24 virtio.irq=1 virtio.event_idx=1"},
             "source");
  ASSERT_TRUE(source.ok()) << source.status();
  ASSERT_TRUE((*source)->waitForSerial("net up", absl::Minutes(1)).ok()) << (*source)->log();
  auto socket = (*ns)->udpSocket();
  ASSERT_TRUE(socket.ok()) << socket.status();
  int sequence = 0;
  bool first = false;
  for (int attempt = 0; attempt < 20 && !first; ++attempt) {
    first = ::flotilla::testing::udpEchoed(socket->get(), "10.80.0.2", sequence++,
                                           absl::Milliseconds(500));
  }
  ASSERT_TRUE(first) << "no UDP echo before the migration" << (*source)->log();

  auto port = ::flotilla::testing::pickFreePort();
  ASSERT_TRUE(port.ok());
  auto target = inside({"--incoming", fmt::format("tcp:127.0.0.1:{}", *port), "--migration-token",
                        kToken, "--memory", "128M", "--net", fmt::format("tap=tapb,mac={}", mac)},
                       "target");
  ASSERT_TRUE(target.ok()) << target.status();
  expectListening(**target);
  grpc::Status sent = migrate(**source, *port);
  ASSERT_TRUE(sent.ok()) << sent.error_message();
  auto exit = (*source)->wait(absl::Minutes(1));
  ASSERT_TRUE(exit.ok()) << exit.status() << (*source)->log() << (*target)->log();
  EXPECT_EQ(exit->code, 0) << (*source)->log();
  EXPECT_THAT((*target)->log(), HasSubstr("announced 1 NICs"));
  // Echoes come back through tapb.
  int answered = 0;
  for (int i = 0; i < 20; ++i) {
    if (::flotilla::testing::udpEchoed(socket->get(), "10.80.0.2", sequence++, absl::Seconds(2)))
      ++answered;
  }
  EXPECT_EQ(answered, 20) << (*target)->log();
  EXPECT_THAT((*target)->serial(), Not(HasSubstr("error")));
  EXPECT_THAT((*target)->serial(), Not(HasSubstr("net up"))) << "it continued, it did not boot";
  ASSERT_TRUE((*target)->process().terminate(absl::Seconds(10)).ok());
}

}  // namespace
}  // namespace flotilla::vmm
