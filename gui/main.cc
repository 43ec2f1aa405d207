// flotilla-console: the Qt 6 desktop admin console (docs/console.md).
//   flotilla-console [--endpoint HOST:PORT ...] [--tls --ca FILE --cert FILE --key FILE]
//                    [--screenshot FILE]
// Options override the saved connection settings (QSettings), which default to clusterctl's
// configuration (~/.config/flotilla/clusterctl.yaml, written by deploy/local-cluster.sh).
#include <QApplication>
#include <QCommandLineParser>
#include <QElapsedTimer>
#include <QSettings>
#include <QTimer>
#include <cstdio>
#include <memory>

#include "gui/main_window.h"
#include "gui/prompts.h"
#include "gui/widgets/connection_settings.h"

namespace {

// --screenshot: once the cluster's state has arrived (the store has hosts and changed not for
// a second), saves the main window to `path`, prints what it shows and quits; gives up after
// 30 s. For end-to-end checks against a real cluster (deploy/demo.sh) and for docs.
void screenshotWhenSettled(flotilla::console::MainWindow& window, const QString& path) {
  auto* timer = new QTimer(&window);
  auto quiet = std::make_shared<QElapsedTimer>();
  auto waited = std::make_shared<QElapsedTimer>();
  quiet->start();
  waited->start();
  auto changed = [quiet] { quiet->restart(); };
  flotilla::console::ClusterStore& store = window.store();
  QObject::connect(&store, &flotilla::console::ClusterStore::hostPut, timer, changed);
  QObject::connect(&store, &flotilla::console::ClusterStore::vmPut, timer, changed);
  QObject::connect(&store, &flotilla::console::ClusterStore::migrationPut, timer, changed);
  QObject::connect(timer, &QTimer::timeout, &window, [&window, &store, path, quiet, waited] {
    if (store.hosts().empty() || quiet->elapsed() < 1000) {
      if (waited->elapsed() > 30'000) {
        std::fprintf(stderr,
                     "flotilla-console: no cluster state within 30 s (see the status bar's "
                     "connection state; check the endpoints)\n");
        QApplication::exit(1);
      }
      return;
    }
    if (!window.grab().save(path, "PNG")) {
      std::fprintf(stderr, "flotilla-console: cannot write %s\n", qPrintable(path));
      QApplication::exit(1);
      return;
    }
    std::printf("flotilla-console: %zu hosts, %zu VMs, %zu migrations, revision %lld -> %s\n",
                store.hosts().size(), store.vms().size(), store.migrations().size(),
                static_cast<long long>(store.revision()), qPrintable(path));
    QApplication::exit(0);
  });
  timer->start(200);
}

}  // namespace

int main(int argc, char** argv) {
  QApplication app(argc, argv);
  QApplication::setOrganizationName(QStringLiteral("flotilla"));
  QApplication::setApplicationName(QStringLiteral("flotilla-console"));

  QCommandLineParser parser;
  parser.setApplicationDescription(
      QStringLiteral("The Flotilla cluster's desktop console (a client of ClusterService)."));
  parser.addHelpOption();
  const QCommandLineOption endpoint(
      QStringList{QStringLiteral("e"), QStringLiteral("endpoint")},
      QStringLiteral("A controller replica, HOST:PORT or unix:PATH (repeat for several; they "
                     "are tried in order)."),
      QStringLiteral("HOST:PORT"));
  const QCommandLineOption tls(QStringLiteral("tls"), QStringLiteral("Connect with TLS."));
  const QCommandLineOption plaintext(QStringLiteral("plaintext"),
                                     QStringLiteral("Connect without TLS."));
  const QCommandLineOption ca(QStringLiteral("ca"), QStringLiteral("The cluster CA (PEM)."),
                              QStringLiteral("FILE"));
  const QCommandLineOption cert(QStringLiteral("cert"),
                                QStringLiteral("Client certificate for mutual TLS (PEM)."),
                                QStringLiteral("FILE"));
  const QCommandLineOption key(QStringLiteral("key"), QStringLiteral("Client key (PEM)."),
                               QStringLiteral("FILE"));
  const QCommandLineOption screenshot(
      QStringLiteral("screenshot"),
      QStringLiteral("Once the cluster's state has arrived, save the main window as a PNG to "
                     "FILE, print what it shows and exit (1 when nothing came within 30 s). "
                     "With QT_QPA_PLATFORM=offscreen it needs no display."),
      QStringLiteral("FILE"));
  parser.addOptions({endpoint, tls, plaintext, ca, cert, key, screenshot});
  parser.process(app);

  QSettings store;
  flotilla::console::ConnectionSettings settings = flotilla::console::loadConnectionSettings(store);
  if (parser.isSet(endpoint)) settings.endpoints = parser.values(endpoint);
  if (parser.isSet(tls)) settings.tls = true;
  if (parser.isSet(plaintext)) settings.tls = false;
  if (parser.isSet(ca)) settings.ca_file = parser.value(ca);
  if (parser.isSet(cert)) settings.cert_file = parser.value(cert);
  if (parser.isSet(key)) settings.key_file = parser.value(key);

  flotilla::console::DialogPrompts prompts;
  flotilla::console::MainWindow window(prompts, &store);
  window.show();
  if (const absl::Status valid = flotilla::console::validateConnectionSettings(settings);
      !valid.ok()) {
    // Nothing usable yet (first start without clusterctl's configuration): ask.
    prompts.error(&window, QStringLiteral("Connection settings"),
                  QString::fromStdString(std::string(valid.message())) +
                      QStringLiteral("\n\nChoose the controller endpoints in File → Connect."));
    std::optional<flotilla::console::ConnectionSettings> edited =
        prompts.connection(&window, settings);
    if (!edited) return 0;
    settings = *edited;
    flotilla::console::saveConnectionSettings(settings, store);
  }
  window.connectTo(settings);
  if (parser.isSet(screenshot)) {
    window.resize(1600, 940);
    screenshotWhenSettled(window, parser.value(screenshot));
  }
  return QApplication::exec();
}
