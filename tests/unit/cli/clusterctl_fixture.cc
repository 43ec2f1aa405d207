// The fixture of clusterctl's unit tests (see clusterctl_fixture.h).
#include "tests/unit/cli/clusterctl_fixture.h"

namespace flotilla::cli::testing {
namespace {

v1::Host makeHost(const std::string& name, uint32_t cpus, uint64_t memory) {
  v1::Host host;
  host.set_name(name);
  host.set_reporting(true);
  v1::HostRecord& record = *host.mutable_record();
  record.mutable_meta()->set_name(name);
  record.mutable_meta()->mutable_created_at()->set_seconds(
      absl::ToUnixSeconds(fixedNow() - absl::Hours(3)));
  (*record.mutable_meta()->mutable_labels())["zone"] = "a";
  record.set_state(v1::HOST_STATE_READY);
  v1::HostStatus& status = *host.mutable_status();
  status.set_name(name);
  status.set_agent_address(name + ":7100");
  status.mutable_inventory()->set_cpus(cpus);
  status.mutable_inventory()->set_memory_bytes(memory);
  status.mutable_inventory()->set_cpu_model_name("Test CPU");
  status.mutable_load()->set_cpu_busy(0.25);
  return host;
}

v1::Vm makeVm(const std::string& name, const std::string& host, v1::VmState state) {
  v1::Vm vm;
  vm.set_name(name);
  v1::VmRecord& record = *vm.mutable_record();
  record.mutable_meta()->set_name(name);
  record.mutable_meta()->set_uid("uid-" + name);
  record.mutable_meta()->mutable_created_at()->set_seconds(
      absl::ToUnixSeconds(fixedNow() - absl::Minutes(5)));
  record.set_want_running(true);
  v1::VmSpec& spec = *record.mutable_spec();
  spec.set_vcpus(2);
  spec.set_memory_bytes(uint64_t{256} << 20);
  spec.mutable_boot()->set_kernel("/var/lib/flotilla/guest.elf");
  spec.mutable_boot()->set_cmdline("console=ttyS0");
  spec.set_ha(true);
  spec.set_migration_policy(v1::MIGRATION_POLICY_LIVE_OR_COLD);
  v1::NicSpec* nic = spec.add_nics();
  nic->set_network("net1");
  v1::DiskSpec* disk = spec.add_disks();
  disk->set_pool("shared");
  disk->set_volume(name);
  vm.mutable_status()->set_state(state);
  vm.mutable_status()->set_host(host);
  vm.mutable_status()->set_generation(1);
  return vm;
}

}  // namespace

void populateCluster(FakeClusterService& service) {
  v1::Host host_a = makeHost("host-a", 8, uint64_t{16} << 30);
  for (const char* name : {"web1", "web2"}) {
    v1::HostVm* vm = host_a.mutable_status()->add_vms();
    vm->set_name(name);
    vm->set_state(v1::VM_STATE_RUNNING);
    vm->set_memory_bytes(uint64_t{256} << 20);
    vm->set_vcpus(2);
  }
  host_a.mutable_status()->mutable_load()->set_vm_memory_bytes(uint64_t{512} << 20);
  service.addHost(host_a);
  v1::Host host_b = makeHost("host-b", 4, uint64_t{8} << 30);
  host_b.mutable_record()->set_cordoned(true);
  host_b.mutable_record()->set_cordon_reason("disk replacement");
  service.addHost(host_b);

  service.addVm(makeVm("web1", "host-a", v1::VM_STATE_RUNNING));
  service.addVm(makeVm("web2", "host-a", v1::VM_STATE_RUNNING));
  v1::Vm db1 = makeVm("db1", "", v1::VM_STATE_PENDING);
  db1.mutable_status()->set_message("no host fits");
  db1.mutable_status()->add_unschedulable_reasons("host-a: 64G memory needed, 15.5G free");
  db1.mutable_status()->add_unschedulable_reasons("host-b: cordoned");
  db1.mutable_record()->mutable_spec()->set_memory_bytes(uint64_t{64} << 30);
  service.addVm(db1);

  v1::NetworkRecord network;
  network.mutable_meta()->set_name("net1");
  network.set_vlan(100);
  network.set_description("front end");
  service.addNetwork(network);

  v1::PoolRecord pool;
  pool.mutable_meta()->set_name("shared");
  pool.set_type(v1::POOL_TYPE_ISCSI);
  pool.set_shared(true);
  pool.set_manager_host("storage");
  service.addPool(pool);

  v1::VolumeRecord volume;
  volume.mutable_meta()->set_name("web1");
  volume.set_pool("shared");
  volume.set_size_bytes(uint64_t{1} << 30);
  volume.set_attached_to("web1");
  service.addVolume(volume);

  v1::MigrationRecord migration;
  migration.mutable_meta()->set_name("web1-old");
  migration.set_vm("web1");
  migration.set_source("host-b");
  migration.set_target("host-a");
  migration.set_mode(v1::MIGRATION_MODE_LIVE);
  migration.set_phase(v1::MIGRATION_PHASE_SUCCEEDED);
  migration.set_bytes_sent(uint64_t{300} << 20);
  migration.set_rounds(3);
  migration.set_downtime_ms(2.5);
  migration.set_created_unix_ms(millisAgo(600));
  migration.set_started_unix_ms(millisAgo(600));
  migration.set_finished_unix_ms(millisAgo(590));
  service.addMigration(migration);

  v1::DrainRecord drain;
  drain.mutable_meta()->set_name("host-b");
  drain.set_phase(v1::DRAIN_PHASE_FAILED);
  drain.set_message("1 VM cannot leave");
  drain.set_created_unix_ms(millisAgo(900));
  v1::DrainVm* moved = drain.add_vms();
  moved->set_vm("web1");
  moved->set_state(v1::DrainVm::STATE_DONE);
  moved->set_target("host-a");
  moved->set_migration("web1-old");
  v1::DrainVm* stuck = drain.add_vms();
  stuck->set_vm("db2");
  stuck->set_state(v1::DrainVm::STATE_FAILED);
  stuck->set_message("policy live: no live target");
  service.addDrain(drain);

  v1::Event scheduled;
  scheduled.set_unix_ms(millisAgo(300));
  scheduled.set_kind("vm");
  scheduled.set_object("web1");
  scheduled.set_severity(v1::Event::SEVERITY_INFO);
  scheduled.set_reason("Scheduled");
  scheduled.set_message("placed on host-a");
  service.addEvent(scheduled);
  v1::Event unschedulable;
  unschedulable.set_unix_ms(millisAgo(60));
  unschedulable.set_kind("vm");
  unschedulable.set_object("db1");
  unschedulable.set_severity(v1::Event::SEVERITY_WARNING);
  unschedulable.set_reason("Unschedulable");
  unschedulable.set_message("no host has 64G free");
  service.addEvent(unschedulable);
}

ClusterctlTest::ClusterctlTest() {
  // A HOME without a clusterctl config, so that nothing of the machine's leaks in.
  env_["HOME"] = dir_.path();
  populateCluster(fake());
}

RunResult ClusterctlTest::run(const std::vector<std::string>& args) {
  std::vector<std::string> full = {"--plaintext", "--endpoint", server_.endpoint()};
  full.insert(full.end(), args.begin(), args.end());
  return runRaw(full);
}

RunResult ClusterctlTest::runRaw(const std::vector<std::string>& args) {
  std::ostringstream out, err;
  ClusterctlEnvironment environment;
  environment.getenv = [this](const std::string& name) -> std::optional<std::string> {
    auto it = env_.find(name);
    if (it == env_.end()) return std::nullopt;
    return it->second;
  };
  environment.out_is_tty = tty_;
  environment.interrupt = interrupt_;
  environment.now = [] { return fixedNow(); };
  RunResult result;
  result.code = runClusterctl(args, out, err, environment);
  result.out = out.str();
  result.err = err.str();
  return result;
}

}  // namespace flotilla::cli::testing
