// The controllers flotilla-console connects to, and how. ConnectionDialog edits it; the
// console's client turns it into cli::ClientOptions. Saved with QSettings; the first start
// takes clusterctl's configuration (docs/clusterctl.md "Configuration") as its default.
#pragma once

#include <QSettings>
#include <QString>
#include <QStringList>

#include "absl/status/status.h"

namespace flotilla::console {

struct ConnectionSettings {
  QStringList endpoints;  // HOST:PORT or unix:PATH of controller replicas, tried in order
  bool tls = false;       // false: plaintext (tests and the local cluster only)
  QString ca_file;        // the cluster CA (empty with tls: the system's CAs)
  QString cert_file;      // client certificate and key, for mutual TLS (both or neither)
  QString key_file;

  bool operator==(const ConnectionSettings&) const = default;
};

// Every endpoint well-formed, at least one, cert and key both or neither, files readable.
// The error names the field and the value. With tls off the files are not used, so not checked.
absl::Status validateConnectionSettings(const ConnectionSettings& settings);

// The field an error of validateConnectionSettings is about, so that ConnectionDialog can show
// the message next to it.
enum class ConnectionField { kNone, kEndpoints, kCaFile, kCertFile, kKeyFile };

struct ConnectionSettingsCheck {
  absl::Status status;  // validateConnectionSettings's answer
  ConnectionField field = ConnectionField::kNone;
  int endpoint_index = -1;  // kEndpoints: the bad endpoint (-1: the list is empty)
};

// validateConnectionSettings with the field its (first) error is about.
ConnectionSettingsCheck checkConnectionSettings(const ConnectionSettings& settings);

// One endpoint: HOST:PORT, [IPV6]:PORT or unix:PATH.
absl::Status validateEndpoint(const QString& endpoint);

// Group "connection" of `store`; nothing saved: clusterctl's configuration if there is one,
// else empty.
ConnectionSettings loadConnectionSettings(QSettings& store);
void saveConnectionSettings(const ConnectionSettings& settings, QSettings& store);

}  // namespace flotilla::console
