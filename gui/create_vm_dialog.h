// The "Create VM" dialog: name, vCPUs, memory, kernel, networks, a disk volume, HA, start.
// OK builds the CreateVm request with clusterctl's rules (cli/vm_request.h) and shows the
// error in the dialog instead of closing when a field is wrong.
#pragma once

#include <QDialog>
#include <optional>

#include "absl/status/statusor.h"
#include "flotilla/v1/cluster.pb.h"

class QCheckBox;
class QLabel;
class QLineEdit;
class QSpinBox;

namespace flotilla::console {

// Child object names: "vmName", "vmMemory", "vmKernel", "vmNetworks", "vmDisk" (QLineEdit),
// "vmVcpus" (QSpinBox), "vmHa", "vmStart" (QCheckBox), "vmError" (QLabel).
class CreateVmDialog : public QDialog {
  Q_OBJECT

 public:
  explicit CreateVmDialog(QWidget* parent = nullptr);

  // The request the fields describe, or the error naming the field.
  absl::StatusOr<v1::CreateVmClusterRequest> request() const;

 public Q_SLOTS:
  void accept() override;

 private:
  QLineEdit* name_;
  QSpinBox* vcpus_;
  QLineEdit* memory_;
  QLineEdit* kernel_;
  QLineEdit* networks_;
  QLineEdit* disk_;
  QCheckBox* ha_;
  QCheckBox* start_;
  QLabel* error_;
};

}  // namespace flotilla::console
