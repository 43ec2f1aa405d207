// ConnectionSettings (validation, QSettings round trip, clusterctl fallback) and
// ConnectionDialog (editing, validation on OK).
#include <QApplication>
#include <QCheckBox>
#include <QDialogButtonBox>
#include <QFile>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTimer>
#include <QtTest/QTest>

#include "gui/widgets/connection_dialog.h"
#include "gui/widgets/connection_settings.h"
#include "gui/widgets/format.h"
#include "tests/unit/gui/widgets/render_check.h"

namespace flotilla::console {
namespace {

QString writeFile(const QTemporaryDir& dir, const QString& name, const QByteArray& content) {
  const QString path = dir.filePath(name);
  QFile file(path);
  if (!file.open(QIODevice::WriteOnly)) qFatal("cannot write %s", qPrintable(path));
  file.write(content);
  return path;
}

template <typename T>
T* child(QWidget& parent, const char* name) {
  T* found = parent.findChild<T*>(QString::fromLatin1(name));
  if (found == nullptr) qFatal("no child %s", name);
  return found;
}

}  // namespace

class ConnectionDialogTest : public QObject {
  Q_OBJECT

 private Q_SLOTS:
  void init() {
    // Each test decides where clusterctl's configuration is; none by default.
    qputenv("CLUSTERCTL_CONFIG", dir_.filePath(QStringLiteral("missing.yaml")).toLocal8Bit());
  }

  void endpointsAreValidated_data() {
    QTest::addColumn<QString>("endpoint");
    QTest::addColumn<bool>("valid");
    QTest::newRow("ipv4") << QStringLiteral("127.0.0.1:7000") << true;
    QTest::newRow("name") << QStringLiteral("ctl-1.example.org:443") << true;
    QTest::newRow("ipv6") << QStringLiteral("[::1]:7000") << true;
    QTest::newRow("unix") << QStringLiteral("unix:/run/flotilla/controller.sock") << true;
    QTest::newRow("empty") << QString() << false;
    QTest::newRow("no port") << QStringLiteral("localhost") << false;
    QTest::newRow("empty port") << QStringLiteral("localhost:") << false;
    QTest::newRow("port text") << QStringLiteral("localhost:http") << false;
    QTest::newRow("port too big") << QStringLiteral("localhost:70000") << false;
    QTest::newRow("port zero") << QStringLiteral("localhost:0") << false;
    QTest::newRow("no host") << QStringLiteral(":7000") << false;
    QTest::newRow("bare ipv6") << QStringLiteral("::1:7000") << false;
    QTest::newRow("unix no path") << QStringLiteral("unix:") << false;
    QTest::newRow("space") << QStringLiteral("local host:7000") << false;
    QTest::newRow("scheme") << QStringLiteral("http://localhost:7000") << false;
  }

  void endpointsAreValidated() {
    QFETCH(QString, endpoint);
    QFETCH(bool, valid);
    const absl::Status status = validateEndpoint(endpoint);
    QCOMPARE(status.ok(), valid);
    if (!valid && !endpoint.isEmpty()) {
      QVERIFY2(statusMessage(status).contains(endpoint), qPrintable(statusMessage(status)));
    }
  }

  void settingsNeedAnEndpoint() {
    const ConnectionSettingsCheck check = checkConnectionSettings(ConnectionSettings{});
    QVERIFY(!check.status.ok());
    QCOMPARE(check.field, ConnectionField::kEndpoints);
    QVERIFY(statusMessage(check.status).contains(QStringLiteral("HOST:PORT")));
  }

  void badEndpointIsNamed() {
    ConnectionSettings settings;
    settings.endpoints = {QStringLiteral("10.0.0.1:7000"), QStringLiteral("10.0.0.2")};
    const ConnectionSettingsCheck check = checkConnectionSettings(settings);
    QCOMPARE(check.field, ConnectionField::kEndpoints);
    QCOMPARE(check.endpoint_index, 1);
    QVERIFY(statusMessage(check.status).contains(QStringLiteral("10.0.0.2")));
    QVERIFY(!validateConnectionSettings(settings).ok());
  }

