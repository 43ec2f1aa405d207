// Tests of the raw-file backend (storage/raw_file.h) with real io_uring against temporary
// files: reads and writes (plain, vectored, more iovecs than one system call takes), reads
// past the end of a shortened file, flush, discard, write-zeroes, read-only disks, requests
// out of range, resize, many concurrent submitters, destruction with requests in flight, and
// the messages of failed opens.
#include "storage/raw_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/block_backend.h"
#include "storage/testing/completion_recorder.h"
#include "tests/support/test_env.h"

namespace flotilla::storage {
namespace {

using testing::CompletionRecorder;
using ::testing::HasSubstr;

// The byte at disk position `pos` for pattern `seed` (differs between neighbouring blocks).
char patternAt(uint64_t seed, uint64_t pos) {
  return static_cast<char>((pos * 131 + seed * 7 + (pos >> 9)) & 0xff);
}

std::vector<char> pattern(uint64_t seed, uint64_t offset, size_t length) {
  std::vector<char> data(length);
  for (size_t i = 0; i < length; ++i) data[i] = patternAt(seed, offset + i);
  return data;
}

BlockRequest request(uint64_t tag, BlockOp op, uint64_t offset, std::vector<iovec> iov = {},
                     uint64_t length = 0) {
  BlockRequest r;
  r.tag = tag;
  r.op = op;
  r.offset = offset;
  r.iov = std::move(iov);
  r.length = length;
  return r;
}

// The file's bytes [offset, offset + length), read without the backend.
std::vector<char> fileBytes(const std::string& path, uint64_t offset, size_t length) {
  std::vector<char> data(length);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(::pread(fd.get(), data.data(), length, static_cast<off_t>(offset)),
            static_cast<ssize_t>(length));
  return data;
}

class RawFileTest : public ::testing::Test {
 protected:
  std::string makeImage(const std::string& name, uint64_t size) {
    std::string path = dir_.file(name);
    UniqueFd fd(::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644));
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
    return path;
  }

  std::unique_ptr<BlockBackend> open(const std::string& path, RawFileOptions options = {}) {
    absl::StatusOr<std::unique_ptr<BlockBackend>> backend = openRawFile(path, options);
    EXPECT_TRUE(backend.ok()) << backend.status();
    if (!backend.ok()) return nullptr;
    (*backend)->setCompletionSink(&recorder_);
    return std::move(*backend);
  }

  // Submits the requests in one batch, waits for their completions and returns their results
  // in the order of the requests.
  std::vector<BlockResult> run(BlockBackend& backend, std::vector<BlockRequest> requests) {
    const size_t count = requests.size();
    auto results = recorder_.submitAndWait(backend, std::move(requests));
    EXPECT_TRUE(results.ok()) << results.status();
    return results.ok() ? *results : std::vector<BlockResult>(count, BlockResult::kIoError);
  }

  BlockResult runOne(BlockBackend& backend, BlockRequest r) {
    std::vector<BlockRequest> one;
    one.push_back(std::move(r));
    return run(backend, std::move(one)).front();
  }

