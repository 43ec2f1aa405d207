// flotilla-console's asynchronous client (see console_client.h).
#include "gui/console_client.h"

namespace flotilla::console {

cli::ClientOptions clientOptions(const ConnectionSettings& settings) {
  cli::ClientOptions options;
  for (const QString& endpoint : settings.endpoints) {
    options.endpoints.push_back(endpoint.trimmed().toStdString());
  }
  options.channel.tls = settings.tls;
  options.channel.tls_files.ca_file = settings.ca_file.toStdString();
  options.channel.tls_files.cert_file = settings.cert_file.toStdString();
  options.channel.tls_files.key_file = settings.key_file.toStdString();
  return options;
}

ConsoleClient::ConsoleClient(cli::ClientOptions options, QObject* parent)
    : QObject(parent), options_(std::move(options)) {
  // A few calls at once: the console log's polling must not wait behind a slow action.
  pool_.setMaxThreadCount(4);
}

ConsoleClient::~ConsoleClient() {
  interrupt_.trigger();
  pool_.waitForDone();
}

void ConsoleClient::run(std::function<void(cli::ClusterClient*, const absl::Status&)> work) {
  ++in_flight_;
  Q_EMIT busyChanged(in_flight_);
  pool_.start([this, work = std::move(work)] {
    std::unique_ptr<cli::ClusterClient> client;
    {
      absl::MutexLock lock(&mu_);
      if (!idle_.empty()) {
        client = std::move(idle_.back());
        idle_.pop_back();
      }
    }
    if (client == nullptr) {
      auto created = cli::ClusterClient::create(options_, interrupt_);
      if (!created.ok()) {
        work(nullptr, created.status());
        return;
      }
      client = std::move(*created);
    }
    work(client.get(), absl::OkStatus());
    absl::MutexLock lock(&mu_);
    idle_.push_back(std::move(client));
  });
}

void ConsoleClient::retire() {
  retired_ = true;
  interrupt_.trigger();
  if (in_flight_ == 0) deleteLater();
}

void ConsoleClient::finished() {
  --in_flight_;
  if (retired_) {
    if (in_flight_ == 0) deleteLater();
    return;
  }
  Q_EMIT busyChanged(in_flight_);
}

}  // namespace flotilla::console
