// The "Create VM" dialog (see create_vm_dialog.h).
#include "gui/create_vm_dialog.h"

#include <QCheckBox>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QSpinBox>
#include <QVBoxLayout>

#include "cli/vm_request.h"

namespace flotilla::console {

CreateVmDialog::CreateVmDialog(QWidget* parent) : QDialog(parent) {
  setWindowTitle(tr("Create VM"));
  auto* form = new QFormLayout;
  name_ = new QLineEdit(this);
  name_->setObjectName(QStringLiteral("vmName"));
  name_->setPlaceholderText(tr("web1 (a DNS label)"));
  vcpus_ = new QSpinBox(this);
  vcpus_->setObjectName(QStringLiteral("vmVcpus"));
  vcpus_->setRange(1, 256);
  vcpus_->setValue(static_cast<int>(cli::kDefaultVcpus));
  memory_ = new QLineEdit(QStringLiteral("256M"), this);
  memory_->setObjectName(QStringLiteral("vmMemory"));
  memory_->setToolTip(tr("bytes with a unit: 512M, 2G"));
  kernel_ = new QLineEdit(this);
  kernel_->setObjectName(QStringLiteral("vmKernel"));
  kernel_->setPlaceholderText(tr("a path on the hosts, e.g. /var/lib/flotilla/kernels/vmlinux"));
  networks_ = new QLineEdit(this);
  networks_->setObjectName(QStringLiteral("vmNetworks"));
  networks_->setPlaceholderText(tr("NETWORK[,mac=MAC] separated by spaces"));
  disk_ = new QLineEdit(this);
  disk_->setObjectName(QStringLiteral("vmDisk"));
  disk_->setPlaceholderText(tr("POOL/VOLUME (optional)"));
  ha_ = new QCheckBox(tr("Restart elsewhere when its host is lost (HA)"), this);
  ha_->setObjectName(QStringLiteral("vmHa"));
  start_ = new QCheckBox(tr("Start once placed"), this);
  start_->setObjectName(QStringLiteral("vmStart"));
  start_->setChecked(true);
  form->addRow(tr("&Name:"), name_);
  form->addRow(tr("&vCPUs:"), vcpus_);
  form->addRow(tr("&Memory:"), memory_);
  form->addRow(tr("&Kernel:"), kernel_);
  form->addRow(tr("N&etworks:"), networks_);
  form->addRow(tr("&Disk volume:"), disk_);
  form->addRow(QString(), ha_);
  form->addRow(QString(), start_);
  error_ = new QLabel(this);
  error_->setObjectName(QStringLiteral("vmError"));
  error_->setStyleSheet(QStringLiteral("color: #b00020"));
  error_->setWordWrap(true);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
  connect(buttons, &QDialogButtonBox::accepted, this, &CreateVmDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &CreateVmDialog::reject);
  auto* layout = new QVBoxLayout(this);
  layout->addLayout(form);
  layout->addWidget(error_);
  layout->addWidget(buttons);
}

absl::StatusOr<v1::CreateVmClusterRequest> CreateVmDialog::request() const {
  cli::VmFlags flags;
  flags.name = name_->text().trimmed().toStdString();
  flags.vcpus = static_cast<uint32_t>(vcpus_->value());
  flags.memory = memory_->text().trimmed().toStdString();
  if (!kernel_->text().trimmed().isEmpty()) flags.kernel = kernel_->text().trimmed().toStdString();
  for (const QString& nic : networks_->text().split(QLatin1Char(' '), Qt::SkipEmptyParts)) {
    flags.nics.push_back(nic.toStdString());
  }
  if (!disk_->text().trimmed().isEmpty())
    flags.disks.push_back(disk_->text().trimmed().toStdString());
  flags.ha = ha_->isChecked();
  flags.no_start = !start_->isChecked();
  return cli::buildCreateVmRequest(flags);
}

void CreateVmDialog::accept() {
  auto built = request();
  if (!built.ok()) {
    // clusterctl's messages name its flags (--memory): the fields carry the same names.
    error_->setText(QString::fromStdString(std::string(built.status().message())));
    return;
  }
  error_->clear();
  QDialog::accept();
}

}  // namespace flotilla::console
