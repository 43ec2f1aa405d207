// flotilla-console's asynchronous ClusterService client. Every call runs on a worker thread
// (a QThreadPool) with a cli::ClusterClient, which brings clusterctl's failover between the
// controller replicas (docs/clusterctl.md "Failover"); the result comes back on the thread of
// the ConsoleClient (the UI thread) as a queued call of the callback. The UI thread never
// waits on the network. ClusterClient is not thread-safe, so each worker borrows one from a
// small pool (their channels stay connected between calls).
#pragma once

#include <QMetaObject>
#include <QObject>
#include <QPointer>
#include <QString>
#include <QThreadPool>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cli/client.h"
#include "cli/interrupt.h"
#include "gui/widgets/connection_settings.h"

namespace flotilla::console {

// The client options for `settings` (plaintext or TLS files; clusterctl's timeouts).
cli::ClientOptions clientOptions(const ConnectionSettings& settings);

class ConsoleClient : public QObject {
  Q_OBJECT

 public:
  explicit ConsoleClient(cli::ClientOptions options, QObject* parent = nullptr);
  // Cancels the calls in flight and waits for the workers (their callbacks are dropped).
  ~ConsoleClient() override;

  // For replacing a client without waiting: cancels the calls in flight, drops their
  // callbacks, and deletes this object (deleteLater) once the last one has come back, so
  // that the UI thread never waits for a call that is still connecting.
  void retire();

  using Stub = cli::ClusterClient::Stub;

  // Calls `method` with `request` off the UI thread; `done` runs on this object's thread with
  // the response or the error, unless `receiver` was destroyed meanwhile. `what` names the
  // call in errors ("StartVm web1").
  template <typename Request, typename Response>
  void call(cli::CallKind kind, const QString& what,
            grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
            const Request& request, QObject* receiver,
            std::function<void(const absl::StatusOr<Response>&)> done) {
    QPointer<QObject> guard(receiver);
    const std::string name = what.toStdString();
    run([this, kind, name, method, request, guard, done](cli::ClusterClient* client,
                                                         const absl::Status& unusable) {
      absl::StatusOr<Response> result = client != nullptr
                                            ? client->call(kind, name, method, request)
                                            : absl::StatusOr<Response>(unusable);
      QMetaObject::invokeMethod(
          this,
          [this, guard, done, result = std::move(result)] {
            finished();
            if (guard && !retired_) done(result);
          },
          Qt::QueuedConnection);
    });
  }

  const cli::ClientOptions& options() const { return options_; }
  int callsInFlight() const { return in_flight_; }

 Q_SIGNALS:
  // The number of calls in flight changed (the status bar shows it).
  void busyChanged(int calls_in_flight);

 private:
  // Runs `work` on a worker with a client of the pool (nullptr and the reason when none
  // can be made, e.g. no endpoints).
  void run(std::function<void(cli::ClusterClient*, const absl::Status&)> work);
  void finished();

  cli::ClientOptions options_;
  cli::Interrupt interrupt_;  // triggered by the destructor: calls in flight end
  QThreadPool pool_;
  int in_flight_ = 0;     // UI thread only
  bool retired_ = false;  // UI thread only
  absl::Mutex mu_;
  std::vector<std::unique_ptr<cli::ClusterClient>> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace flotilla::console
