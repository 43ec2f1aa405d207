// ProbeClient and BackgroundProber (see drain_probe.h).
#include "bench/cluster/drain_probe.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

#include "common/clock.h"
#include "common/status.h"
#include "common/thread.h"
#include "fmt/format.h"

namespace flotilla::bench {

constexpr char kClientPort[] = "client0";  // the veth's end in the host's namespace
constexpr uint16_t kBlueVlan = 100;

absl::StatusOr<std::unique_ptr<ProbeClient>> ProbeClient::attach(agent::testing::AgentHost& host) {
  std::unique_ptr<ProbeClient> client(new ProbeClient());
  ASSIGN_OR_RETURN(client->ns_, testing::NetNamespace::create("drainc"));
  ASSIGN_OR_RETURN(
      client->veth_,
      testing::VethPair::create({.ns = client->ns_.get(), .name = "eth0", .cidr = "10.78.0.1/24"},
                                {.ns = &host.ns(), .name = kClientPort, .cidr = ""}));
  // The userspace datapath drops frames that still carry offload flags (ENVIRONMENT.md).
  RETURN_IF_ERROR(testing::disableInterfaceOffloads(client->ns_.get(), "eth0"));
  RETURN_IF_ERROR(testing::disableInterfaceOffloads(&host.ns(), kClientPort));
  RETURN_IF_ERROR(host.ovs().addPort("br-int", kClientPort, kBlueVlan));
  client->host_ = &host;
  ASSIGN_OR_RETURN(client->socket_, client->ns_->udpSocket());
  return client;
}

ProbeClient::~ProbeClient() {
  if (host_ != nullptr) (void)host_->ovs().deletePort("br-int", kClientPort);
  veth_.reset();
  ns_.reset();
}

bool ProbeClient::answers(const std::string& ip, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (testing::udpEchoed(socket_.get(), ip, ++sequence_, absl::Milliseconds(200))) return true;
  }
  return false;
}

absl::Status ProbeClient::allAnswer(const std::vector<probe::ProbeTarget>& targets,
                                    absl::Duration timeout) {
  std::vector<std::string> silent;
  for (const probe::ProbeTarget& target : targets) {
    if (!answers(target.address, timeout)) {
      silent.push_back(fmt::format("{} ({})", target.name, target.address));
    }
  }
  if (silent.empty()) return absl::OkStatus();
  return absl::UnavailableError(fmt::format(
      "no UDP echo within {} from {}", absl::FormatDuration(timeout), fmt::join(silent, ", ")));
}

absl::StatusOr<probe::ProbeReport> probeInside(const testing::NetNamespace& ns,
                                               std::vector<probe::ProbeTarget> targets,
                                               const probe::ProbeOptions& options) {
  if (options.duration == absl::ZeroDuration() && options.count == 0) {
    return absl::InvalidArgumentError("probeInside needs a duration or a count");
  }
  probe::UdpProber udp(std::move(targets), options);
  return ns.runInside([&] { return udp.run(); });
}

absl::StatusOr<std::unique_ptr<BackgroundProber>> BackgroundProber::start(
    const testing::NetNamespace& ns, std::vector<probe::ProbeTarget> targets,
    const probe::ProbeOptions& options) {
  std::unique_ptr<BackgroundProber> prober(new BackgroundProber());
  prober->stop_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!prober->stop_fd_.valid()) return errnoStatus(errno, "creating the prober's stop eventfd");
  BackgroundProber* self = prober.get();
  self->thread_ = namedThread("drain-prober", [self, &ns, targets = std::move(targets), options] {
    probe::UdpProber udp(targets, options);
    absl::StatusOr<probe::ProbeReport> report = ns.runInside([&] {
      return udp.run(self->stop_fd_.get(), [self] {
        self->started_at_ = systemClock().monotonicNow();
        self->started_wall_ = absl::Now();
        self->started_ = true;
        self->running_.Notify();
      });
    });
    self->result_.emplace(std::move(report));
    if (!self->running_.HasBeenNotified()) self->running_.Notify();
  });
  prober->running_.WaitForNotification();
  // Not started: run() ended first, and wrote its result before the notification. (Once
  // started, result_ belongs to the thread until stop() joined it.)
  if (!prober->started_) {
    prober->thread_.join();
    if (prober->result_->ok()) {
      return absl::InternalError("the UDP prober ended before it sent its first probe");
    }
    return annotate(prober->result_->status(), "starting the UDP prober");
  }
  return prober;
}

BackgroundProber::~BackgroundProber() {
  if (thread_.joinable()) (void)stop();
}

absl::StatusOr<probe::ProbeReport> BackgroundProber::stop() {
  if (!thread_.joinable()) return absl::FailedPreconditionError("the prober was stopped already");
  const uint64_t one = 1;
  if (::write(stop_fd_.get(), &one, sizeof(one)) != sizeof(one)) {
    // The thread cannot be told to stop: it would run forever and the join below never end.
    return errnoStatus(errno, "signalling the prober to stop");
  }
  thread_.join();
  return std::move(*result_);
}

}  // namespace flotilla::bench
