// virtio-blk request parsing: every type, headers split across buffers, ranges, read-only
// disks, and chains that are not requests at all.
#include "vmm/devices/virtio/blk_request.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

namespace flotilla::vmm::virtio {
namespace {

using ::testing::HasSubstr;

class BlockRequestTest : public ::testing::Test {
 protected:
  // A chain whose readable part is `header` (+ `payload`) and whose writable part is
  // `writable` bytes of data plus the status byte.
  DescriptorChain chain(uint32_t type, uint64_t sector, size_t payload, size_t writable) {
    blk::RequestHeader header{type, 0, sector};
    std::memcpy(header_bytes_, &header, sizeof(header));
    DescriptorChain c;
    c.head = 3;
    c.readable.push_back({header_bytes_, sizeof(header)});
    if (payload > 0) c.readable.push_back({payload_.data(), static_cast<uint32_t>(payload)});
    if (writable > 0) c.writable.push_back({data_.data(), static_cast<uint32_t>(writable)});
    c.writable.push_back({&status_, 1});
    return c;
  }
  BlockDiskInfo disk(bool read_only = false) {
    BlockDiskInfo info;
    info.capacity_sectors = 2048;  // 1 MiB
    info.read_only = read_only;
    info.flush = true;
    info.discard = true;
    info.write_zeroes = true;
    info.max_discard_sectors = 1024;
    info.max_write_zeroes_sectors = 1024;
    return info;
  }

  uint8_t header_bytes_[16] = {};
  std::vector<uint8_t> payload_ = std::vector<uint8_t>(8192);
  std::vector<uint8_t> data_ = std::vector<uint8_t>(8192);
  uint8_t status_ = 0xff;
};

TEST_F(BlockRequestTest, ReadsIntoTheWritableBuffers) {
  auto plan = parseBlockRequest(chain(blk::kTypeIn, 8, 0, 4096), disk());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->immediate_status.has_value());
  EXPECT_EQ(plan->offset, 8 * 512u);
  EXPECT_EQ(plan->data_bytes, 4096u);
  ASSERT_EQ(plan->data.size(), 1u);
  EXPECT_EQ(plan->data[0].iov_base, data_.data());
  EXPECT_EQ(plan->status, &status_);
  EXPECT_EQ(plan->used_length, 4097u);
}

TEST_F(BlockRequestTest, WritesFromTheReadableBuffers) {
  auto plan = parseBlockRequest(chain(blk::kTypeOut, 0, 1024, 0), disk());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->immediate_status.has_value());
  EXPECT_EQ(plan->data_bytes, 1024u);
  ASSERT_EQ(plan->data.size(), 1u);
  EXPECT_EQ(plan->data[0].iov_base, payload_.data());
  EXPECT_EQ(plan->used_length, 1u);
}

TEST_F(BlockRequestTest, HeaderMaySpanBuffersAndDataShareOne) {
  // Header split 10 + 6, the data in the same buffer as the header's tail.
  blk::RequestHeader header{blk::kTypeOut, 0, 2};
  std::vector<uint8_t> first(10), second(6 + 512);
  std::memcpy(first.data(), &header, 10);
  std::memcpy(second.data(), reinterpret_cast<uint8_t*>(&header) + 10, 6);
  DescriptorChain c;
  c.readable = {{first.data(), 10}, {second.data(), 518}};
  c.writable = {{&status_, 1}};
  auto plan = parseBlockRequest(c, disk());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->offset, 1024u);
  ASSERT_EQ(plan->data.size(), 1u);
  EXPECT_EQ(plan->data[0].iov_base, second.data() + 6);
  EXPECT_EQ(plan->data[0].iov_len, 512u);
}

TEST_F(BlockRequestTest, AnswersBadRequestsWithAStatus) {
  struct Case {
    const char* name;
    uint32_t type;
    uint64_t sector;
    size_t payload;
    size_t writable;
    bool read_only;
    uint8_t status;
  } cases[] = {
      {"read past the end", blk::kTypeIn, 2047, 0, 1024, false, blk::kStatusIoErr},
      {"read from a sector beyond the end", blk::kTypeIn, uint64_t{1} << 60, 0, 512, false,
       blk::kStatusIoErr},
      {"partial sector", blk::kTypeIn, 0, 0, 100, false, blk::kStatusIoErr},
      {"write to a read-only disk", blk::kTypeOut, 0, 512, 0, true, blk::kStatusIoErr},
      {"unknown type", 77, 0, 0, 0, false, blk::kStatusUnsupported},
      {"discard with two segments", blk::kTypeDiscard, 0, 32, 0, false, blk::kStatusUnsupported},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto plan =
        parseBlockRequest(chain(c.type, c.sector, c.payload, c.writable), disk(c.read_only));
    ASSERT_TRUE(plan.ok()) << plan.status();
    ASSERT_TRUE(plan->immediate_status.has_value());
    EXPECT_EQ(*plan->immediate_status, c.status);
  }
}

