// Where the serial console goes: a file (appended), standard output, nowhere, or a unix
// socket that clients connect to. The socket receives the output (each client gets
// everything written while it is connected, after the last 64 KiB written before it
// connected) and its clients' input goes to the UART.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/event_loop.h"
#include "common/unique_fd.h"
#include "vmm/devices/serial.h"

namespace flotilla::vmm {

struct ConsoleConfig {
  enum class Mode { kStdout, kFile, kSocket, kNone };
  Mode mode = Mode::kStdout;
  std::string path;  // kFile, kSocket
};

// Parses "stdout", "none", "file:PATH" or "socket:PATH".
absl::StatusOr<ConsoleConfig> parseConsoleConfig(std::string_view text);

class FileSink final : public SerialSink {
 public:
  static absl::StatusOr<std::shared_ptr<FileSink>> open(const std::string& path);
  explicit FileSink(UniqueFd fd) : fd_(std::move(fd)) {}
  void write(std::span<const uint8_t> bytes) override;

 private:
  UniqueFd fd_;
};

class NullSink final : public SerialSink {
 public:
  void write(std::span<const uint8_t>) override {}
};

class ConsoleSocket final : public SerialSink {
 public:
  static constexpr size_t kHistoryBytes = 64 * 1024;

  // Listens on `path` (replacing a stale socket file; refusing any other file there).
  // Connections and input are served on `loop`.
  static absl::StatusOr<std::shared_ptr<ConsoleSocket>> listen(const std::string& path,
                                                               EventLoop& loop);
  ~ConsoleSocket() override;

  // Where client input goes; set before the loop starts. Held weakly: the UART holds the
  // console as its sink, and a strong reference back would keep both (and the socket file)
  // alive forever.
  void setInput(const std::shared_ptr<Serial>& serial) { input_ = serial; }

  // From vCPU threads: sends to every client without blocking; a client too slow to keep up
  // loses what does not fit in its socket buffer.
  void write(std::span<const uint8_t> bytes) override;

 private:
  ConsoleSocket(std::string path, UniqueFd listener, EventLoop& loop)
      : path_(std::move(path)), listener_(std::move(listener)), loop_(loop) {}
  void accept();
  void readFrom(int client);
  void drop(int client);

  const std::string path_;
  UniqueFd listener_;
  EventLoop& loop_;
  std::weak_ptr<Serial> input_;
  absl::Mutex mu_;
  std::vector<UniqueFd> clients_ ABSL_GUARDED_BY(mu_);
  std::deque<uint8_t> history_ ABSL_GUARDED_BY(mu_);
};

// The sink for `config` (the event loop serves a socket console).
absl::StatusOr<std::shared_ptr<SerialSink>> openConsole(const ConsoleConfig& config,
                                                        EventLoop& loop);

}  // namespace flotilla::vmm
