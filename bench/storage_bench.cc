// storage_bench: the block backends measured in-process: 4 KiB random reads at queue depth 1
// and 32, and sequential 1 MiB writes and reads at depth 8, on a raw image file (io_uring) and
// on an iSCSI LUN of a tgtd on loopback backed by the same kind of file. The peer, in the same
// run on the same image or URL, is QEMU's block layer through `qemu-img bench` (which has no
// random mode: its "random" column uses a large stride instead). Prints a table; exits 0 when
// every measurement worked, 1 when one failed, 2 on bad usage. See docs/storage.md.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/command.h"
#include "common/status.h"
#include "common/unique_fd.h"
#include "fmt/format.h"
#include "storage/block_backend.h"
#include "tests/support/test_env.h"
#include "tests/support/tgt_target.h"

namespace flotilla::bench {
namespace {

using storage::BlockBackend;
using storage::BlockCompletion;
using storage::BlockOp;
using storage::BlockRequest;
using storage::BlockResult;

struct Load {
  std::string name;
  BlockOp op = BlockOp::kRead;
  uint32_t size = 4096;
  uint32_t depth = 1;
  bool random = false;
};

struct Measurement {
  uint64_t ops = 0;
  uint64_t errors = 0;
  double seconds = 0;
  double iops() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
};

// Keeps `depth` requests in flight: each completion submits the next request from the
// backend's own thread (which the interface allows) until the time is up.
class ClosedLoop final : public storage::BlockCompletionSink {
 public:
  // Runs for `duration`, or until `max_ops` requests were sent.
  ClosedLoop(BlockBackend& backend, Load load, uint64_t span, absl::Duration duration,
             uint64_t max_ops = UINT64_MAX)
      : backend_(backend),
        load_(std::move(load)),
        span_blocks_(span / load_.size),
        duration_(duration),
        max_ops_(max_ops),
        buffers_(load_.depth, std::vector<char>(load_.size, 'x')) {}

  Measurement run() {
    Clock& clock = systemClock();
    start_ = clock.monotonicNow();
    std::vector<BlockRequest> first;
    for (uint32_t slot = 0; slot < load_.depth; ++slot) first.push_back(next(slot));
    {
      absl::MutexLock lock(&mu_);
      in_flight_ = load_.depth;
    }
    backend_.submit(std::span<BlockRequest>(first));
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](uint32_t* n) { return *n == 0; }, &in_flight_));
    Measurement m;
    m.ops = ops_;
    m.errors = errors_;
    m.seconds = absl::ToDoubleSeconds(end_ - start_);
    return m;
  }

  void completed(std::span<const BlockCompletion> completions) override {
    const absl::Duration now = systemClock().monotonicNow();
    std::vector<BlockRequest> again;
    {
      absl::MutexLock lock(&mu_);
      for (const BlockCompletion& c : completions) {
        ++ops_;
        if (c.result != BlockResult::kOk) ++errors_;
        if (now - start_ < duration_ && sent_ < max_ops_) {
          again.push_back(next(static_cast<uint32_t>(c.tag)));
        } else {
          --in_flight_;
          end_ = now;
        }
      }
    }
    if (!again.empty()) backend_.submit(std::span<BlockRequest>(again));
  }

 private:
  BlockRequest next(uint32_t slot) {
    ++sent_;
    const uint64_t block = load_.random ? random_() % span_blocks_ : sequence_++ % span_blocks_;
    BlockRequest r;
    r.tag = slot;
    r.op = load_.op;
    r.offset = block * load_.size;
    r.iov = {{buffers_[slot].data(), load_.size}};
    return r;
  }

  BlockBackend& backend_;
  const Load load_;
  const uint64_t span_blocks_;
  const absl::Duration duration_;
  const uint64_t max_ops_;
  uint64_t sent_ = 0;
  std::vector<std::vector<char>> buffers_;
  std::mt19937_64 random_{42};
  uint64_t sequence_ = 0;
  absl::Duration start_;
  absl::Mutex mu_;
  uint32_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t ops_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration end_ ABSL_GUARDED_BY(mu_);
};

// The backend's one completion sink (set once), handing completions to the loop that runs.
class Dispatcher final : public storage::BlockCompletionSink {
 public:
  void use(ClosedLoop* loop) { loop_.store(loop); }
  void completed(std::span<const BlockCompletion> completions) override {
    loop_.load()->completed(completions);
  }

 private:
  std::atomic<ClosedLoop*> loop_{nullptr};
};

// `qemu-img bench` with the same request size, depth and count; nullopt-like error when QEMU
// cannot open the target (no qemu-block-extra for iscsi://).
absl::StatusOr<Measurement> qemuImgBench(const std::string& target, const Load& load, uint64_t span,
                                         uint64_t count) {
  // A stride of 1021 blocks (a prime) visits the whole image in a scattered order.
  const uint64_t step = load.random ? uint64_t{load.size} * 1021 : load.size;
  std::vector<std::string> argv = {"qemu-img", "bench",
                                   "-f",       "raw",
                                   "-t",       "writeback",
                                   "-c",       std::to_string(count),
                                   "-d",       std::to_string(load.depth),
                                   "-s",       std::to_string(load.size),
                                   "-S",       std::to_string(step)};
  if (load.op == BlockOp::kWrite) argv.push_back("-w");
  argv.push_back(target);
  (void)span;
  SystemCommandRunner runner;
  CommandOptions options;
  options.timeout = absl::Minutes(2);
  ASSIGN_OR_RETURN(std::string out, runChecked(runner, argv, options));
  const size_t at = out.find("Run completed in ");
  if (at == std::string::npos) {
    return absl::InternalError(fmt::format("unexpected qemu-img bench output: {}", out));
  }
  Measurement m;
  m.ops = count;
  m.seconds = std::stod(out.substr(at + 17));
  return m;
}