TEST_F(BlockRequestTest, FlushNeedsTheFeature) {
  BlockDiskInfo info = disk();
  auto plan = parseBlockRequest(chain(blk::kTypeFlush, 0, 0, 0), info);
  ASSERT_TRUE(plan.ok());
  EXPECT_FALSE(plan->immediate_status.has_value());
  info.flush = false;
  plan = parseBlockRequest(chain(blk::kTypeFlush, 0, 0, 0), info);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->immediate_status, blk::kStatusUnsupported);
}

TEST_F(BlockRequestTest, DiscardAndWriteZeroesTakeOneSegment) {
  blk::DiscardSegment segment{16, 64, blk::kWriteZeroesFlagUnmap};
  std::memcpy(payload_.data(), &segment, sizeof(segment));
  auto plan = parseBlockRequest(chain(blk::kTypeWriteZeroes, 0, 16, 0), disk());
  ASSERT_TRUE(plan.ok());
  EXPECT_FALSE(plan->immediate_status.has_value());
  EXPECT_EQ(plan->offset, 16 * 512u);
  EXPECT_EQ(plan->data_bytes, 64 * 512u);
  EXPECT_TRUE(plan->unmap);
  // The unmap flag is not allowed on a discard; ranges beyond the end or the maximum fail.
  plan = parseBlockRequest(chain(blk::kTypeDiscard, 0, 16, 0), disk());
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->immediate_status, blk::kStatusUnsupported);
  segment = {2040, 64, 0};
  std::memcpy(payload_.data(), &segment, sizeof(segment));
  plan = parseBlockRequest(chain(blk::kTypeDiscard, 0, 16, 0), disk());
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->immediate_status, blk::kStatusIoErr);
  segment = {0, 2000, 0};
  std::memcpy(payload_.data(), &segment, sizeof(segment));
  plan = parseBlockRequest(chain(blk::kTypeDiscard, 0, 16, 0), disk());
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->immediate_status, blk::kStatusUnsupported);
}

TEST_F(BlockRequestTest, GetIdReturnsAtMostTwentyBytes) {
  auto plan = parseBlockRequest(chain(blk::kTypeGetId, 0, 0, 64), disk());
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->data_bytes, 20u);
  EXPECT_EQ(plan->used_length, 21u);
}

TEST_F(BlockRequestTest, RefusesChainsThatAreNotRequests) {
  DescriptorChain no_header;
  no_header.readable = {{header_bytes_, 8}};
  no_header.writable = {{&status_, 1}};
  auto plan = parseBlockRequest(no_header, disk());
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("16-byte header"));

  DescriptorChain no_status = chain(blk::kTypeIn, 0, 0, 0);
  no_status.writable.clear();
  plan = parseBlockRequest(no_status, disk());
  ASSERT_FALSE(plan.ok());
  EXPECT_THAT(std::string(plan.status().message()), HasSubstr("status byte"));
}

TEST(SliceBuffersTest, SlicesAcrossBuffers) {
  uint8_t a[10], b[10], c[10];
  std::vector<ChainBuffer> buffers = {{a, 10}, {b, 10}, {c, 10}};
  std::vector<iovec> slice = sliceBuffers(buffers, 5, 20);
  ASSERT_EQ(slice.size(), 3u);
  EXPECT_EQ(slice[0].iov_base, a + 5);
  EXPECT_EQ(slice[0].iov_len, 5u);
  EXPECT_EQ(slice[1].iov_len, 10u);
  EXPECT_EQ(slice[2].iov_base, c);
  EXPECT_EQ(slice[2].iov_len, 5u);
  EXPECT_TRUE(sliceBuffers(buffers, 30, 5).empty());
  EXPECT_EQ(sliceBuffers(buffers, 25, 100).size(), 1u);
}

}  // namespace
}  // namespace flotilla::vmm::virtio
