// TaskPool: one task per key at once, and a task that ended after a pass's view was read
// still counts as busy in that pass (the view may not show what it wrote).
#include "controller/task_pool.h"

#include <atomic>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace flotilla::controller {
namespace {

// Waits until `key` is neither queued nor running in a pass that began now.
void waitEnded(TaskPool& pool, const std::string& key) {
  for (int i = 0; i < 5000; ++i) {
    pool.beginPass(absl::InfiniteFuture());
    if (!pool.busy(key)) return;
    absl::SleepFor(absl::Milliseconds(1));
  }
  FAIL() << "task " << key << " never ended";
}

TEST(TaskPoolTest, RunsOneTaskPerKeyAtOnce) {
  TaskPool pool("test", 2);
  absl::Notification release;
  std::atomic<int> ran{0};
  ASSERT_TRUE(pool.submit("vm-1", [&](std::stop_token) {
    release.WaitForNotification();
    ran.fetch_add(1);
  }));
  EXPECT_FALSE(pool.submit("vm-1", [&](std::stop_token) { ran.fetch_add(1); }));
  EXPECT_TRUE(pool.busy("vm-1"));
  EXPECT_FALSE(pool.busy("vm-2"));
  release.Notify();
  waitEnded(pool, "vm-1");
  EXPECT_EQ(ran.load(), 1);
  EXPECT_TRUE(pool.submit("vm-1", [&](std::stop_token) { ran.fetch_add(1); }));
  waitEnded(pool, "vm-1");
  EXPECT_EQ(ran.load(), 2);
}

TEST(TaskPoolTest, ATaskThatEndedAfterTheViewWasReadIsStillBusyInThatPass) {
  TaskPool pool("test", 1);
  const absl::Time view_read_at = absl::Now();
  pool.beginPass(view_read_at);
  ASSERT_TRUE(pool.submit("vm-1", [](std::stop_token) {}));
  for (int i = 0; i < 5000; ++i) {
    // Ended or not, it is busy for this pass: its write may be missing from the view.
    ASSERT_TRUE(pool.busy("vm-1"));
    absl::SleepFor(absl::Microseconds(200));
  }
  // The next pass reads a view after it ended: it may act on it again.
  pool.beginPass(absl::Now());
  waitEnded(pool, "vm-1");
  pool.beginPass(absl::Now());
  EXPECT_FALSE(pool.busy("vm-1"));
}

}  // namespace
}  // namespace flotilla::controller
