// Tests of the serial console's ends: parsing --serial, the append-only file sink, and the
// unix socket whose clients get the output (with the last 64 KiB of history) and whose input
// reaches the UART. The socket tests run a real EventLoop and a real Serial with fakes behind
// it; waits are bounded (a hung test fails instead of blocking), never timed.
#include "vmm/devices/console.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>

#include "absl/time/clock.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_env.h"
#include "tests/unit/vmm/devices/fakes.h"

namespace flotilla::vmm {
namespace {

using ::testing::HasSubstr;
using vmm::testing::FakeInterruptLine;
using vmm::testing::FakeSerialSink;

std::span<const uint8_t> bytesOf(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Polls `done` until it holds; false after ~10 s (a guard against hanging, not a deadline
// the code is expected to meet).
bool eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 1000; ++i) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return done();
}

TEST(ParseConsoleConfigTest, AcceptsEveryForm) {
  auto out = parseConsoleConfig("stdout");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->mode, ConsoleConfig::Mode::kStdout);
  EXPECT_EQ(out->path, "");

  auto none = parseConsoleConfig("none");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->mode, ConsoleConfig::Mode::kNone);

  auto file = parseConsoleConfig("file:/var/log/vm.log");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->mode, ConsoleConfig::Mode::kFile);
  EXPECT_EQ(file->path, "/var/log/vm.log");

  auto socket = parseConsoleConfig("socket:/run/vm/console.sock");
  ASSERT_TRUE(socket.ok());
  EXPECT_EQ(socket->mode, ConsoleConfig::Mode::kSocket);
  EXPECT_EQ(socket->path, "/run/vm/console.sock");

  auto colon = parseConsoleConfig("file:relative:with:colons");
  ASSERT_TRUE(colon.ok());
  EXPECT_EQ(colon->path, "relative:with:colons");
}

TEST(ParseConsoleConfigTest, RefusesAnythingElseQuotingIt) {
  for (const char* bad : {"", "file:", "socket:", "tty", "Stdout", "FILE:/x", "unix:/x", " stdout",
                          "stdout ", "pty"}) {
    auto config = parseConsoleConfig(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(config.status())) << "'" << bad << "'";
    EXPECT_THAT(config.status().message(),
                HasSubstr(fmt::format("serial console '{}' is not stdout, none, file:PATH or "
                                      "socket:PATH",
                                      bad)));
  }
}

TEST(FileSinkTest, AppendsToTheFile) {
  flotilla::testing::TempDir dir;
  const std::string path = dir.file("serial.log");
  {
    std::ofstream existing(path);
    existing << "earlier run\n";
  }
  auto sink = FileSink::open(path);
  ASSERT_TRUE(sink.ok()) << sink.status();
  (*sink)->write(bytesOf("booting"));
  (*sink)->write(bytesOf("...\n"));
  (*sink)->write({});
  auto second = FileSink::open(path);
  ASSERT_TRUE(second.ok());
  (*second)->write(bytesOf("second\n"));
  (*sink)->write(bytesOf("first again\n"));
  EXPECT_EQ(readFile(path), "earlier run\nbooting...\nsecond\nfirst again\n");
}

TEST(FileSinkTest, CreatesAMissingFileAndNamesAnUnopenableOne) {
  flotilla::testing::TempDir dir;
  auto created = FileSink::open(dir.file("new.log"));
  ASSERT_TRUE(created.ok()) << created.status();
  (*created)->write(bytesOf("x"));
  EXPECT_EQ(readFile(dir.file("new.log")), "x");

  const std::string missing = dir.file("no/such/dir.log");
  auto failed = FileSink::open(missing);
  EXPECT_TRUE(absl::IsNotFound(failed.status())) << failed.status();
  EXPECT_THAT(failed.status().message(), HasSubstr("opening serial log " + missing));
}