  void tlsFilesAreChecked() {
    QTemporaryDir dir;
    ConnectionSettings settings;
    settings.endpoints = {QStringLiteral("127.0.0.1:7000")};
    settings.tls = true;
    settings.ca_file = dir.filePath(QStringLiteral("nope-ca.pem"));
    ConnectionSettingsCheck check = checkConnectionSettings(settings);
    QCOMPARE(check.field, ConnectionField::kCaFile);
    QVERIFY(statusMessage(check.status).contains(settings.ca_file));

    settings.ca_file = writeFile(dir, QStringLiteral("ca.pem"), "ca");
    settings.cert_file = writeFile(dir, QStringLiteral("client.pem"), "cert");
    check = checkConnectionSettings(settings);
    QCOMPARE(check.field, ConnectionField::kKeyFile);  // a certificate needs its key
    QVERIFY(statusMessage(check.status).contains(settings.cert_file));

    settings.key_file = dir.filePath(QStringLiteral("missing-key.pem"));
    check = checkConnectionSettings(settings);
    QCOMPARE(check.field, ConnectionField::kKeyFile);
    QVERIFY(statusMessage(check.status).contains(QStringLiteral("does not exist")));

    settings.key_file = writeFile(dir, QStringLiteral("client.key"), "key");
    QVERIFY(validateConnectionSettings(settings).ok());

    settings.cert_file.clear();
    check = checkConnectionSettings(settings);
    QCOMPARE(check.field, ConnectionField::kCertFile);

    // Without TLS the files are not used, so not checked.
    settings.tls = false;
    settings.ca_file = dir.filePath(QStringLiteral("nope-ca.pem"));
    QVERIFY(validateConnectionSettings(settings).ok());
  }

  void settingsRoundTripThroughQSettings_data() {
    QTest::addColumn<QStringList>("endpoints");
    QTest::addColumn<bool>("tls");
    QTest::newRow("one") << QStringList{QStringLiteral("127.0.0.1:7000")} << false;
    QTest::newRow("three") << QStringList{QStringLiteral("10.0.0.1:7000"),
                                          QStringLiteral("[fd00::2]:7000"),
                                          QStringLiteral("unix:/run/ctl.sock")}
                           << true;
    QTest::newRow("none") << QStringList{} << true;
  }

  void settingsRoundTripThroughQSettings() {
    QFETCH(QStringList, endpoints);
    QFETCH(bool, tls);
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("console.ini"));
    ConnectionSettings settings;
    settings.endpoints = endpoints;
    settings.tls = tls;
    settings.ca_file = QStringLiteral("/etc/flotilla/ca.pem");
    settings.cert_file = QStringLiteral("/home/admin/.config/flotilla/admin, the cert.pem");
    settings.key_file = QStringLiteral("/home/admin/.config/flotilla/admin.key");
    {
      QSettings store(path, QSettings::IniFormat);
      saveConnectionSettings(settings, store);
      store.sync();
      QCOMPARE(store.status(), QSettings::NoError);
    }
    QSettings store(path, QSettings::IniFormat);
    QCOMPARE(loadConnectionSettings(store), settings);
  }

  void clusterctlConfigurationIsTheDefault() {
    QTemporaryDir dir;
    const QString config = writeFile(dir, QStringLiteral("clusterctl.yaml"),
                                     "endpoints: [10.1.0.1:7000, 10.1.0.2:7000]\n"
                                     "tls: {ca: /etc/flotilla/ca.pem, cert: /tmp/c.pem, "
                                     "key: /tmp/c.key}\n");
    qputenv("CLUSTERCTL_CONFIG", config.toLocal8Bit());
    QSettings store(dir.filePath(QStringLiteral("console.ini")), QSettings::IniFormat);
    ConnectionSettings loaded = loadConnectionSettings(store);
    QCOMPARE(loaded.endpoints,
             (QStringList{QStringLiteral("10.1.0.1:7000"), QStringLiteral("10.1.0.2:7000")}));
    QVERIFY(loaded.tls);
    QCOMPARE(loaded.ca_file, QStringLiteral("/etc/flotilla/ca.pem"));
    QCOMPARE(loaded.cert_file, QStringLiteral("/tmp/c.pem"));
    QCOMPARE(loaded.key_file, QStringLiteral("/tmp/c.key"));

    writeFile(dir, QStringLiteral("clusterctl.yaml"),
              "endpoints: [127.0.0.1:7000]\nplaintext: true\n");
    loaded = loadConnectionSettings(store);
    QCOMPARE(loaded.endpoints, QStringList{QStringLiteral("127.0.0.1:7000")});
    QVERIFY(!loaded.tls);

    // Once the console saved its own settings, clusterctl's no longer matter.
    ConnectionSettings own;
    own.endpoints = {QStringLiteral("192.168.1.5:7000")};
    saveConnectionSettings(own, store);
    QCOMPARE(loadConnectionSettings(store), own);
  }

