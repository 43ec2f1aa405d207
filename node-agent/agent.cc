// flotilla-agent: wires the agent's parts together and serves until SIGTERM (see agent.h).
#include "node-agent/agent.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "CLI/CLI.hpp"
#include "common/etcd/client.h"
#include "common/files.h"
#include "common/log.h"
#include "common/rpc/channel.h"
#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "node-agent/agent_service.h"
#include "node-agent/config.h"
#include "node-agent/host/host_info.h"
#include "node-agent/host_plumbing.h"
#include "node-agent/host_reporter.h"
#include "node-agent/vm_manager.h"

namespace flotilla::agent {
namespace {

constexpr char kVersion[] = "0.1";

int fail(const absl::Status& status, int code) {
  std::fprintf(stderr, "flotilla-agent: %s\n", std::string(status.message()).c_str());
  return code;
}

// The VMM binary: configured, or next to this program, or found through PATH.
std::string findVmmBinary(const std::string& configured) {
  if (!configured.empty()) return configured;
  std::error_code error;
  auto self = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) {
    auto sibling = self.parent_path() / "flotilla-vmm";
    if (::access(sibling.c_str(), X_OK) == 0) return sibling.string();
  }
  return "flotilla-vmm";
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> serverCredentials(
    const AgentConfig& config) {
  if (config.plaintext) return grpc::InsecureServerCredentials();
  ASSIGN_OR_RETURN(std::string ca, readFileToString(config.tls.ca_file, 1 << 20, "TLS CA"));
  ASSIGN_OR_RETURN(std::string cert,
                   readFileToString(config.tls.cert_file, 1 << 20, "TLS certificate"));
  ASSIGN_OR_RETURN(std::string key, readFileToString(config.tls.key_file, 1 << 20, "TLS key"));
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = ca;
  options.pem_key_cert_pairs.push_back({key, cert});
  return grpc::SslServerCredentials(options);
}

// The migration address: configured, else the host part of the advertised address.
std::string migrationAddress(const AgentConfig& config) {
  if (!config.migration_address.empty() && config.migration_address != "0.0.0.0") {
    return config.migration_address;
  }
  const size_t colon = config.advertise.rfind(':');
  std::string host =
      colon == std::string::npos ? config.advertise : config.advertise.substr(0, colon);
  return host.empty() || host == "0.0.0.0" ? "127.0.0.1" : host;
}

}  // namespace

int runAgent(int argc, const char* const* argv) {
  CLI::App app("flotilla-agent: runs this host's VMs for the Flotilla cluster (docs/agent.md).");
  std::string config_path = "/etc/flotilla/agent.yaml";
  app.add_option("--config", config_path, "configuration file (YAML)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  auto config = loadAgentConfig(config_path);
  if (!config.ok()) return fail(config.status(), 2);
  auto level = parseLogLevel(config->log_level);
  if (!level.ok()) return fail(level.status(), 2);
  if (absl::Status logging = initLogging({.level = *level, .file = config->log_file});
      !logging.ok()) {
    return fail(logging, 2);
  }
  const Logger log = Logger("agent").with("host", config->host);

  // Termination signals go to one thread, never to gRPC or worker threads.
  sigset_t termination;
  sigemptyset(&termination);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&termination, sig);
  pthread_sigmask(SIG_BLOCK, &termination, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  auto plumbing = HostPlumbing::open(*config);
  if (!plumbing.ok()) return fail(plumbing.status(), 1);

  VmManagerOptions vm_options;
  vm_options.vmm_binary = findVmmBinary(config->vmm_binary);
  vm_options.run_dir = config->run_dir;
  vm_options.state_dir = config->state_dir;
  vm_options.migration_address = migrationAddress(*config);
  vm_options.migration_port_first = config->migration_port_first;
  vm_options.migration_port_last = config->migration_port_last;
  vm_options.stop_grace = config->stop_grace;
  auto vms = VmManager::create(vm_options, (*plumbing)->network(), (*plumbing)->storage(),
                               (*plumbing)->cgroups());
  if (!vms.ok()) return fail(vms.status(), 1);
  // Ports and taps of VMs this host no longer has (deleted while the agent was down, or left
  // by a crash in the middle of a create).
  if (auto stale = (*plumbing)->removeStalePorts((*vms)->listVms()); !stale.ok()) {
    log.warn("cannot remove stale VM ports: {}", stale.status().message());
  } else if (!stale->empty()) {
    log.info("removed {} stale VM port(s)", stale->size());
  }

  etcd::ClientOptions etcd_options;
  etcd_options.endpoints = config->etcd.endpoints;
  etcd_options.channel.tls = config->etcd.tls;
  etcd_options.channel.tls_files = {.ca_file = config->etcd.tls_files.ca_file,
                                    .cert_file = config->etcd.tls_files.cert_file,
                                    .key_file = config->etcd.tls_files.key_file};
  auto etcd = etcd::EtcdClient::connect(etcd_options);
  if (!etcd.ok()) return fail(etcd.status(), 1);

  HostReporterOptions report_options{.host = config->host,
                                     .renewal_file = config->state_dir + "/lease-renewal",
                                     .key_prefix = "/flotilla/v1/",
                                     .lease_ttl = config->lease_ttl,
                                     .fence_after = config->fence_after,
                                     .report_interval = config->report_interval};
  HostPlumbing& host = **plumbing;
  const std::string advertise = config->advertise;
  const std::string migration_address = vm_options.migration_address;
  const std::string tunnel_ip = config->ovs.tunnel_ip;
  HostReporter reporter(
      **etcd, **vms,
      [&host, advertise, migration_address, tunnel_ip] {
        flotilla::v1::HostStatus status = host.describe();
        status.set_agent_address(advertise);
        status.set_migration_address(migration_address);
        status.set_tunnel_ip(tunnel_ip);
        status.set_agent_version(kVersion);
        return status;
      },
      report_options);

  auto credentials = serverCredentials(*config);
  if (!credentials.ok()) return fail(credentials.status(), 2);
  AgentServiceImpl service(**vms, reporter, host, config->stop_grace, config->host);
  grpc::ServerBuilder builder;
  int tcp_port = 0;
  acceptClientKeepalives(builder);
  builder.AddListeningPort(config->listen, *credentials, &tcp_port);
  if (!config->socket.empty()) {
    std::error_code error;
    std::filesystem::create_directories(std::filesystem::path(config->socket).parent_path(), error);
    ::unlink(config->socket.c_str());
    builder.AddListeningPort("unix:" + config->socket, grpc::InsecureServerCredentials());
  }
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || tcp_port == 0) {
    return fail(absl::UnavailableError(
                    fmt::format("cannot serve AgentService on {} (and {}): is the address in use?",
                                config->listen, config->socket)),
                1);
  }
  if (!config->socket.empty()) ::chmod(config->socket.c_str(), 0600);
  reporter.start();
  host.startPeerSync(**etcd, config->report_interval);
  log.info("serving AgentService on {} (port {}){}", config->listen, tcp_port,
           config->plaintext ? " without TLS" : "");

  int sig = 0;
  sigwait(&termination, &sig);
  log.info("received signal {} ({}): stopping; the VMs keep running", sig, sigabbrev_np(sig));
  host.stopPeerSync();
  reporter.stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (!config->socket.empty()) ::unlink(config->socket.c_str());
  flushLogs();
  return 0;
}

}  // namespace flotilla::agent
