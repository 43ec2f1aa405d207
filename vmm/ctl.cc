// flotilla-vmmctl (see ctl.h).
#include "vmm/ctl.h"

#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "common/rpc/channel.h"
#include "flotilla/v1/vmm.grpc.pb.h"
#include "fmt/format.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/create_channel.h"

namespace flotilla::vmm {
namespace {

int report(const grpc::Status& status, const std::string& socket) {
  if (status.ok()) return 0;
  std::fprintf(stderr, "flotilla-vmmctl: %s\n",
               status.error_code() == grpc::StatusCode::UNAVAILABLE
                   ? fmt::format("no VMM answers on {}: {}", socket, status.error_message()).c_str()
                   : status.error_message().c_str());
  return 1;
}

}  // namespace

int runVmmctl(int argc, const char* const* argv) {
  CLI::App app{"flotilla-vmmctl: controls a running flotilla-vmm through its API socket.",
               "flotilla-vmmctl"};
  std::string socket;
  app.add_option("--api-socket", socket, "the VMM's API socket")->required();
  uint32_t timeout_ms = 0;
  std::string directory;
  app.require_subcommand(1);
  app.add_subcommand("info", "print the VM's state, configuration and counters as JSON");
  app.add_subcommand("health", "print SERVING or NOT_SERVING");
  app.add_subcommand("pause", "pause every vCPU");
  app.add_subcommand("resume", "resume a paused VM");
  CLI::App* shutdown = app.add_subcommand("shutdown", "shut the VM down; the VMM exits");
  shutdown->add_option("--timeout-ms", timeout_ms,
                       "ask the guest first (Ctrl-Alt-Del) and wait this long (default 0: stop "
                       "at once)");
  CLI::App* snapshot = app.add_subcommand("snapshot", "write a snapshot of the VM into DIR");
  snapshot->add_option("directory", directory, "snapshot directory")->required();
  flotilla::v1::MigrateSendRequest migrate;
  std::string target;
  double bandwidth_mbps = 0;
  CLI::App* migrate_send =
      app.add_subcommand("migrate-send", "live-migrate the VM to tcp:HOST:PORT (returns at once)");
  migrate_send->add_option("target", target, "tcp:HOST:PORT of a flotilla-vmm --incoming")
      ->required();
  migrate_send->add_option("--token", *migrate.mutable_token(), "the target's migration token")
      ->required();
  uint32_t downtime_ms = 0;
  uint32_t max_rounds = 0;
  bool auto_converge = false;
  bool force = false;
  bool cold = false;
  bool with_disks = false;
  uint32_t streams = 1;
  std::string compress;
  migrate_send->add_option("--downtime-ms", downtime_ms, "the longest pause allowed (default 300)")
      ->check(CLI::Range(1u, 3'600'000u));
  migrate_send->add_option("--bandwidth", bandwidth_mbps, "cap, in MB/s (default: none)")
      ->check(CLI::PositiveNumber);
  migrate_send
      ->add_option("--max-rounds", max_rounds, "pre-copy rounds before giving up (default 30)")
      ->check(CLI::Range(1u, 100'000u));
  migrate_send->add_flag("--auto-converge", auto_converge,
                         "throttle the vCPUs while the guest dirties faster than the link");
  migrate_send
      ->add_option("--streams", streams,
                   "TCP connections that carry the memory, 1 (default) to 8 (a target that "
                   "does not take several gets one)")
      ->check(CLI::Range(1u, 8u));
  migrate_send->add_option("--compress", compress, "compress page data: zstd or lz4")
      ->check(CLI::IsMember({"zstd", "lz4"}));
  migrate_send->add_flag("--cold", cold,
                         "cold migration: pause the guest, send its memory once, run it there");
  migrate_send
      ->add_flag("--with-disks", with_disks,
                 "with --cold: move the VM's raw-file disks too, into the target's --disk files "
                 "(new or empty)")
      ->needs("--cold");
  migrate_send->add_flag("--force", force, "switch over even when the pause will exceed the limit");
  app.add_subcommand("migrate-status", "print the migration's phase and figures as JSON");
  app.add_subcommand("migrate-cancel", "cancel the migration; the VM runs on here");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  auto channel = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  auto stub = flotilla::v1::VmmService::NewStub(channel);
  grpc::ClientContext context;
  // Shutdown may wait for the guest; everything else answers promptly.
  context.set_deadline(deadlineAfter(absl::Milliseconds(timeout_ms) + absl::Seconds(30)));
  const std::string command = app.get_subcommands().front()->get_name();
  if (command == "info") {
    flotilla::v1::VmmInfo info;
    grpc::Status status = stub->GetInfo(&context, {}, &info);
    if (!status.ok()) return report(status, socket);
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(info, &json, options);
    std::fputs(json.c_str(), stdout);
    return 0;
  }
  if (command == "health") {
    flotilla::v1::HealthResponse response;
    grpc::Status status = stub->Health(&context, {}, &response);
    if (!status.ok()) return report(status, socket);
    std::puts(flotilla::v1::HealthResponse::Status_Name(response.status()).c_str());
    return response.status() == flotilla::v1::HealthResponse::SERVING ? 0 : 1;
  }
  if (command == "pause") {
    flotilla::v1::PauseResponse response;
    grpc::Status status = stub->Pause(&context, {}, &response);
    if (status.ok())
      std::printf("paused in %lu us\n", static_cast<unsigned long>(response.pause_us()));
    return report(status, socket);
  }
  if (command == "resume") {
    flotilla::v1::ResumeResponse response;
    return report(stub->Resume(&context, {}, &response), socket);
  }
  if (command == "shutdown") {
    flotilla::v1::ShutdownRequest request;
    request.set_graceful_timeout_ms(timeout_ms);
    flotilla::v1::ShutdownResponse response;
    return report(stub->Shutdown(&context, request, &response), socket);
  }
  if (command == "migrate-send") {
    if (!target.starts_with("tcp:")) {
      std::fprintf(stderr, "flotilla-vmmctl: %s: expected tcp:HOST:PORT\n", target.c_str());
      return 2;
    }
    migrate.set_address(target.substr(4));
    migrate.set_downtime_limit_ms(downtime_ms);
    migrate.set_max_rounds(max_rounds);
    migrate.set_auto_converge(auto_converge);
    migrate.set_force_switchover(force);
    migrate.set_cold(cold);
    migrate.set_compression(compress);
    migrate.set_streams(streams);
    migrate.set_with_disks(with_disks);
    migrate.set_bandwidth_limit_bytes(static_cast<uint64_t>(bandwidth_mbps * 1e6));
    flotilla::v1::MigrateSendResponse response;
    return report(stub->MigrateSend(&context, migrate, &response), socket);
  }
  if (command == "migrate-status") {
    flotilla::v1::MigrationStatus status_message;
    grpc::Status status = stub->MigrateStatus(&context, {}, &status_message);
    if (!status.ok()) return report(status, socket);
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.preserve_proto_field_names = true;
    options.always_print_primitive_fields = true;
    (void)google::protobuf::util::MessageToJsonString(status_message, &json, options);
    std::fputs(json.c_str(), stdout);
    return 0;
  }
  if (command == "migrate-cancel") {
    flotilla::v1::MigrateCancelResponse response;
    grpc::Status status = stub->MigrateCancel(&context, {}, &response);
    if (status.ok()) {
      std::puts(response.cancelled() ? "cancelled"
                                     : "nothing to cancel (no migration, or past "
                                       "the point of no return)");
    }
    return report(status, socket);
  }
  flotilla::v1::SnapshotRequest request;
  request.set_directory(directory);
  flotilla::v1::SnapshotResponse response;
  grpc::Status status = stub->Snapshot(&context, request, &response);
  if (status.ok()) {
    std::printf("snapshot written to %s: %lu bytes of memory, guest paused %lu us\n",
                directory.c_str(), static_cast<unsigned long>(response.memory_bytes_written()),
                static_cast<unsigned long>(response.paused_us()));
  }
  return report(status, socket);
}

}  // namespace flotilla::vmm