std::string cell(const Load& load, const Measurement& m) {
  if (load.size >= (1 << 20)) {
    return fmt::format("{:.0f} MiB/s", m.iops() * load.size / (1 << 20));
  }
  return fmt::format("{:.0f} IOPS", m.iops());
}

struct Options {
  double seconds = 3;
  bool quick = false;
  std::string only;
  uint64_t size_mib = 256;
};

absl::Status benchBackend(const std::string& title, BlockBackend& backend,
                          const std::string& peer_target, const Options& options) {
  const absl::Duration duration = absl::Seconds(options.quick ? 0.3 : options.seconds);
  const uint64_t span = backend.sizeBytes();
  const std::vector<Load> loads = {
      {"sequential write, 1 MiB, depth 8", BlockOp::kWrite, 1 << 20, 8, false},
      {"sequential read, 1 MiB, depth 8", BlockOp::kRead, 1 << 20, 8, false},
      {"random read, 4 KiB, depth 1", BlockOp::kRead, 4096, 1, true},
      {"random read, 4 KiB, depth 32", BlockOp::kRead, 4096, 32, true},
  };
  Dispatcher dispatcher;
  backend.setCompletionSink(&dispatcher);
  // Warm-up, not reported: one sequential pass writes the whole image, so that every load
  // (ours and the peer's) finds its blocks allocated and in the page cache.
  {
    Load fill{"fill", BlockOp::kWrite, 1 << 20, 8, false};
    ClosedLoop loop(backend, fill, span, absl::Minutes(10), span / fill.size);
    dispatcher.use(&loop);
    Measurement m = loop.run();
    if (m.errors > 0) return absl::InternalError("filling the image failed");
    RETURN_IF_ERROR(backend.drain());
  }
  std::printf("\n%s\n", title.c_str());
  std::printf("  %-36s %14s %16s %8s\n", "load", "Flotilla", "qemu-img bench", "ratio");
  for (const Load& load : loads) {
    ClosedLoop loop(backend, load, span, duration);
    dispatcher.use(&loop);
    Measurement ours = loop.run();
    if (ours.errors > 0) {
      return absl::InternalError(
          fmt::format("{}: {} of {} requests failed", load.name, ours.errors, ours.ops));
    }
    RETURN_IF_ERROR(backend.drain());
    std::string peer = "n/a";
    std::string ratio = "";
    absl::StatusOr<Measurement> theirs =
        qemuImgBench(peer_target, load, span, std::max<uint64_t>(ours.ops, 16));
    if (theirs.ok()) {
      peer = cell(load, *theirs);
      ratio = fmt::format("{:.2f}", ours.iops() / theirs->iops());
    } else {
      std::fprintf(stderr, "  (qemu-img bench: %s)\n",
                   std::string(theirs.status().message()).c_str());
    }
    std::printf("  %-36s %14s %16s %8s\n", load.name.c_str(), cell(load, ours).c_str(),
                peer.c_str(), ratio.c_str());
  }
  return absl::OkStatus();
}

absl::Status makeImage(const std::string& path, uint64_t bytes) {
  UniqueFd fd(::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
  if (!fd.valid()) return errnoStatus(errno, fmt::format("creating {}", path));
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
    return errnoStatus(errno, fmt::format("sizing {}", path));
  }
  return absl::OkStatus();
}

absl::Status runAll(const Options& options) {
  testing::TempDir dir;
  const uint64_t bytes = options.size_mib << 20;
  std::printf("storage_bench: %s per load, %llu MiB images in %s (page cache on: buffered I/O)\n",
              options.quick ? "0.3 s" : fmt::format("{} s", options.seconds).c_str(),
              static_cast<unsigned long long>(options.size_mib), dir.path().c_str());
  if (options.only.empty() || options.only == "raw") {
    const std::string image = dir.file("raw.img");
    RETURN_IF_ERROR(makeImage(image, bytes));
    ASSIGN_OR_RETURN(std::unique_ptr<BlockBackend> raw, storage::openRawFile(image, {}));
    RETURN_IF_ERROR(benchBackend("raw file (io_uring) vs qemu-img bench on the same file", *raw,
                                 image, options));
  }
  if (options.only.empty() || options.only == "iscsi") {
    const std::string image = dir.file("lun.img");
    RETURN_IF_ERROR(makeImage(image, bytes));
    ASSIGN_OR_RETURN(std::unique_ptr<testing::TgtTarget> tgt, testing::TgtTarget::start(image));
    ASSIGN_OR_RETURN(std::unique_ptr<BlockBackend> lun, storage::openIscsi(tgt->url(), {}));
    RETURN_IF_ERROR(benchBackend(
        fmt::format("iSCSI LUN on tgtd over loopback (libiscsi) vs qemu-img bench on {}",
                    tgt->url()),
        *lun, tgt->url(), options));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace flotilla::bench

int main(int argc, char** argv) {
  flotilla::bench::Options options;
  CLI::App app("Flotilla's block backends against qemu-img bench (docs/storage.md)");
  app.add_option("--seconds", options.seconds, "seconds per load")->check(CLI::PositiveNumber);
  app.add_flag("--quick", options.quick, "0.3 s per load: a smoke run");
  app.add_option("--only", options.only, "raw or iscsi")->check(CLI::IsMember({"raw", "iscsi"}));
  app.add_option("--size-mib", options.size_mib, "image size in MiB")->check(CLI::Range(16, 65536));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  absl::Status status = flotilla::bench::runAll(options);
  if (!status.ok()) {
    std::fprintf(stderr, "storage_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
