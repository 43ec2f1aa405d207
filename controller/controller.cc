// flotilla-controller: wires one replica together and serves until SIGTERM (see controller.h).
#include "controller/controller.h"

#include <signal.h>

#include <cstdio>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "common/etcd/client.h"
#include "common/files.h"
#include "common/log.h"
#include "common/rpc/channel.h"
#include "common/status.h"
#include "controller/agent_clients.h"
#include "controller/api/cluster_service.h"
#include "controller/config.h"
#include "controller/leader.h"
#include "controller/rebalance_plan.h"
#include "fmt/format.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"

namespace flotilla::controller {
namespace {

int fail(const absl::Status& status, int code) {
  std::fprintf(stderr, "flotilla-controller: %s\n", std::string(status.message()).c_str());
  return code;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> serverCredentials(
    const ControllerConfig& config) {
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

}  // namespace

int runController(int argc, char** argv) {
  CLI::App app(
      "flotilla-controller: one replica of the Flotilla cluster controller (docs/controller.md).");
  std::string config_path = "/etc/flotilla/controller.yaml";
  app.add_option("--config", config_path, "configuration file (YAML)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  auto config = loadControllerConfig(config_path);
  if (!config.ok()) return fail(config.status(), 2);
  auto level = parseLogLevel(config->log_level);
  if (!level.ok()) return fail(level.status(), 2);
  if (absl::Status logging = initLogging({.level = *level, .file = config->log_file});
      !logging.ok()) {
    return fail(logging, 2);
  }
  const Logger log = Logger("controller").with("replica", config->name);

  sigset_t termination;
  sigemptyset(&termination);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&termination, sig);
  pthread_sigmask(SIG_BLOCK, &termination, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  etcd::ClientOptions etcd_options;
  etcd_options.endpoints = config->etcd_endpoints;
  etcd_options.channel.tls = !config->etcd_tls.ca_file.empty();
  etcd_options.channel.tls_files = config->etcd_tls;
  auto etcd = etcd::EtcdClient::connect(etcd_options);
  if (!etcd.ok()) return fail(etcd.status(), 1);

  ChannelOptions agent_channel;
  agent_channel.tls = !config->agents_plaintext;
  agent_channel.tls_files = config->agents_tls;
  AgentClients agents(agent_channel, config->agent_timeout);

  const ControllerConfig& settings = *config;
  ClusterServiceImpl service(
      settings, **etcd, agents,
      [&settings](const ClusterView& view, const v1::PlanRebalanceRequest& request) {
        return planRebalanceMoves(settings, view, request);
      });
  auto credentials = serverCredentials(*config);
  if (!credentials.ok()) return fail(credentials.status(), 2);
  grpc::ServerBuilder builder;
  int port = 0;
  acceptClientKeepalives(builder);
  builder.AddListeningPort(config->listen, *credentials, &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return fail(absl::UnavailableError(fmt::format(
                    "cannot serve ClusterService on {}: is the address in use?", config->listen)),
                1);
  }
  log.info("serving ClusterService on {}{}", config->listen,
           config->plaintext ? " without TLS" : "");

  LeaderLoop leader(settings, **etcd, agents);
  std::jthread leading([&](std::stop_token stop) { leader.run(stop); });

  int sig = 0;
  sigwait(&termination, &sig);
  log.info("received signal {} ({}): stopping", sig, sigabbrev_np(sig));
  leading.request_stop();
  leading.join();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  flushLogs();
  return 0;
}

}  // namespace flotilla::controller
