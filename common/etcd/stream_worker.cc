// StreamWorker (see stream_worker.h).
#include "common/etcd/stream_worker.h"

#include "common/thread.h"

namespace flotilla::etcd {

void StreamWorker::start(std::string name, std::function<void()> loop) {
  thread_ = std::thread([name = std::move(name), loop = std::move(loop)] {
    setCurrentThreadName(name);
    loop();
  });
}

void StreamWorker::stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

bool StreamWorker::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

bool StreamWorker::attach(grpc::ClientContext* context) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return false;
  context_ = context;
  return true;
}

void StreamWorker::detach() {
  absl::MutexLock lock(&mu_);
  context_ = nullptr;
}

bool StreamWorker::sleepFor(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
  return !stopping_;
}

}  // namespace flotilla::etcd
