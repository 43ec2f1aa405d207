// ConnectionDialog: edits flotilla-console's ConnectionSettings (the controller endpoints,
// tried in order, and the TLS files). OK validates and shows the error next to its field.
#pragma once

#include <QDialog>
#include <optional>

#include "gui/widgets/connection_settings.h"

class QCheckBox;
class QDialogButtonBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QPushButton;

namespace flotilla::console {

// Child object names: "endpointList" (QListWidget, items editable), "endpointInput"
// (QLineEdit), "addEndpoint", "removeEndpoint", "moveEndpointUp", "moveEndpointDown"
// (QPushButton), "endpointsError" (QLabel), "tls" (QCheckBox), "caFile", "certFile",
// "keyFile" (QLineEdit), "caFileBrowse", "certFileBrowse", "keyFileBrowse" (QPushButton),
// "caFileError", "certFileError", "keyFileError" (QLabel), "buttons" (QDialogButtonBox).
class ConnectionDialog : public QDialog {
  Q_OBJECT

 public:
  explicit ConnectionDialog(QWidget* parent = nullptr);

  // Runs the dialog modally: the edited settings, or nullopt when the user cancelled.
  static std::optional<ConnectionSettings> edit(QWidget* parent,
                                                const ConnectionSettings& settings);

  // What the fields hold now (an endpoint still in the input line is not included).
  ConnectionSettings settings() const;
  void setSettings(const ConnectionSettings& settings);

  // The error shown next to a field (empty: none).
  QString errorText(ConnectionField field) const;

 public Q_SLOTS:
  // Validates; on an error shows it next to its field and stays open.
  void accept() override;

 private:
  void addEndpointFromInput();
  void removeSelectedEndpoint();
  void moveSelectedEndpoint(int delta);
  void browse(QLineEdit* field, const QString& title);
  void updateEnabled();
  void clearErrors();
  void showError(ConnectionField field, const QString& message);
  QLabel* errorLabel(ConnectionField field) const;

  QListWidget* endpoint_list_;
  QLineEdit* endpoint_input_;
  QPushButton* add_endpoint_;
  QPushButton* remove_endpoint_;
  QPushButton* move_up_;
  QPushButton* move_down_;
  QLabel* endpoints_error_;
  QCheckBox* tls_;
  QLineEdit* ca_file_;
  QLineEdit* cert_file_;
  QLineEdit* key_file_;
  QPushButton* ca_browse_;
  QPushButton* cert_browse_;
  QPushButton* key_browse_;
  QLabel* ca_error_;
  QLabel* cert_error_;
  QLabel* key_error_;
  QDialogButtonBox* buttons_;
};

}  // namespace flotilla::console
