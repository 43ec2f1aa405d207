// Shared pieces of flotilla-console's tests (see console_fixture.h).
#include "tests/unit/gui/console_fixture.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace flotilla::console::testing {

v1::Host makeHost(const std::string& name, double cpu_busy, double memory_used,
                  int64_t updated_unix_ms) {
  v1::Host host;
  host.set_name(name);
  host.set_reporting(true);
  host.mutable_record()->mutable_meta()->set_name(name);
  (*host.mutable_record()->mutable_meta()->mutable_labels())["rack"] = "r1";
  host.mutable_record()->set_state(v1::HOST_STATE_READY);
  v1::HostStatus* status = host.mutable_status();
  status->set_name(name);
  status->set_agent_address(name + ":7100");
  status->set_agent_version("0.1.0");
  status->mutable_inventory()->set_cpus(16);
  status->mutable_inventory()->set_cpu_model_name("AMD EPYC 7402P");
  status->mutable_inventory()->set_memory_bytes(uint64_t{64} << 30);
  status->mutable_inventory()->add_pools("shared");
  status->mutable_inventory()->add_networks("prod");
  status->mutable_load()->set_cpu_busy(cpu_busy);
  status->mutable_load()->set_memory_available_bytes(
      static_cast<uint64_t>((1.0 - memory_used) * static_cast<double>(uint64_t{64} << 30)));
  status->mutable_load()->set_load_average_1m(cpu_busy * 16);
  status->set_updated_unix_ms(updated_unix_ms);
  return host;
}

v1::Vm makeVm(const std::string& name, const std::string& host, v1::VmState state, uint32_t vcpus,
              uint64_t memory_mib) {
  v1::Vm vm;
  vm.set_name(name);
  vm.mutable_record()->mutable_meta()->set_name(name);
  v1::VmSpec* spec = vm.mutable_record()->mutable_spec();
  spec->set_vcpus(vcpus);
  spec->set_memory_bytes(memory_mib << 20);
  spec->mutable_boot()->set_kernel("/var/lib/flotilla/kernels/vmlinux");
  spec->set_ha(true);
  v1::DiskSpec* disk = spec->add_disks();
  disk->set_pool("shared");
  disk->set_volume(name + "-root");
  spec->add_nics()->set_network("prod");
  vm.mutable_record()->set_want_running(state != v1::VM_STATE_STOPPED);
  vm.mutable_status()->set_state(state);
  vm.mutable_status()->set_host(host);
  vm.mutable_status()->set_generation(1763800000);
  return vm;
}

v1::MigrationRecord makeMigration(const std::string& name, const std::string& vm,
                                  const std::string& source, const std::string& target,
                                  v1::MigrationPhase phase, uint64_t sent_mib,
                                  uint64_t remaining_mib) {
  v1::MigrationRecord migration;
  migration.mutable_meta()->set_name(name);
  migration.set_vm(vm);
  migration.set_source(source);
  migration.set_target(target);
  migration.set_mode(v1::MIGRATION_MODE_LIVE);
  migration.set_phase(phase);
  migration.set_bytes_sent(sent_mib << 20);
  migration.set_remaining_bytes(remaining_mib << 20);
  migration.set_dirty_rate_bytes(40e6);
  migration.set_bandwidth_bytes(900e6);
  migration.set_rounds(3);
  return migration;
}

void populateSmallCluster(FakeClusterService& service) {
  service.addHost(makeHost("h1", 0.42, 0.55));
  service.addHost(makeHost("h2", 0.18, 0.30));
  service.addHost(makeHost("h3", 0.71, 0.62));
  service.addVm(makeVm("web1", "h1"));
  service.addVm(makeVm("web2", "h1"));
  service.addVm(makeVm("db1", "h2", v1::VM_STATE_RUNNING, 4, 4096));
  service.addVm(makeVm("cache1", "h3"));
  service.addVm(makeVm("idle1", "", v1::VM_STATE_STOPPED));
}

std::string deadEndpoint() {
  // Bind port 0 for a free port, then close it: connections to it are refused.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return "127.0.0.1:" + std::to_string(ntohs(address.sin_port));
}

bool ScriptedPrompts::confirm(QWidget*, const QString&, const QString& question) {
  questions << question;
  return confirm_answer;
}

std::optional<QString> ScriptedPrompts::migrationTarget(QWidget*, const QString&, const QString&,
                                                        const QStringList& hosts) {
  target_choices = hosts;
  return target;
}

std::optional<v1::CreateVmClusterRequest> ScriptedPrompts::newVm(QWidget*) {
  return vm;
}

void ScriptedPrompts::rebalancePlan(QWidget*, const v1::RebalancePlan& plan,
                                    const std::function<void()>& apply) {
  plans.push_back(plan);
  if (apply_plan) apply();
}

std::optional<ConnectionSettings> ScriptedPrompts::connection(QWidget*, const ConnectionSettings&) {
  return settings;
}

void ScriptedPrompts::error(QWidget*, const QString& title, const QString& message) {
  errors << title + QStringLiteral(": ") + message;
}

}  // namespace flotilla::console::testing