TEST(OpenConsoleTest, BuildsTheSinkForEachMode) {
  flotilla::testing::TempDir dir;
  auto loop = EventLoop::create("console-test");
  ASSERT_TRUE(loop.ok());

  auto file = openConsole({ConsoleConfig::Mode::kFile, dir.file("out.log")}, **loop);
  ASSERT_TRUE(file.ok()) << file.status();
  (*file)->write(bytesOf("to the file"));
  EXPECT_EQ(readFile(dir.file("out.log")), "to the file");

  auto none = openConsole({ConsoleConfig::Mode::kNone, ""}, **loop);
  ASSERT_TRUE(none.ok());
  (*none)->write(bytesOf("dropped"));
  EXPECT_NE(dynamic_cast<NullSink*>(none->get()), nullptr);

  auto out = openConsole({ConsoleConfig::Mode::kStdout, ""}, **loop);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NE(dynamic_cast<FileSink*>(out->get()), nullptr);

  auto socket = openConsole({ConsoleConfig::Mode::kSocket, dir.file("c.sock")}, **loop);
  ASSERT_TRUE(socket.ok()) << socket.status();
  EXPECT_NE(dynamic_cast<ConsoleSocket*>(socket->get()), nullptr);

  auto unopenable = openConsole({ConsoleConfig::Mode::kFile, dir.file("a/b.log")}, **loop);
  EXPECT_FALSE(unopenable.ok());
  (*loop)->stop();
}

class ConsoleSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::create("console-test");
    ASSERT_TRUE(loop.ok()) << loop.status();
    loop_ = std::move(*loop);
  }
  // The loop's handlers point at the console: stop it before the fixture's members go.
  void TearDown() override {
    if (loop_) loop_->stop();
  }

  absl::StatusOr<std::shared_ptr<ConsoleSocket>> listen() {
    return ConsoleSocket::listen(path_, *loop_);
  }

  // A Serial fed by the console (its output goes to a fake sink here, not back to the
  // console, so that the test sees the two directions apart).
  void wireSerial() {
    serial_ = std::make_shared<Serial>(sink_, irq_);
    console_->setInput(serial_);
  }

  static UniqueFd connectTo(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
      return UniqueFd();
    }
    return fd;
  }

  // Reads exactly `size` bytes (or what came before a ~10 s guard or end of file).
  static std::string receive(const UniqueFd& fd, size_t size) {
    std::string text;
    while (text.size() < size) {
      pollfd ready{fd.get(), POLLIN, 0};
      if (::poll(&ready, 1, 10'000) != 1) break;
      std::array<char, 4096> buffer;
      ssize_t n = ::recv(fd.get(), buffer.data(), std::min(buffer.size(), size - text.size()), 0);
      if (n <= 0) break;
      text.append(buffer.data(), static_cast<size_t>(n));
    }
    return text;
  }

  // Whether nothing more is waiting on `fd` right now.
  static bool nothingPending(const UniqueFd& fd) {
    pollfd ready{fd.get(), POLLIN, 0};
    return ::poll(&ready, 1, 0) == 0;
  }

  static bool sendAll(const UniqueFd& fd, const std::string& text) {
    return ::send(fd.get(), text.data(), text.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(text.size());
  }

  // The bytes the guest would read from RBR.
  std::string guestReads() {
    std::string text;
    std::array<uint8_t, 1> byte{};
    for (;;) {
      serial_->read(5, byte);  // LSR
      if (!(byte[0] & 0x01)) return text;
      serial_->read(0, byte);  // RBR
      text.push_back(static_cast<char>(byte[0]));
    }
  }

  flotilla::testing::TempDir dir_;
  const std::string path_ = dir_.file("console.sock");
  std::unique_ptr<EventLoop> loop_;
  std::shared_ptr<FakeSerialSink> sink_ = std::make_shared<FakeSerialSink>();
  std::shared_ptr<FakeInterruptLine> irq_ = std::make_shared<FakeInterruptLine>();
  std::shared_ptr<Serial> serial_;
  std::shared_ptr<ConsoleSocket> console_;
};

TEST_F(ConsoleSocketTest, AClientGetsTheHistoryThenNewOutput) {
  auto console = listen();
  ASSERT_TRUE(console.ok()) << console.status();
  console_ = *console;
  struct stat info {};
  ASSERT_EQ(::lstat(path_.c_str(), &info), 0);
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  loop_->start();

  console_->write(bytesOf("Linux version 6.1\n"));
  UniqueFd first = connectTo(path_);
  ASSERT_TRUE(first.valid());
  EXPECT_EQ(receive(first, 18), "Linux version 6.1\n");
  // The history was sent when the client was accepted: from now on it is a live client.
  console_->write(bytesOf("login: "));
  EXPECT_EQ(receive(first, 7), "login: ");

  UniqueFd second = connectTo(path_);
  ASSERT_TRUE(second.valid());
  EXPECT_EQ(receive(second, 25), "Linux version 6.1\nlogin: ");
  console_->write(bytesOf("#"));
  EXPECT_EQ(receive(first, 1), "#");
  EXPECT_EQ(receive(second, 1), "#");
  EXPECT_TRUE(nothingPending(first));
  EXPECT_TRUE(nothingPending(second));
}

TEST_F(ConsoleSocketTest, HistoryKeepsTheLast64KiB) {
  auto console = listen();
  ASSERT_TRUE(console.ok()) << console.status();
  console_ = *console;
  loop_->start();
  std::string output(70 * 1024, '\0');
  for (size_t i = 0; i < output.size(); ++i) output[i] = static_cast<char>('a' + i % 23);
  for (size_t at = 0; at < output.size(); at += 1000) {
    console_->write(bytesOf(output.substr(at, 1000)));
  }
  UniqueFd client = connectTo(path_);
  ASSERT_TRUE(client.valid());
  const std::string history = receive(client, ConsoleSocket::kHistoryBytes);
  ASSERT_EQ(history.size(), ConsoleSocket::kHistoryBytes);
  EXPECT_TRUE(history == output.substr(output.size() - ConsoleSocket::kHistoryBytes))
      << "the history is not the tail of the output";
}

TEST_F(ConsoleSocketTest, WhatAClientTypesReachesTheUartsReceiveBuffer) {
  auto console = listen();
  ASSERT_TRUE(console.ok()) << console.status();
  console_ = *console;
  wireSerial();
  std::array<uint8_t, 1> ier = {0x01};  // received-data interrupt
  serial_->write(1, ier);
  loop_->start();

  UniqueFd client = connectTo(path_);
  ASSERT_TRUE(client.valid());
  ASSERT_TRUE(sendAll(client, "root\n"));
  ASSERT_TRUE(eventually([&] { return serial_->save().rx().size() == 5; }))
      << "received so far: '" << serial_->save().rx() << "'";
  EXPECT_TRUE(irq_->high()) << "IRQ 4 raised for the guest";
  EXPECT_EQ(guestReads(), "root\n");
  EXPECT_FALSE(irq_->high());

  // Input and output are separate: the guest's answer goes to the serial's sink, not back.
  EXPECT_EQ(sink_->bytes(), "");
  ASSERT_TRUE(sendAll(client, std::string(300, 'k')));  // more than one read of the console
  ASSERT_TRUE(eventually([&] { return serial_->save().rx().size() == 300; }));
  EXPECT_EQ(guestReads(), std::string(300, 'k'));
}

TEST_F(ConsoleSocketTest, InputSentJustBeforeTheClientHangsUpIsNotLost) {
  auto console = listen();
  ASSERT_TRUE(console.ok()) << console.status();
  console_ = *console;
  wireSerial();
  {
    // Connected, typed and gone before the loop ever looks: the console then sees the data
    // and the hang-up in one event (as with `echo reboot | socat - UNIX-CONNECT:...`).
    UniqueFd client = connectTo(path_);
    ASSERT_TRUE(client.valid());
    ASSERT_TRUE(sendAll(client, "reboot\n"));
  }
  loop_->start();
  ASSERT_TRUE(eventually([&] { return serial_->save().rx().size() == 7; }))
      << "received: '" << serial_->save().rx() << "'";
  EXPECT_EQ(guestReads(), "reboot\n");

  // The client was dropped; the console goes on serving others.
  console_->write(bytesOf("ok\n"));
  UniqueFd next = connectTo(path_);
  ASSERT_TRUE(next.valid());
  EXPECT_EQ(receive(next, 3), "ok\n");
  ASSERT_TRUE(sendAll(next, "x"));
  ASSERT_TRUE(eventually([&] { return serial_->save().rx() == "x"; }));
}

TEST_F(ConsoleSocketTest, ADisconnectedClientIsDroppedAndOutputGoesOn) {
  auto console = listen();
  ASSERT_TRUE(console.ok()) << console.status();
  console_ = *console;
  loop_->start();
  UniqueFd gone = connectTo(path_);
  ASSERT_TRUE(gone.valid());
  console_->write(bytesOf("a"));
  EXPECT_EQ(receive(gone, 1), "a");
  gone.reset();
  console_->write(bytesOf("b"));  // to a client that may not be dropped yet: no SIGPIPE
  UniqueFd stays = connectTo(path_);
  ASSERT_TRUE(stays.valid());
  EXPECT_EQ(receive(stays, 2), "ab");
  console_->write(bytesOf("c"));
  EXPECT_EQ(receive(stays, 1), "c");
}

TEST_F(ConsoleSocketTest, AStaleSocketFileIsReplaced) {
  {
    // What a VMM that was killed leaves behind: a socket file nobody listens on.
    UniqueFd old(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path_.c_str(), path_.size() + 1);
    ASSERT_EQ(::bind(old.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  }
  struct stat info {};
  ASSERT_EQ(::lstat(path_.c_str(), &info), 0);
  ASSERT_TRUE(S_ISSOCK(info.st_mode));

  auto console = listen();
  ASSERT_TRUE(console.ok()) << console.status();
  console_ = *console;
  loop_->start();
  console_->write(bytesOf("fresh"));
  UniqueFd client = connectTo(path_);
  ASSERT_TRUE(client.valid());
  EXPECT_EQ(receive(client, 5), "fresh");
}

TEST_F(ConsoleSocketTest, ARegularFileAtThePathIsRefusedAndKept) {
  {
    std::ofstream file(path_);
    file << "precious";
  }
  auto console = listen();
  EXPECT_TRUE(absl::IsAlreadyExists(console.status())) << console.status();
  EXPECT_THAT(console.status().message(),
              HasSubstr("console socket path " + path_ + " exists and is not a socket"));
  EXPECT_EQ(readFile(path_), "precious");
}

TEST_F(ConsoleSocketTest, AnOverlongPathIsRefused) {
  const std::string long_path = dir_.file(std::string(120, 'p'));
  auto console = ConsoleSocket::listen(long_path, *loop_);
  EXPECT_TRUE(absl::IsInvalidArgument(console.status())) << console.status();
  EXPECT_THAT(console.status().message(), HasSubstr("is longer than 107 bytes"));
}

TEST_F(ConsoleSocketTest, TheSocketFileGoesWithTheConsole) {
  auto console = listen();
  ASSERT_TRUE(console.ok()) << console.status();
  console_ = *console;
  loop_->stop();
  console_.reset();
  console->reset();
  struct stat info {};
  EXPECT_NE(::lstat(path_.c_str(), &info), 0);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(ConsoleSocketTest, TheSocketFileGoesWhenAConsoleAndItsUartAreReleased) {
  // As the VM wires them: the UART writes to the console, the console feeds the UART.
  auto console = listen();
  ASSERT_TRUE(console.ok()) << console.status();
  std::shared_ptr<ConsoleSocket> socket = std::move(*console);
  auto serial = std::make_shared<Serial>(socket, irq_);
  socket->setInput(serial);
  loop_->start();
  UniqueFd client = connectTo(path_);
  ASSERT_TRUE(client.valid());
  std::array<uint8_t, 1> byte = {'!'};
  serial->write(0, byte);
  EXPECT_EQ(receive(client, 1), "!");

  loop_->stop();
  std::weak_ptr<ConsoleSocket> watch = socket;
  socket.reset();
  serial.reset();
  EXPECT_TRUE(watch.expired()) << "the console and the UART keep each other alive";
  struct stat info {};
  EXPECT_NE(::lstat(path_.c_str(), &info), 0) << "the socket file was left behind";
}

}  // namespace
}  // namespace flotilla::vmm
