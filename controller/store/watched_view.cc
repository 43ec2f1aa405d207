// WatchedView (see watched_view.h).
#include "controller/store/watched_view.h"

#include <string>

namespace flotilla::controller {

WatchedView::WatchedView(etcd::EtcdClient& etcd)
    : etcd_(etcd), store_(etcd), cache_(store_), log_(Logger("view")) {}

absl::Status WatchedView::refresh(absl::Time now) {
  if (reload_ || now - reloaded_ > kReloadEvery) {
    if (absl::Status read = cache_.reload(); !read.ok()) return read;
    reload_ = false;
    reloaded_ = now;
    ++reloads_;
  }
  if (watch_ == nullptr) {
    // The watch resumes from its revision after an etcd member fails.
    watch_ = std::make_unique<etcd::Watch>(
        etcd_, etcd::WatchOptions{.key = std::string(kKeyPrefix),
                                  .prefix = true,
                                  .start_revision = cache_.view().revision + 1,
                                  .prev_kv = false});
  }
  while (next(absl::ZeroDuration()) == Wait::kChanged) {
  }
  return absl::OkStatus();
}

WatchedView::Wait WatchedView::next(absl::Duration timeout) {
  if (watch_ == nullptr) return Wait::kFailed;
  auto batch = watch_->next(timeout);
  if (batch.ok()) {
    apply(*batch);
    return Wait::kChanged;
  }
  if (absl::IsDeadlineExceeded(batch.status())) return Wait::kTimedOut;
  // Compacted (OutOfRange) or failed: read everything again and watch from there.
  if (!absl::IsOutOfRange(batch.status())) {
    log_.warn("the watch failed ({}): reading the whole cluster again", batch.status().message());
  }
  watch_.reset();
  reload_ = true;
  return Wait::kFailed;
}

void WatchedView::apply(const etcd::WatchBatch& batch) {
  if (absl::Status applied = cache_.apply(batch); !applied.ok()) {
    log_.warn("{}: reading the whole cluster again", applied.message());
    reload_ = true;
  }
}

}  // namespace flotilla::controller