  void brokenClusterctlConfigurationGivesEmptySettings() {
    QTemporaryDir dir;
    const QString config =
        writeFile(dir, QStringLiteral("clusterctl.yaml"), "endpoints: [a:1]\nplaintext: maybe\n");
    qputenv("CLUSTERCTL_CONFIG", config.toLocal8Bit());
    QTest::ignoreMessage(QtWarningMsg,
                         QRegularExpression(QStringLiteral("ignoring clusterctl's configuration")));
    QSettings store(dir.filePath(QStringLiteral("console.ini")), QSettings::IniFormat);
    QCOMPARE(loadConnectionSettings(store), ConnectionSettings{});

    // No file at $CLUSTERCTL_CONFIG: the same, with a warning that names it.
    qputenv("CLUSTERCTL_CONFIG", dir.filePath(QStringLiteral("none.yaml")).toLocal8Bit());
    QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("none\\.yaml")));
    QCOMPARE(loadConnectionSettings(store), ConnectionSettings{});
  }

  void dialogRoundTripsSettings() {
    ConnectionDialog dialog;
    ConnectionSettings settings;
    settings.endpoints = {QStringLiteral("10.0.0.1:7000"), QStringLiteral("10.0.0.2:7000")};
    settings.tls = true;
    settings.ca_file = QStringLiteral("/etc/flotilla/ca.pem");
    dialog.setSettings(settings);
    QCOMPARE(dialog.settings(), settings);
    QVERIFY(child<QLineEdit>(dialog, "caFile")->isEnabled());
    child<QCheckBox>(dialog, "tls")->setChecked(false);
    QVERIFY(!child<QLineEdit>(dialog, "caFile")->isEnabled());
  }

  void dialogEditsTheEndpointList() {
    ConnectionDialog dialog;
    auto* list = child<QListWidget>(dialog, "endpointList");
    auto* input = child<QLineEdit>(dialog, "endpointInput");
    auto* add = child<QPushButton>(dialog, "addEndpoint");
    input->setText(QStringLiteral("10.0.0.1:7000"));
    add->click();
    input->setText(QStringLiteral(" 10.0.0.2:7000 "));
    add->click();
    input->setText(QStringLiteral("10.0.0.3:7000"));
    add->click();
    QCOMPARE(dialog.settings().endpoints,
             (QStringList{QStringLiteral("10.0.0.1:7000"), QStringLiteral("10.0.0.2:7000"),
                          QStringLiteral("10.0.0.3:7000")}));
    QVERIFY(input->text().isEmpty());

    list->setCurrentRow(2);
    child<QPushButton>(dialog, "moveEndpointUp")->click();
    QCOMPARE(dialog.settings().endpoints.at(1), QStringLiteral("10.0.0.3:7000"));
    QCOMPARE(list->currentRow(), 1);
    list->setCurrentRow(0);
    QVERIFY(!child<QPushButton>(dialog, "moveEndpointUp")->isEnabled());
    child<QPushButton>(dialog, "moveEndpointDown")->click();
    QCOMPARE(dialog.settings().endpoints,
             (QStringList{QStringLiteral("10.0.0.3:7000"), QStringLiteral("10.0.0.1:7000"),
                          QStringLiteral("10.0.0.2:7000")}));
    list->setCurrentRow(1);
    child<QPushButton>(dialog, "removeEndpoint")->click();
    QCOMPARE(dialog.settings().endpoints,
             (QStringList{QStringLiteral("10.0.0.3:7000"), QStringLiteral("10.0.0.2:7000")}));

    // A bad endpoint is not added; the error says why, next to the list.
    input->setText(QStringLiteral("10.0.0.9"));
    add->click();
    QCOMPARE(list->count(), 2);
    auto* error = child<QLabel>(dialog, "endpointsError");
    QVERIFY(!error->isHidden());
    QVERIFY(error->text().contains(QStringLiteral("10.0.0.9")));
    QCOMPARE(dialog.errorText(ConnectionField::kEndpoints), error->text());
  }

  void okWithABadEndpointShowsTheErrorAndStaysOpen() {
    ConnectionDialog dialog;
    ConnectionSettings settings;
    settings.endpoints = {QStringLiteral("10.0.0.1:7000"), QStringLiteral("10.0.0.2:port")};
    dialog.setSettings(settings);
    dialog.show();
    QSignalSpy accepted(&dialog, &QDialog::accepted);
    child<QDialogButtonBox>(dialog, "buttons")->button(QDialogButtonBox::Ok)->click();
    QCOMPARE(accepted.count(), 0);
    QVERIFY(dialog.isVisible());
    auto* error = child<QLabel>(dialog, "endpointsError");
    QVERIFY(!error->isHidden());
    QVERIFY2(error->text().contains(QStringLiteral("10.0.0.2:port")), qPrintable(error->text()));
    QCOMPARE(child<QListWidget>(dialog, "endpointList")->currentRow(), 1);

    // An endpoint still in the input line when OK is pressed is validated too.
    settings.endpoints = {QStringLiteral("10.0.0.1:7000")};
    dialog.setSettings(settings);
    child<QLineEdit>(dialog, "endpointInput")->setText(QStringLiteral("nonsense"));
    child<QDialogButtonBox>(dialog, "buttons")->button(QDialogButtonBox::Ok)->click();
    QCOMPARE(accepted.count(), 0);
    QVERIFY(dialog.errorText(ConnectionField::kEndpoints).contains(QStringLiteral("nonsense")));
  }

  void okWithACertificateWithoutKeyShowsTheErrorAtTheKey() {
    QTemporaryDir dir;
    ConnectionDialog dialog;
    ConnectionSettings settings;
    settings.endpoints = {QStringLiteral("10.0.0.1:7000")};
    settings.tls = true;
    settings.cert_file = writeFile(dir, QStringLiteral("admin.pem"), "cert");
    dialog.setSettings(settings);
    dialog.show();
    QSignalSpy accepted(&dialog, &QDialog::accepted);
    child<QDialogButtonBox>(dialog, "buttons")->button(QDialogButtonBox::Ok)->click();
    QCOMPARE(accepted.count(), 0);
    QVERIFY(!child<QLabel>(dialog, "keyFileError")->isHidden());
    QVERIFY(child<QLabel>(dialog, "endpointsError")->isHidden());

    child<QLineEdit>(dialog, "keyFile")->setText(writeFile(dir, QStringLiteral("admin.key"), "k"));
    child<QDialogButtonBox>(dialog, "buttons")->button(QDialogButtonBox::Ok)->click();
    QCOMPARE(accepted.count(), 1);
    QCOMPARE(dialog.result(), int(QDialog::Accepted));
    QVERIFY(child<QLabel>(dialog, "keyFileError")->isHidden());
  }

  void okWithAPendingGoodEndpointAddsIt() {
    ConnectionDialog dialog;
    dialog.show();
    child<QLineEdit>(dialog, "endpointInput")->setText(QStringLiteral("127.0.0.1:7000"));
    child<QDialogButtonBox>(dialog, "buttons")->button(QDialogButtonBox::Ok)->click();
    QCOMPARE(dialog.result(), int(QDialog::Accepted));
    QCOMPARE(dialog.settings().endpoints, QStringList{QStringLiteral("127.0.0.1:7000")});
  }

  void editReturnsTheSettingsOrNothing() {
    ConnectionSettings settings;
    settings.endpoints = {QStringLiteral("10.0.0.1:7000")};
    QTimer::singleShot(0, this, [] {
      auto* dialog = qobject_cast<ConnectionDialog*>(QApplication::activeModalWidget());
      if (dialog == nullptr) qFatal("no modal ConnectionDialog");
      dialog->findChild<QLineEdit*>(QStringLiteral("endpointInput"))
          ->setText(QStringLiteral("10.0.0.2:7000"));
      dialog->findChild<QDialogButtonBox*>(QStringLiteral("buttons"))
          ->button(QDialogButtonBox::Ok)
          ->click();
    });
    const std::optional<ConnectionSettings> edited = ConnectionDialog::edit(nullptr, settings);
    QVERIFY(edited.has_value());
    QCOMPARE(edited->endpoints,
             (QStringList{QStringLiteral("10.0.0.1:7000"), QStringLiteral("10.0.0.2:7000")}));

    QTimer::singleShot(0, this, [] {
      auto* dialog = qobject_cast<ConnectionDialog*>(QApplication::activeModalWidget());
      if (dialog == nullptr) qFatal("no modal ConnectionDialog");
      dialog->reject();
    });
    QVERIFY(!ConnectionDialog::edit(nullptr, settings).has_value());
  }

  void dialogRenders() {
    ConnectionDialog dialog;
    ConnectionSettings settings;
    settings.endpoints = {QStringLiteral("ctl-1.example.org:7000"),
                          QStringLiteral("ctl-2.example.org:7000")};
    settings.tls = true;
    settings.ca_file = QStringLiteral("/etc/flotilla/ca.pem");
    dialog.setSettings(settings);
    dialog.resize(560, 460);
    QVERIFY(testing::rendersToPng(dialog, QStringLiteral("connection-dialog")));
  }

 private:
  QTemporaryDir dir_;
};

}  // namespace flotilla::console

QTEST_MAIN(flotilla::console::ConnectionDialogTest)
#include "connection_dialog_test.moc"