  flotilla::testing::TempDir dir_;
  CompletionRecorder recorder_;
  uint64_t next_tag_ = 1;
};

TEST_F(RawFileTest, ReportsGeometryOfTheImage) {
  std::string path = makeImage("disk.img", 1 << 20);
  auto backend = open(path);
  ASSERT_NE(backend, nullptr);
  EXPECT_EQ(backend->sizeBytes(), 1u << 20);
  EXPECT_EQ(backend->blockSize(), 512u);
  EXPECT_FALSE(backend->readOnly());
  EXPECT_EQ(backend->describe(), "file " + path);
  BlockCapabilities can = backend->capabilities();
  EXPECT_TRUE(can.flush);
  EXPECT_TRUE(can.discard);  // the test directory is on a file system that punches holes
  EXPECT_TRUE(can.write_zeroes);
}

TEST_F(RawFileTest, ReadsBackWhatWasWrittenOnTheBackendThread) {
  std::string path = makeImage("disk.img", 1 << 20);
  auto backend = open(path);
  ASSERT_NE(backend, nullptr);
  std::vector<char> data = pattern(1, 8192, 4096);
  EXPECT_EQ(runOne(*backend, request(1, BlockOp::kWrite, 8192, {{data.data(), data.size()}})),
            BlockResult::kOk);
  EXPECT_EQ(fileBytes(path, 8192, 4096), data);

  std::vector<char> back(4096);
  EXPECT_EQ(runOne(*backend, request(2, BlockOp::kRead, 8192, {{back.data(), back.size()}})),
            BlockResult::kOk);
  EXPECT_EQ(back, data);
  for (std::thread::id thread : recorder_.threads()) {
    EXPECT_NE(thread, std::this_thread::get_id()) << "a completion was reported inside submit()";
  }
}

TEST_F(RawFileTest, VectoredRequestsSplitDifferently) {
  std::string path = makeImage("disk.img", 1 << 20);
  auto backend = open(path);
  ASSERT_NE(backend, nullptr);
  std::vector<char> data = pattern(2, 65536, 4096);
  // Written as 512 + 1536 + 2048 bytes, read as four 1024-byte buffers.
  std::vector<iovec> out = {
      {data.data(), 512}, {data.data() + 512, 1536}, {data.data() + 2048, 2048}};
  EXPECT_EQ(runOne(*backend, request(1, BlockOp::kWrite, 65536, out)), BlockResult::kOk);
  std::vector<std::vector<char>> parts(4, std::vector<char>(1024));
  std::vector<iovec> in;
  for (auto& part : parts) in.push_back({part.data(), part.size()});
  EXPECT_EQ(runOne(*backend, request(2, BlockOp::kRead, 65536, in)), BlockResult::kOk);
  std::vector<char> joined;
  for (auto& part : parts) joined.insert(joined.end(), part.begin(), part.end());
  EXPECT_EQ(joined, data);
}

TEST_F(RawFileTest, RequestsWithMoreIovecsThanOneSystemCallTakes) {
  std::string path = makeImage("disk.img", 4 << 20);
  auto backend = open(path);
  ASSERT_NE(backend, nullptr);
  // 2000 single-block buffers: readv/writev take at most 1024 (IOV_MAX) at a time.
  const size_t blocks = 2000;
  std::vector<char> data = pattern(3, 512 * 7, blocks * 512);
  std::vector<iovec> out;
  for (size_t i = 0; i < blocks; ++i) out.push_back({data.data() + i * 512, 512});
  EXPECT_EQ(runOne(*backend, request(1, BlockOp::kWrite, 512 * 7, out)), BlockResult::kOk);
  EXPECT_EQ(fileBytes(path, 512 * 7, data.size()), data);

  std::vector<char> back(data.size());
  std::vector<iovec> in;
  for (size_t i = 0; i < 1500; ++i) {
    const size_t length = i + 1 < 1500 ? 512 : back.size() - 1499 * 512;
    in.push_back({back.data() + i * 512, length});
  }
  EXPECT_EQ(runOne(*backend, request(2, BlockOp::kRead, 512 * 7, in)), BlockResult::kOk);
  EXPECT_EQ(back, data);
}

TEST_F(RawFileTest, SparseImageReadsAsZeroes) {
  std::string path = makeImage("sparse.img", 64 << 20);
  auto backend = open(path);
  ASSERT_NE(backend, nullptr);
  std::vector<char> back(1 << 20, 'x');
  EXPECT_EQ(runOne(*backend, request(1, BlockOp::kRead, 32 << 20, {{back.data(), back.size()}})),
            BlockResult::kOk);
  EXPECT_EQ(back, std::vector<char>(back.size(), '\0'));
}

TEST_F(RawFileTest, ReadPastTheEndOfAShortenedFileYieldsZeroes) {
  std::string path = makeImage("disk.img", 1 << 20);
  auto backend = open(path);
  ASSERT_NE(backend, nullptr);
  std::vector<char> data = pattern(4, 0, 1 << 20);
  EXPECT_EQ(runOne(*backend, request(1, BlockOp::kWrite, 0, {{data.data(), data.size()}})),
            BlockResult::kOk);
  // Someone shortens the file behind the backend's back: the disk keeps its size, and what
  // lies past the file's new end reads as zeroes (a short read, then end of file).
  ASSERT_EQ(::truncate(path.c_str(), 512 << 10), 0);
  std::vector<char> back(8192, 'x');
  EXPECT_EQ(runOne(*backend,
                   request(2, BlockOp::kRead, (512 << 10) - 4096, {{back.data(), back.size()}})),
            BlockResult::kOk);
  std::vector<char> expected(data.begin() + (512 << 10) - 4096, data.begin() + (512 << 10));
  expected.resize(8192, '\0');
  EXPECT_EQ(back, expected);

  std::vector<char> beyond(4096, 'x');
  EXPECT_EQ(runOne(*backend, request(3, BlockOp::kRead, 768 << 10, {{beyond.data(), 4096}})),
            BlockResult::kOk);
  EXPECT_EQ(beyond, std::vector<char>(4096, '\0'));
}

TEST_F(RawFileTest, FlushAndDrain) {
  std::string path = makeImage("disk.img", 1 << 20);
  auto backend = open(path);
  ASSERT_NE(backend, nullptr);
  std::vector<char> data = pattern(5, 0, 4096);
  EXPECT_EQ(runOne(*backend, request(1, BlockOp::kWrite, 0, {{data.data(), data.size()}})),
            BlockResult::kOk);
  EXPECT_EQ(runOne(*backend, request(2, BlockOp::kFlush, 0)), BlockResult::kOk);

  // drain() returns only once every submitted request was reported.
  std::vector<std::vector<char>> buffers(300, pattern(6, 0, 4096));
  std::vector<BlockRequest> writes;
  for (size_t i = 0; i < buffers.size(); ++i) {
    writes.push_back(request(100 + i, BlockOp::kWrite, i * 4096, {{buffers[i].data(), 4096}}));
  }
  const size_t before = recorder_.all().size();
  backend->submit(std::span<BlockRequest>(writes));
  ASSERT_TRUE(backend->drain().ok());
  EXPECT_EQ(recorder_.all().size(), before + buffers.size());
}

TEST_F(RawFileTest, DiscardPunchesAHoleThatReadsAsZeroes) {
  std::string path = makeImage("disk.img", 4 << 20);
  auto backend = open(path);
  ASSERT_NE(backend, nullptr);
  std::vector<char> data = pattern(7, 0, 1 << 20);
  ASSERT_EQ(runOne(*backend, request(1, BlockOp::kWrite, 0, {{data.data(), data.size()}})),
            BlockResult::kOk);
  ASSERT_TRUE(backend->drain().ok());
  struct stat before {};
  ASSERT_EQ(::stat(path.c_str(), &before), 0);

  EXPECT_EQ(runOne(*backend, request(2, BlockOp::kDiscard, 256 << 10, {}, 512 << 10)),
            BlockResult::kOk);
  struct stat after {};
  ASSERT_EQ(::stat(path.c_str(), &after), 0);
  EXPECT_LT(after.st_blocks, before.st_blocks) << "no space was given back";
  EXPECT_EQ(after.st_size, before.st_size) << "a discard must not change the file's size";

  std::vector<char> back(1 << 20);
  ASSERT_EQ(runOne(*backend, request(3, BlockOp::kRead, 0, {{back.data(), back.size()}})),
            BlockResult::kOk);
  std::vector<char> expected = data;
  std::fill(expected.begin() + (256 << 10), expected.begin() + (768 << 10), '\0');
  EXPECT_EQ(back, expected);
}

TEST_F(RawFileTest, WriteZeroesZeroesTheRange) {
  std::string path = makeImage("disk.img", 1 << 20);
  auto backend = open(path);
  ASSERT_NE(backend, nullptr);
  std::vector<char> data = pattern(8, 0, 64 << 10);
  ASSERT_EQ(runOne(*backend, request(1, BlockOp::kWrite, 0, {{data.data(), data.size()}})),
            BlockResult::kOk);
  EXPECT_EQ(runOne(*backend, request(2, BlockOp::kWriteZeroes, 4096, {}, 8192)), BlockResult::kOk);
  std::vector<char> expected = data;
  std::fill(expected.begin() + 4096, expected.begin() + 12288, '\0');
  EXPECT_EQ(fileBytes(path, 0, 64 << 10), expected);
}

TEST_F(RawFileTest, ReadOnlyDiskRefusesChangesAndKeepsTheFile) {
  std::string path = makeImage("disk.img", 1 << 20);
  {
    auto writer = open(path);
    ASSERT_NE(writer, nullptr);
    std::vector<char> data = pattern(9, 0, 4096);
    ASSERT_EQ(runOne(*writer, request(1, BlockOp::kWrite, 0, {{data.data(), data.size()}})),
              BlockResult::kOk);
  }
  RawFileOptions options;
  options.read_only = true;
  auto backend = open(path, options);
  ASSERT_NE(backend, nullptr);
  EXPECT_TRUE(backend->readOnly());
  BlockCapabilities can = backend->capabilities();
  EXPECT_FALSE(can.discard);
  EXPECT_FALSE(can.write_zeroes);
  EXPECT_FALSE(can.flush);

  std::vector<char> other = pattern(10, 0, 4096);
  std::vector<BlockRequest> changes;
  changes.push_back(request(2, BlockOp::kWrite, 0, {{other.data(), other.size()}}));
  changes.push_back(request(3, BlockOp::kDiscard, 0, {}, 4096));
  changes.push_back(request(4, BlockOp::kWriteZeroes, 0, {}, 4096));
  EXPECT_THAT(run(*backend, std::move(changes)),
              ::testing::Each(::testing::Eq(BlockResult::kIoError)));
  EXPECT_EQ(runOne(*backend, request(5, BlockOp::kFlush, 0)), BlockResult::kOk);
  std::vector<char> back(4096);
  EXPECT_EQ(runOne(*backend, request(6, BlockOp::kRead, 0, {{back.data(), back.size()}})),
            BlockResult::kOk);
  EXPECT_EQ(back, pattern(9, 0, 4096));
  EXPECT_FALSE(backend->resize(2 << 20).ok());
  EXPECT_TRUE(backend->drain().ok());
}

TEST_F(RawFileTest, RefusesRequestsOutsideTheDiskOrMisaligned) {
  std::string path = makeImage("disk.img", 1 << 20);
  auto backend = open(path);
  ASSERT_NE(backend, nullptr);
  std::vector<char> buffer(8192);
  std::vector<BlockRequest> bad;
  bad.push_back(request(1, BlockOp::kRead, 1 << 20, {{buffer.data(), 512}}));
  bad.push_back(request(2, BlockOp::kWrite, (1 << 20) - 4096, {{buffer.data(), 8192}}));
  bad.push_back(request(3, BlockOp::kRead, 100, {{buffer.data(), 512}}));
  bad.push_back(request(4, BlockOp::kRead, 0, {{buffer.data(), 100}}));
  bad.push_back(request(5, BlockOp::kDiscard, UINT64_MAX - 511, {}, 1024));
  bad.push_back(request(6, BlockOp::kWriteZeroes, 512, {}, 1 << 20));
  EXPECT_THAT(run(*backend, std::move(bad)), ::testing::Each(::testing::Eq(BlockResult::kIoError)));
  // An empty read is a no-op that succeeds.
  EXPECT_EQ(runOne(*backend, request(7, BlockOp::kRead, 0, {})), BlockResult::kOk);
}

TEST_F(RawFileTest, ResizeGrowsAndShrinksTheFile) {
  std::string path = makeImage("disk.img", 1 << 20);
  auto backend = open(path);
  ASSERT_NE(backend, nullptr);
  std::vector<char> data = pattern(11, 0, 4096);
  const uint64_t past_old_end = (1 << 20) + 8192;
  EXPECT_EQ(
      runOne(*backend, request(1, BlockOp::kWrite, past_old_end, {{data.data(), data.size()}})),
      BlockResult::kIoError);

  absl::StatusOr<uint64_t> grown = backend->resize(2 << 20);
  ASSERT_TRUE(grown.ok()) << grown.status();
  EXPECT_EQ(*grown, 2u << 20);
  EXPECT_EQ(backend->sizeBytes(), 2u << 20);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 2 << 20);
  EXPECT_EQ(
      runOne(*backend, request(2, BlockOp::kWrite, past_old_end, {{data.data(), data.size()}})),
      BlockResult::kOk);
  EXPECT_EQ(fileBytes(path, past_old_end, 4096), data);

