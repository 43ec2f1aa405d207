// EventLoop (see event_loop.h).
#include "common/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "common/status.h"
#include "common/thread.h"

namespace flotilla {

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::create(std::string name) {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) return errnoStatus(errno, "epoll_create1");
  UniqueFd wakeup(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wakeup.valid()) return errnoStatus(errno, "eventfd");
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = wakeup.get();
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wakeup.get(), &event) != 0) {
    return errnoStatus(errno, "epoll_ctl");
  }
  return std::unique_ptr<EventLoop>(
      new EventLoop(std::move(name), std::move(epoll), std::move(wakeup)));
}

EventLoop::~EventLoop() {
  stop();
}

void EventLoop::start() {
  thread_ = std::thread([this] {
    setCurrentThreadName(name_);
    run();
  });
}

void EventLoop::stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  uint64_t one = 1;
  (void)!::write(wakeup_.get(), &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
}

absl::Status EventLoop::add(int fd, uint32_t events, Handler handler) {
  epoll_event event{};
  event.events = events;
  event.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
    return errnoStatus(errno, "adding a descriptor to the event loop");
  }
  handlers_[fd] = std::make_shared<Handler>(std::move(handler));
  return absl::OkStatus();
}

void EventLoop::remove(int fd) {
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  handlers_.erase(fd);
}

void EventLoop::post(std::function<void()> task) {
  {
    absl::MutexLock lock(&mu_);
    tasks_.push_back(std::move(task));
  }
  uint64_t one = 1;
  (void)!::write(wakeup_.get(), &one, sizeof(one));
}

void EventLoop::run() {
  std::array<epoll_event, 32> events;
  while (true) {
    int count = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), -1);
    if (count < 0 && errno != EINTR) return;
    for (int i = 0; i < count; ++i) {
      const int fd = events[static_cast<size_t>(i)].data.fd;
      if (fd == wakeup_.get()) {
        uint64_t ignored;
        (void)!::read(wakeup_.get(), &ignored, sizeof(ignored));
        continue;
      }
      auto it = handlers_.find(fd);
      if (it == handlers_.end()) continue;            // removed by an earlier handler of this round
      std::shared_ptr<Handler> handler = it->second;  // survives its own remove()
      (*handler)(events[static_cast<size_t>(i)].events);
    }
    std::vector<std::function<void()>> tasks;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      tasks.swap(tasks_);
    }
    for (auto& task : tasks) task();
  }
}

}  // namespace flotilla
