// flotilla-console's connection settings: validation, QSettings storage, and the fallback to
// clusterctl's configuration (see connection_settings.h).
#include "gui/widgets/connection_settings.h"

#include <QFileInfo>
#include <QtDebug>
#include <cstdlib>
#include <optional>
#include <string>

#include "cli/config.h"
#include "gui/widgets/format.h"

namespace flotilla::console {
namespace {

constexpr char kGroup[] = "connection";
constexpr char kEndpointsKey[] = "endpoints";
constexpr char kTlsKey[] = "tls";
constexpr char kCaFileKey[] = "ca_file";
constexpr char kCertFileKey[] = "cert_file";
constexpr char kKeyFileKey[] = "key_file";

absl::Status invalid(const QString& message) {
  return absl::InvalidArgumentError(message.toStdString());
}

bool isHostCharacter(QChar c) {
  return (c >= QLatin1Char('a') && c <= QLatin1Char('z')) ||
         (c >= QLatin1Char('A') && c <= QLatin1Char('Z')) ||
         (c >= QLatin1Char('0') && c <= QLatin1Char('9')) || c == QLatin1Char('-') ||
         c == QLatin1Char('.') || c == QLatin1Char('_');
}

// `what` ("CA file") at `path` must be a readable regular file.
absl::Status checkReadableFile(const QString& what, const QString& path, const QString& hint) {
  const QFileInfo info(path);
  if (!info.exists()) {
    return invalid(QStringLiteral("%1 \"%2\" does not exist: %3").arg(what, path, hint));
  }
  if (!info.isFile()) {
    return invalid(QStringLiteral("%1 \"%2\" is not a file: %3").arg(what, path, hint));
  }
  if (!info.isReadable()) {
    return invalid(QStringLiteral("%1 \"%2\" cannot be read by this user: fix its permissions "
                                  "or choose another file")
                       .arg(what, path));
  }
  return absl::OkStatus();
}

ConnectionSettings fromClusterctlConfig(const cli::ClusterctlConfig& config) {
  ConnectionSettings settings;
  for (const std::string& endpoint : config.endpoints) {
    settings.endpoints.append(QString::fromStdString(endpoint));
  }
  settings.tls = !config.plaintext;
  settings.ca_file = QString::fromStdString(config.tls.ca_file);
  settings.cert_file = QString::fromStdString(config.tls.cert_file);
  settings.key_file = QString::fromStdString(config.tls.key_file);
  return settings;
}

}  // namespace

absl::Status validateEndpoint(const QString& endpoint) {
  const QString expected =
      QStringLiteral("expected HOST:PORT (e.g. 127.0.0.1:7000), [IPV6]:PORT or unix:PATH");
  if (endpoint.isEmpty()) return invalid(QStringLiteral("an endpoint is empty: %1").arg(expected));
  for (QChar c : endpoint) {
    if (c.isSpace()) {
      return invalid(
          QStringLiteral("endpoint \"%1\" contains a space: %2").arg(endpoint, expected));
    }
  }
  if (endpoint.startsWith(QLatin1String("unix:"))) {
    if (endpoint.size() == 5) {
      return invalid(
          QStringLiteral("endpoint \"%1\" has no socket path: %2").arg(endpoint, expected));
    }
    return absl::OkStatus();
  }
  QString host;
  QString port;
  if (endpoint.startsWith(QLatin1Char('['))) {
    const qsizetype close = endpoint.indexOf(QLatin1Char(']'));
    if (close < 0 || close + 1 >= endpoint.size() || endpoint[close + 1] != QLatin1Char(':')) {
      return invalid(
          QStringLiteral("endpoint \"%1\" is not [IPV6]:PORT: %2").arg(endpoint, expected));
    }
    host = endpoint.mid(1, close - 1);
    port = endpoint.mid(close + 2);
    if (host.isEmpty()) {
      return invalid(
          QStringLiteral("endpoint \"%1\" has an empty address: %2").arg(endpoint, expected));
    }
    for (QChar c : host) {
      if (!(c.isDigit() || (c.toLower() >= QLatin1Char('a') && c.toLower() <= QLatin1Char('f')) ||
            c == QLatin1Char(':') || c == QLatin1Char('.'))) {
        return invalid(
            QStringLiteral("endpoint \"%1\": \"%2\" is not an IPv6 address").arg(endpoint, host));
      }
    }
  } else {
    const qsizetype colon = endpoint.lastIndexOf(QLatin1Char(':'));
    if (colon < 0) {
      return invalid(QStringLiteral("endpoint \"%1\" has no port: %2").arg(endpoint, expected));
    }
    host = endpoint.left(colon);
    port = endpoint.mid(colon + 1);
    if (host.isEmpty()) {
      return invalid(QStringLiteral("endpoint \"%1\" has no host: %2").arg(endpoint, expected));
    }
    if (host.contains(QLatin1Char(':'))) {
      return invalid(QStringLiteral("endpoint \"%1\": put an IPv6 address in brackets, e.g. "
                                    "[::1]:7000")
                         .arg(endpoint));
    }
    for (QChar c : host) {
      if (!isHostCharacter(c)) {
        return invalid(QStringLiteral("endpoint \"%1\": \"%2\" is not a host name or address: %3")
                           .arg(endpoint, host, expected));
      }
    }
  }
  bool numeric = !port.isEmpty();
  for (QChar c : port) numeric = numeric && c >= QLatin1Char('0') && c <= QLatin1Char('9');
  const int port_number = numeric && port.size() <= 5 ? port.toInt() : 0;
  if (port_number < 1 || port_number > 65535) {
    return invalid(
        QStringLiteral("endpoint \"%1\": port \"%2\" is not a number from 1 to 65535: %3")
            .arg(endpoint, port, expected));
  }
  return absl::OkStatus();
}

ConnectionSettingsCheck checkConnectionSettings(const ConnectionSettings& settings) {
  ConnectionSettingsCheck check;
  if (settings.endpoints.isEmpty()) {
    check.status = invalid(QStringLiteral(
        "no controller endpoint: add one as HOST:PORT (e.g. 127.0.0.1:7000) or unix:PATH"));
    check.field = ConnectionField::kEndpoints;
    return check;
  }
  for (int i = 0; i < settings.endpoints.size(); ++i) {
    if (absl::Status status = validateEndpoint(settings.endpoints[i]); !status.ok()) {
      check.status = status;
      check.field = ConnectionField::kEndpoints;
      check.endpoint_index = i;
      return check;
    }
  }
  // Without TLS the files are not used (the dialog keeps them for when TLS is turned on).
  if (!settings.tls) return check;
  if (!settings.ca_file.isEmpty()) {
    check.status = checkReadableFile(QStringLiteral("CA file"), settings.ca_file,
                                     QStringLiteral("choose the cluster CA's certificate (PEM), "
                                                    "or clear it to use the system's CAs"));
    if (!check.status.ok()) {
      check.field = ConnectionField::kCaFile;
      return check;
    }
  }
  if (settings.cert_file.isEmpty() != settings.key_file.isEmpty()) {
    if (settings.key_file.isEmpty()) {
      check.status = invalid(QStringLiteral("client certificate \"%1\" has no key file: choose "
                                            "its key, or clear the certificate")
                                 .arg(settings.cert_file));
      check.field = ConnectionField::kKeyFile;
    } else {
      check.status = invalid(QStringLiteral("client key \"%1\" has no certificate file: choose "
                                            "its certificate, or clear the key")
                                 .arg(settings.key_file));
      check.field = ConnectionField::kCertFile;
    }
    return check;
  }
  if (!settings.cert_file.isEmpty()) {
    check.status = checkReadableFile(QStringLiteral("client certificate"), settings.cert_file,
                                     QStringLiteral("choose the client certificate (PEM)"));
    if (!check.status.ok()) {
      check.field = ConnectionField::kCertFile;
      return check;
    }
    check.status = checkReadableFile(QStringLiteral("client key"), settings.key_file,
                                     QStringLiteral("choose the client certificate's key (PEM)"));
    if (!check.status.ok()) {
      check.field = ConnectionField::kKeyFile;
      return check;
    }
  }
  return check;
}

absl::Status validateConnectionSettings(const ConnectionSettings& settings) {
  return checkConnectionSettings(settings).status;
}

ConnectionSettings loadConnectionSettings(QSettings& store) {
  store.beginGroup(QLatin1String(kGroup));
  const bool saved = store.contains(QLatin1String(kEndpointsKey));
  ConnectionSettings settings;
  if (saved) {
    settings.endpoints = store.value(QLatin1String(kEndpointsKey)).toStringList();
    settings.tls = store.value(QLatin1String(kTlsKey), false).toBool();
    settings.ca_file = store.value(QLatin1String(kCaFileKey)).toString();
    settings.cert_file = store.value(QLatin1String(kCertFileKey)).toString();
    settings.key_file = store.value(QLatin1String(kKeyFileKey)).toString();
  }
  store.endGroup();
  if (saved) return settings;

  const std::optional<std::string> path = cli::defaultConfigPath(
      [](const std::string& name) -> std::optional<std::string> {
        const char* value = std::getenv(name.c_str());
        if (value == nullptr) return std::nullopt;
        return std::string(value);
      },
      [](const std::string& file) { return QFileInfo::exists(QString::fromStdString(file)); });
  if (!path.has_value()) return settings;
  absl::StatusOr<cli::ClusterctlConfig> config = cli::loadClusterctlConfig(*path);
  if (!config.ok()) {
    // The dialog then starts empty; say why on stderr, where clusterctl users look.
    qWarning().noquote() << "flotilla-console: ignoring clusterctl's configuration:"
                         << statusMessage(config.status());
    return settings;
  }
  return fromClusterctlConfig(*config);
}

void saveConnectionSettings(const ConnectionSettings& settings, QSettings& store) {
  store.beginGroup(QLatin1String(kGroup));
  store.setValue(QLatin1String(kEndpointsKey), settings.endpoints);
  store.setValue(QLatin1String(kTlsKey), settings.tls);
  store.setValue(QLatin1String(kCaFileKey), settings.ca_file);
  store.setValue(QLatin1String(kCertFileKey), settings.cert_file);
  store.setValue(QLatin1String(kKeyFileKey), settings.key_file);
  store.endGroup();
}

}  // namespace flotilla::console
