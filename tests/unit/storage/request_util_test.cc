// Tests of the request helpers shared by the block backends: request checks against the
// disk's geometry, cutting scatter-gather lists, zero-filling, the in-flight counter.
#include "storage/request_util.h"

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace flotilla::storage {
namespace {

BlockRequest requestOf(BlockOp op, uint64_t offset, std::vector<iovec> iov, uint64_t length = 0) {
  BlockRequest request;
  request.op = op;
  request.offset = offset;
  request.iov = std::move(iov);
  request.length = length;
  return request;
}

TEST(CheckRequestTest, AcceptsAlignedRequestsInsideTheDisk) {
  std::vector<char> buffer(4096);
  EXPECT_EQ(checkRequest(requestOf(BlockOp::kRead, 0, {{buffer.data(), 4096}}), 8192, 512, false),
            "");
  EXPECT_EQ(checkRequest(requestOf(BlockOp::kRead, 4096, {{buffer.data(), 4096}}), 8192, 512, true),
            "");
  EXPECT_EQ(checkRequest(requestOf(BlockOp::kDiscard, 0, {}, 8192), 8192, 512, false), "");
  EXPECT_EQ(checkRequest(requestOf(BlockOp::kFlush, 0, {}), 8192, 512, true), "");
}

TEST(CheckRequestTest, RefusesMisalignedRequests) {
  std::vector<char> buffer(4096);
  EXPECT_NE(checkRequest(requestOf(BlockOp::kRead, 100, {{buffer.data(), 512}}), 8192, 512, false),
            "");
  EXPECT_NE(checkRequest(requestOf(BlockOp::kWrite, 0, {{buffer.data(), 100}}), 8192, 512, false),
            "");
  EXPECT_NE(checkRequest(requestOf(BlockOp::kWriteZeroes, 0, {}, 1000), 8192, 512, false), "");
  // 512-byte aligned is not enough for a 4096-byte block size.
  EXPECT_NE(
      checkRequest(requestOf(BlockOp::kRead, 512, {{buffer.data(), 4096}}), 8192, 4096, false), "");
}

TEST(CheckRequestTest, RefusesRangesPastTheEndWithoutOverflowing) {
  std::vector<char> buffer(4096);
  EXPECT_NE(checkRequest(requestOf(BlockOp::kRead, 8192, {{buffer.data(), 512}}), 8192, 512, false),
            "");
  EXPECT_NE(
      checkRequest(requestOf(BlockOp::kRead, 7680, {{buffer.data(), 1024}}), 8192, 512, false), "");
  // offset + length wraps around 2^64: still refused.
  const uint64_t huge = UINT64_MAX - 511;
  std::string problem =
      checkRequest(requestOf(BlockOp::kRead, huge, {{buffer.data(), 1024}}), 8192, 512, false);
  EXPECT_NE(problem, "");
  EXPECT_NE(checkRequest(requestOf(BlockOp::kDiscard, 512, {}, UINT64_MAX - 511), 8192, 512, false),
            "");
}

TEST(CheckRequestTest, RefusesChangesToReadOnlyDisks) {
  std::vector<char> buffer(512);
  for (BlockOp op : {BlockOp::kWrite, BlockOp::kDiscard, BlockOp::kWriteZeroes}) {
    std::string problem =
        checkRequest(requestOf(op, 0, {{buffer.data(), 512}}, 512), 8192, 512, true);
    EXPECT_NE(problem.find("read-only"), std::string::npos) << problem;
  }
}

TEST(SliceIovecsTest, CutsAcrossEntries) {
  char a[100], b[200], c[300];
  std::vector<iovec> iov = {{a, sizeof(a)}, {b, sizeof(b)}, {c, sizeof(c)}};
  EXPECT_EQ(iovecBytes(iov), 600u);

  std::vector<iovec> middle = sliceIovecs(iov, 50, 300);
  ASSERT_EQ(middle.size(), 3u);
  EXPECT_EQ(middle[0].iov_base, a + 50);
  EXPECT_EQ(middle[0].iov_len, 50u);
  EXPECT_EQ(middle[1].iov_base, b);
  EXPECT_EQ(middle[1].iov_len, 200u);
  EXPECT_EQ(middle[2].iov_base, c);
  EXPECT_EQ(middle[2].iov_len, 50u);

  std::vector<iovec> tail = sliceIovecs(iov, 300, 1000);
  ASSERT_EQ(tail.size(), 1u);
  EXPECT_EQ(tail[0].iov_base, c);
  EXPECT_EQ(tail[0].iov_len, 300u);

  EXPECT_TRUE(sliceIovecs(iov, 600, 10).empty());
  EXPECT_TRUE(sliceIovecs(iov, 0, 0).empty());
}

TEST(SliceIovecsTest, StopsAtTheEntryLimitAndSkipsEmptyEntries) {
  std::vector<char> data(10 * 16);
  std::vector<iovec> iov;
  for (int i = 0; i < 10; ++i) {
    iov.push_back({data.data() + i * 16, 16});
    iov.push_back({data.data(), 0});
  }
  std::vector<iovec> first = sliceIovecs(iov, 8, 160, 4);
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(iovecBytes(first), 8u + 3 * 16);
  EXPECT_EQ(first[0].iov_base, data.data() + 8);
}

TEST(ZeroIovecsFromTest, ZeroesTheTailOnly) {
  std::vector<char> a(8, 'a'), b(8, 'b');
  std::vector<iovec> iov = {{a.data(), a.size()}, {b.data(), b.size()}};
  zeroIovecsFrom(iov, 5);
  EXPECT_EQ(std::string(a.begin(), a.end()), std::string("aaaaa\0\0\0", 8));
  EXPECT_EQ(std::string(b.begin(), b.end()), std::string(8, '\0'));
}

TEST(InflightCounterTest, WaitIdleReturnsOnceEverythingIsDone) {
  InflightCounter counter;
  counter.waitIdle();  // nothing in flight: returns at once
  counter.add(3);
  std::thread finisher([&] {
    counter.done(1);
    counter.done(2);
  });
  counter.waitIdle();
  EXPECT_EQ(counter.count(), 0u);
  finisher.join();
}

}  // namespace
}  // namespace flotilla::storage