  absl::StatusOr<uint64_t> bad = backend->resize(1000);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("multiple of 512"));

  ASSERT_TRUE(backend->resize(512 << 10).ok());
  EXPECT_EQ(backend->sizeBytes(), 512u << 10);
  std::vector<char> back(4096);
  EXPECT_EQ(runOne(*backend, request(3, BlockOp::kRead, 512 << 10, {{back.data(), 4096}})),
            BlockResult::kIoError);
}

TEST_F(RawFileTest, ManyConcurrentSubmittersWithASmallQueue) {
  std::string path = makeImage("disk.img", 8 << 20);
  RawFileOptions options;
  options.queue_depth = 8;  // most requests wait in the backend's own queue
  auto backend = open(path, options);
  ASSERT_NE(backend, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 250;
  std::vector<std::vector<char>> buffers(kThreads * kPerThread);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; i += 5) {
        std::vector<BlockRequest> batch;
        for (int j = i; j < i + 5; ++j) {
          const size_t index = static_cast<size_t>(t * kPerThread + j);
          const uint64_t offset = index * 4096;
          buffers[index] = pattern(index, offset, 4096);
          batch.push_back(
              request(index + 1, BlockOp::kWrite, offset, {{buffers[index].data(), 4096}}));
        }
        backend->submit(std::span<BlockRequest>(batch));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::vector<BlockCompletion> all = recorder_.waitFor(buffers.size());
  ASSERT_EQ(all.size(), buffers.size());
  std::set<uint64_t> tags;
  for (const BlockCompletion& c : all) {
    EXPECT_EQ(c.result, BlockResult::kOk);
    EXPECT_TRUE(tags.insert(c.tag).second) << "tag " << c.tag << " completed twice";
  }
  EXPECT_LT(recorder_.batches(), all.size()) << "completions are reported in batches";
  ASSERT_TRUE(backend->drain().ok());
  for (size_t index = 0; index < buffers.size(); ++index) {
    ASSERT_EQ(fileBytes(path, index * 4096, 4096), buffers[index]) << "block " << index;
  }
}

TEST_F(RawFileTest, DestroyingWithRequestsInFlightReportsEachOnce) {
  std::string path = makeImage("disk.img", 64 << 20);
  RawFileOptions options;
  options.queue_depth = 16;
  auto backend = open(path, options);
  ASSERT_NE(backend, nullptr);
  constexpr size_t kRequests = 1000;
  std::vector<std::vector<char>> buffers(kRequests, std::vector<char>(64 << 10));
  std::vector<BlockRequest> reads;
  for (size_t i = 0; i < kRequests; ++i) {
    reads.push_back(request(i + 1, BlockOp::kRead, (i % 1000) * (64 << 10),
                            {{buffers[i].data(), buffers[i].size()}}));
  }
  backend->submit(std::span<BlockRequest>(reads));
  backend.reset();  // most are still queued or in the kernel
  std::vector<BlockCompletion> all = recorder_.all();
  ASSERT_EQ(all.size(), kRequests);
  std::set<uint64_t> tags;
  for (const BlockCompletion& c : all) {
    EXPECT_TRUE(c.result == BlockResult::kOk || c.result == BlockResult::kIoError);
    EXPECT_TRUE(tags.insert(c.tag).second) << "tag " << c.tag << " completed twice";
  }
}

TEST_F(RawFileTest, MissingImageSaysHowToCreateIt) {
  const std::string path = dir_.file("missing.img");
  auto backend = openRawFile(path, {});
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(backend.status().message()),
            "disk image " + path + " does not exist: create it with `truncate -s 10G " + path +
                "` or `qemu-img create -f raw " + path + " 10G`");
}

