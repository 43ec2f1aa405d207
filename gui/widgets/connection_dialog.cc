// The connection dialog (see connection_dialog.h).
#include "gui/widgets/connection_dialog.h"

#include <QCheckBox>
#include <QDialogButtonBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPushButton>
#include <QVBoxLayout>

#include "gui/widgets/format.h"

namespace flotilla::console {
namespace {

QLabel* makeErrorLabel(const QString& name, QWidget* parent) {
  auto* label = new QLabel(parent);
  label->setObjectName(name);
  label->setWordWrap(true);
  label->setStyleSheet(QStringLiteral("color: #c62828;"));
  label->setTextInteractionFlags(Qt::TextSelectableByMouse);
  label->hide();
  return label;
}

QListWidgetItem* makeEndpointItem(const QString& endpoint) {
  auto* item = new QListWidgetItem(endpoint);
  item->setFlags(item->flags() | Qt::ItemIsEditable);
  return item;
}

}  // namespace

ConnectionDialog::ConnectionDialog(QWidget* parent) : QDialog(parent) {
  setObjectName(QStringLiteral("connectionDialog"));
  setWindowTitle(tr("Connect to a Flotilla cluster"));

  auto* controllers = new QGroupBox(tr("Controllers (tried in order)"), this);
  endpoint_list_ = new QListWidget(controllers);
  endpoint_list_->setObjectName(QStringLiteral("endpointList"));
  endpoint_list_->setEditTriggers(QAbstractItemView::DoubleClicked |
                                  QAbstractItemView::EditKeyPressed);
  endpoint_input_ = new QLineEdit(controllers);
  endpoint_input_->setObjectName(QStringLiteral("endpointInput"));
  endpoint_input_->setPlaceholderText(tr("HOST:PORT or unix:PATH"));
  add_endpoint_ = new QPushButton(tr("Add"), controllers);
  add_endpoint_->setObjectName(QStringLiteral("addEndpoint"));
  add_endpoint_->setAutoDefault(false);
  remove_endpoint_ = new QPushButton(tr("Remove"), controllers);
  remove_endpoint_->setObjectName(QStringLiteral("removeEndpoint"));
  remove_endpoint_->setAutoDefault(false);
  move_up_ = new QPushButton(tr("Up"), controllers);
  move_up_->setObjectName(QStringLiteral("moveEndpointUp"));
  move_up_->setAutoDefault(false);
  move_down_ = new QPushButton(tr("Down"), controllers);
  move_down_->setObjectName(QStringLiteral("moveEndpointDown"));
  move_down_->setAutoDefault(false);
  endpoints_error_ = makeErrorLabel(QStringLiteral("endpointsError"), controllers);

  auto* list_buttons = new QVBoxLayout;
  list_buttons->addWidget(move_up_);
  list_buttons->addWidget(move_down_);
  list_buttons->addWidget(remove_endpoint_);
  list_buttons->addStretch();
  auto* list_row = new QHBoxLayout;
  list_row->addWidget(endpoint_list_, 1);
  list_row->addLayout(list_buttons);
  auto* input_row = new QHBoxLayout;
  input_row->addWidget(endpoint_input_, 1);
  input_row->addWidget(add_endpoint_);
  auto* controllers_layout = new QVBoxLayout(controllers);
  controllers_layout->addLayout(list_row);
  controllers_layout->addLayout(input_row);
  controllers_layout->addWidget(endpoints_error_);

  auto* security = new QGroupBox(tr("Security"), this);
  tls_ = new QCheckBox(tr("Use TLS (off: plaintext, for tests and local clusters only)"), security);
  tls_->setObjectName(QStringLiteral("tls"));
  auto make_file_row = [security](const QString& name, const QString& placeholder, QLineEdit** line,
                                  QPushButton** button) {
    *line = new QLineEdit(security);
    (*line)->setObjectName(name);
    (*line)->setPlaceholderText(placeholder);
    *button = new QPushButton(tr("Browse…"), security);
    (*button)->setObjectName(name + QStringLiteral("Browse"));
    (*button)->setAutoDefault(false);
    auto* row = new QHBoxLayout;
    row->addWidget(*line, 1);
    row->addWidget(*button);
    return row;
  };
  auto* form = new QFormLayout;
  form->addRow(tr("CA certificate:"),
               make_file_row(QStringLiteral("caFile"), tr("empty: the system's CAs"), &ca_file_,
                             &ca_browse_));
  ca_error_ = makeErrorLabel(QStringLiteral("caFileError"), security);
  form->addRow(QString(), ca_error_);
  form->addRow(tr("Client certificate:"),
               make_file_row(QStringLiteral("certFile"), tr("for mutual TLS (optional)"),
                             &cert_file_, &cert_browse_));
  cert_error_ = makeErrorLabel(QStringLiteral("certFileError"), security);
  form->addRow(QString(), cert_error_);
  form->addRow(tr("Client key:"),
               make_file_row(QStringLiteral("keyFile"), tr("with the client certificate"),
                             &key_file_, &key_browse_));
  key_error_ = makeErrorLabel(QStringLiteral("keyFileError"), security);
  form->addRow(QString(), key_error_);
  auto* security_layout = new QVBoxLayout(security);
  security_layout->addWidget(tls_);
  security_layout->addLayout(form);

  buttons_ = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
  buttons_->setObjectName(QStringLiteral("buttons"));

  auto* layout = new QVBoxLayout(this);
  layout->addWidget(controllers);
  layout->addWidget(security);
  layout->addWidget(buttons_);

  connect(buttons_, &QDialogButtonBox::accepted, this, &ConnectionDialog::accept);
  connect(buttons_, &QDialogButtonBox::rejected, this, &ConnectionDialog::reject);
  connect(add_endpoint_, &QPushButton::clicked, this, &ConnectionDialog::addEndpointFromInput);
  connect(endpoint_input_, &QLineEdit::returnPressed, this,
          &ConnectionDialog::addEndpointFromInput);
  connect(remove_endpoint_, &QPushButton::clicked, this, &ConnectionDialog::removeSelectedEndpoint);
  connect(move_up_, &QPushButton::clicked, this, [this] { moveSelectedEndpoint(-1); });
  connect(move_down_, &QPushButton::clicked, this, [this] { moveSelectedEndpoint(1); });
  connect(endpoint_list_, &QListWidget::currentRowChanged, this, &ConnectionDialog::updateEnabled);
  connect(tls_, &QCheckBox::toggled, this, &ConnectionDialog::updateEnabled);
  connect(ca_browse_, &QPushButton::clicked, this,
          [this] { browse(ca_file_, tr("The cluster CA's certificate")); });
  connect(cert_browse_, &QPushButton::clicked, this,
          [this] { browse(cert_file_, tr("The client certificate")); });
  connect(key_browse_, &QPushButton::clicked, this,
          [this] { browse(key_file_, tr("The client certificate's key")); });
  updateEnabled();
}

std::optional<ConnectionSettings> ConnectionDialog::edit(QWidget* parent,
                                                         const ConnectionSettings& settings) {
  ConnectionDialog dialog(parent);
  dialog.setSettings(settings);
  if (dialog.exec() != QDialog::Accepted) return std::nullopt;
  return dialog.settings();
}

ConnectionSettings ConnectionDialog::settings() const {
  ConnectionSettings settings;
  for (int i = 0; i < endpoint_list_->count(); ++i) {
    settings.endpoints.append(endpoint_list_->item(i)->text().trimmed());
  }
  settings.tls = tls_->isChecked();
  settings.ca_file = ca_file_->text().trimmed();
  settings.cert_file = cert_file_->text().trimmed();
  settings.key_file = key_file_->text().trimmed();
  return settings;
}

void ConnectionDialog::setSettings(const ConnectionSettings& settings) {
  endpoint_list_->clear();
  for (const QString& endpoint : settings.endpoints) {
    endpoint_list_->addItem(makeEndpointItem(endpoint));
  }
  if (endpoint_list_->count() > 0) endpoint_list_->setCurrentRow(0);
  endpoint_input_->clear();
  tls_->setChecked(settings.tls);
  ca_file_->setText(settings.ca_file);
  cert_file_->setText(settings.cert_file);
  key_file_->setText(settings.key_file);
  clearErrors();
  updateEnabled();
}

QString ConnectionDialog::errorText(ConnectionField field) const {
  QLabel* label = errorLabel(field);
  return label == nullptr ? QString() : label->text();
}

void ConnectionDialog::accept() {
  clearErrors();
  // An endpoint typed but not added yet is what the user meant: add it first.
  if (!endpoint_input_->text().trimmed().isEmpty()) {
    addEndpointFromInput();
    if (!endpoint_input_->text().trimmed().isEmpty()) return;  // it was invalid
  }
  const ConnectionSettingsCheck check = checkConnectionSettings(settings());
  if (!check.status.ok()) {
    showError(check.field, statusMessage(check.status));
    if (check.field == ConnectionField::kEndpoints && check.endpoint_index >= 0) {
      endpoint_list_->setCurrentRow(check.endpoint_index);
    }
    return;
  }
  QDialog::accept();
}

void ConnectionDialog::addEndpointFromInput() {
  const QString endpoint = endpoint_input_->text().trimmed();
  if (endpoint.isEmpty()) return;
  if (absl::Status status = validateEndpoint(endpoint); !status.ok()) {
    showError(ConnectionField::kEndpoints, statusMessage(status));
    endpoint_input_->setFocus();
    return;
  }
  endpoints_error_->clear();
  endpoints_error_->hide();
  for (int i = 0; i < endpoint_list_->count(); ++i) {
    if (endpoint_list_->item(i)->text().trimmed() == endpoint) {  // already there
      endpoint_list_->setCurrentRow(i);
      endpoint_input_->clear();
      return;
    }
  }
  endpoint_list_->addItem(makeEndpointItem(endpoint));
  endpoint_list_->setCurrentRow(endpoint_list_->count() - 1);
  endpoint_input_->clear();
  updateEnabled();
}

void ConnectionDialog::removeSelectedEndpoint() {
  const int row = endpoint_list_->currentRow();
  if (row < 0) return;
  delete endpoint_list_->takeItem(row);
  updateEnabled();
}

void ConnectionDialog::moveSelectedEndpoint(int delta) {
  const int row = endpoint_list_->currentRow();
  const int target = row + delta;
  if (row < 0 || target < 0 || target >= endpoint_list_->count()) return;
  QListWidgetItem* item = endpoint_list_->takeItem(row);
  endpoint_list_->insertItem(target, item);
  endpoint_list_->setCurrentRow(target);
  updateEnabled();
}

void ConnectionDialog::browse(QLineEdit* field, const QString& title) {
  const QString start = field->text().isEmpty() ? QString() : QFileInfo(field->text()).path();
  const QString file = QFileDialog::getOpenFileName(
      this, title, start, tr("PEM files (*.pem *.crt *.key);;All files (*)"));
  if (!file.isEmpty()) field->setText(file);
}

void ConnectionDialog::updateEnabled() {
  const int row = endpoint_list_->currentRow();
  remove_endpoint_->setEnabled(row >= 0);
  move_up_->setEnabled(row > 0);
  move_down_->setEnabled(row >= 0 && row + 1 < endpoint_list_->count());
  const bool tls = tls_->isChecked();
  for (QWidget* widget :
       {static_cast<QWidget*>(ca_file_), static_cast<QWidget*>(cert_file_),
        static_cast<QWidget*>(key_file_), static_cast<QWidget*>(ca_browse_),
        static_cast<QWidget*>(cert_browse_), static_cast<QWidget*>(key_browse_)}) {
    widget->setEnabled(tls);
  }
}

void ConnectionDialog::clearErrors() {
  for (QLabel* label : {endpoints_error_, ca_error_, cert_error_, key_error_}) {
    label->clear();
    label->hide();
  }
}

void ConnectionDialog::showError(ConnectionField field, const QString& message) {
  QLabel* label = errorLabel(field);
  if (label == nullptr) label = endpoints_error_;  // kNone: cannot happen for an error
  label->setText(message);
  label->show();
  switch (field) {
    case ConnectionField::kCaFile:
      ca_file_->setFocus();
      break;
    case ConnectionField::kCertFile:
      cert_file_->setFocus();
      break;
    case ConnectionField::kKeyFile:
      key_file_->setFocus();
      break;
    default:
      endpoint_list_->setFocus();
      break;
  }
}

QLabel* ConnectionDialog::errorLabel(ConnectionField field) const {
  switch (field) {
    case ConnectionField::kEndpoints:
      return endpoints_error_;
    case ConnectionField::kCaFile:
      return ca_error_;
    case ConnectionField::kCertFile:
      return cert_error_;
    case ConnectionField::kKeyFile:
      return key_error_;
    default:
      return nullptr;
  }
}

}  // namespace flotilla::console
