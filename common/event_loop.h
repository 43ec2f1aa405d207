// EventLoop: one thread that waits on file descriptors (epoll) and runs their handlers, and
// runs tasks posted from other threads. Handlers and tasks run on the loop's thread only, so
// state they alone touch needs no lock.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/unique_fd.h"

namespace flotilla {

class EventLoop {
 public:
  using Handler = std::function<void(uint32_t events)>;  // EPOLLIN, EPOLLOUT, EPOLLHUP, ...

  static absl::StatusOr<std::unique_ptr<EventLoop>> create(std::string name);
  ~EventLoop();  // stops the thread

  // Starts the loop's thread.
  void start();
  // Stops and joins the thread; pending tasks are dropped. Idempotent.
  void stop();

  // Watches `fd` for `events`. Before start() from any thread, afterwards on the loop's
  // thread only (from a handler or a posted task).
  absl::Status add(int fd, uint32_t events, Handler handler);
  void remove(int fd);

  // Runs `task` on the loop's thread (from any thread).
  void post(std::function<void()> task);

 private:
  EventLoop(std::string name, UniqueFd epoll, UniqueFd wakeup)
      : name_(std::move(name)), epoll_(std::move(epoll)), wakeup_(std::move(wakeup)) {}
  void run();

  const std::string name_;
  UniqueFd epoll_;
  UniqueFd wakeup_;                                              // eventfd: posted tasks and stop
  absl::flat_hash_map<int, std::shared_ptr<Handler>> handlers_;  // loop thread (or before start)
  absl::Mutex mu_;
  std::vector<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace flotilla