TEST_F(RawFileTest, RefusesWhatIsNotAFileOrBlockDevice) {
  auto directory = openRawFile(dir_.path(), {});
  ASSERT_FALSE(directory.ok());
  EXPECT_THAT(std::string(directory.status().message()), HasSubstr("is a directory"));

  const std::string fifo = dir_.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto pipe = openRawFile(fifo, {});
  ASSERT_FALSE(pipe.ok());
  EXPECT_THAT(std::string(pipe.status().message()),
              HasSubstr("is a FIFO, not a raw image file or a block device"));

  auto character = openRawFile("/dev/null", {});
  ASSERT_FALSE(character.ok());
  EXPECT_THAT(std::string(character.status().message()), HasSubstr("character device"));
}

TEST_F(RawFileTest, RefusesSizesThatAreNotWholeBlocks) {
  std::string odd = makeImage("odd.img", 1000);
  auto backend = openRawFile(odd, {});
  ASSERT_FALSE(backend.ok());
  EXPECT_EQ(std::string(backend.status().message()),
            "disk image " + odd + " is 1000 bytes, not a multiple of 512: round it up with " +
                "`truncate -s %512 " + odd + "`");

  std::string empty = makeImage("empty.img", 0);
  auto none = openRawFile(empty, {});
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("is empty"));
}

// Opens `path` as a user without rights on it and returns the status message. As root (where
// file modes do not apply) it does so in a child process that became "nobody".
std::string openWithoutPermission(const std::string& path) {
  if (::geteuid() != 0) {
    EXPECT_EQ(::chmod(path.c_str(), 0), 0);
    auto backend = openRawFile(path, {});
    return backend.ok() ? "opened" : backend.status().ToString();
  }
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(2);
    auto backend = openRawFile(path, {});
    std::string message = backend.ok() ? "opened" : backend.status().ToString();
    (void)!::write(fds[1], message.data(), message.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string message;
  char buffer[512];
  ssize_t n = 0;
  while ((n = ::read(fds[0], buffer, sizeof(buffer))) > 0) {
    message.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return message;
}

TEST_F(RawFileTest, PermissionDeniedSaysWhatToDo) {
  std::string path = makeImage("private.img", 1 << 20);
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
  std::string message = openWithoutPermission(path);
  EXPECT_THAT(message, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(message, HasSubstr("cannot open disk image " + path +
                                 " for reading and writing: Permission denied"));
  EXPECT_THAT(message, HasSubstr("attach it read-only"));
}

}  // namespace
}  // namespace flotilla::storage
