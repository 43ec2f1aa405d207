// The console's Watch stream: a thread that streams ClusterService.Watch and hands every
// event to the UI thread (queued). It starts from revision 0 (the full state, then the
// changes); when the stream breaks it reconnects, moving on to the next configured
// endpoint, and resumes from the last revision it saw; when that history is gone
// (OUT_OF_RANGE) it starts again from 0 and says so first (resetting()), so that the models
// can be cleared. stop() (and the destructor) cancels the stream and joins the thread.
#pragma once

#include <QObject>
#include <QString>
#include <atomic>
#include <memory>
#include <thread>

#include "cli/client.h"
#include "cli/interrupt.h"
#include "flotilla/v1/cluster.pb.h"

namespace flotilla::console {

class ClusterWatcher : public QObject {
  Q_OBJECT

 public:
  enum class State { kConnecting, kConnected, kReconnecting, kFailed };
  Q_ENUM(State)

  explicit ClusterWatcher(cli::ClientOptions options, QObject* parent = nullptr);
  ~ClusterWatcher() override;

  void start();
  void stop();  // idempotent; returns once the thread has ended

  State state() const { return state_; }
  QString stateText() const { return state_text_; }
  // The revision of the last event delivered to the UI thread.
  int64_t revision() const { return revision_; }

 Q_SIGNALS:
  // Emitted on the UI thread, in stream order.
  void eventReceived(const flotilla::v1::WatchEvent& event);
  // The history to resume from is gone: forget everything, the full state follows.
  void resetting();
  // Connection state for the status bar: "connected to 127.0.0.1:7000", "reconnecting ...".
  void stateChanged(flotilla::console::ClusterWatcher::State state, const QString& text);

 private:
  void loop();
  // Posts to the UI thread.
  void postState(State state, const QString& text);
  void postEvent(const v1::WatchEvent& event);

  const cli::ClientOptions options_;
  cli::Interrupt interrupt_;
  std::thread thread_;
  // UI thread.
  State state_ = State::kConnecting;
  QString state_text_;
  int64_t revision_ = 0;
};

}  // namespace flotilla::console
