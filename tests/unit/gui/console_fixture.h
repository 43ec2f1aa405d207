// Shared pieces of flotilla-console's tests: a populated fake cluster (the in-memory
// ClusterService of tests/unit/cli, served over gRPC on 127.0.0.1), builders for its objects,
// and ConsolePrompts answered by a script that records what the console showed.
#pragma once

#include <QString>
#include <QStringList>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "gui/prompts.h"
#include "tests/unit/cli/fake_cluster_service.h"

namespace flotilla::console::testing {

using cli::testing::FakeClusterServer;
using cli::testing::FakeClusterService;

v1::Host makeHost(const std::string& name, double cpu_busy, double memory_used,
                  int64_t updated_unix_ms = 0);
v1::Vm makeVm(const std::string& name, const std::string& host,
              v1::VmState state = v1::VM_STATE_RUNNING, uint32_t vcpus = 2,
              uint64_t memory_mib = 1024);
v1::MigrationRecord makeMigration(const std::string& name, const std::string& vm,
                                  const std::string& source, const std::string& target,
                                  v1::MigrationPhase phase, uint64_t sent_mib,
                                  uint64_t remaining_mib);

// Hosts h1..h3 and VMs: web1, web2 on h1; db1 on h2; cache1 on h3; idle1 on no host.
void populateSmallCluster(FakeClusterService& service);

// An endpoint nothing listens on (a port that was free a moment ago).
std::string deadEndpoint();

// Answers the console's questions from fields the test sets; records what it was shown.
class ScriptedPrompts : public ConsolePrompts {
 public:
  bool confirm(QWidget*, const QString& title, const QString& question) override;
  std::optional<QString> migrationTarget(QWidget*, const QString& vm, const QString& source,
                                         const QStringList& hosts) override;
  std::optional<v1::CreateVmClusterRequest> newVm(QWidget*) override;
  void rebalancePlan(QWidget*, const v1::RebalancePlan& plan,
                     const std::function<void()>& apply) override;
  std::optional<ConnectionSettings> connection(QWidget*, const ConnectionSettings&) override;
  void error(QWidget*, const QString& title, const QString& message) override;

  // The script.
  bool confirm_answer = true;
  std::optional<QString> target;  // nullopt: cancel
  std::optional<v1::CreateVmClusterRequest> vm;
  bool apply_plan = true;
  std::optional<ConnectionSettings> settings;

  // What was shown.
  QStringList questions;
  QStringList target_choices;  // the hosts offered by the last migrationTarget
  std::vector<v1::RebalancePlan> plans;
  QStringList errors;  // "title: message"
};

}  // namespace flotilla::console::testing
