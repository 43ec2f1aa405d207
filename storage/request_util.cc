// Helpers shared by the block backends (see request_util.h).
#include "storage/request_util.h"

#include <algorithm>
#include <cstring>

#include "fmt/format.h"

namespace flotilla::storage {

uint64_t iovecBytes(std::span<const iovec> iov) {
  uint64_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  return total;
}

uint64_t requestBytes(const BlockRequest& request) {
  switch (request.op) {
    case BlockOp::kRead:
    case BlockOp::kWrite:
      return iovecBytes(request.iov);
    case BlockOp::kDiscard:
    case BlockOp::kWriteZeroes:
      return request.length;
    case BlockOp::kFlush:
      return 0;
  }
  return 0;
}

const char* blockOpName(BlockOp op) {
  switch (op) {
    case BlockOp::kRead:
      return "read";
    case BlockOp::kWrite:
      return "write";
    case BlockOp::kFlush:
      return "flush";
    case BlockOp::kDiscard:
      return "discard";
    case BlockOp::kWriteZeroes:
      return "write-zeroes";
  }
  return "unknown operation";
}

std::string checkRequest(const BlockRequest& request, uint64_t size_bytes, uint32_t block_size,
                         bool read_only) {
  if (request.op == BlockOp::kFlush) return "";
  if (read_only && request.op != BlockOp::kRead) {
    return fmt::format("{} on a read-only disk", blockOpName(request.op));
  }
  const uint64_t bytes = requestBytes(request);
  if (request.offset % block_size != 0 || bytes % block_size != 0) {
    return fmt::format("{} of {} bytes at offset {} is not aligned to the {}-byte block size",
                       blockOpName(request.op), bytes, request.offset, block_size);
  }
  // Written so that it cannot overflow: offset <= size and bytes <= size - offset.
  if (request.offset > size_bytes || bytes > size_bytes - request.offset) {
    return fmt::format("{} of {} bytes at offset {} goes past the end of the {}-byte disk",
                       blockOpName(request.op), bytes, request.offset, size_bytes);
  }
  return "";
}

std::vector<iovec> sliceIovecs(std::span<const iovec> iov, uint64_t offset, uint64_t length,
                               size_t max_entries) {
  std::vector<iovec> out;
  for (const iovec& v : iov) {
    if (length == 0 || out.size() >= max_entries) break;
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    const uint64_t take = std::min<uint64_t>(v.iov_len - offset, length);
    if (take > 0) {
      out.push_back(iovec{static_cast<char*>(v.iov_base) + offset, static_cast<size_t>(take)});
    }
    length -= take;
    offset = 0;
  }
  return out;
}

void zeroIovecsFrom(std::span<const iovec> iov, uint64_t offset) {
  for (const iovec& v : iov) {
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    std::memset(static_cast<char*>(v.iov_base) + offset, 0, v.iov_len - offset);
    offset = 0;
  }
}

void InflightCounter::add(uint64_t n) {
  absl::MutexLock lock(&mu_);
  count_ += n;
}

void InflightCounter::done(uint64_t n) {
  absl::MutexLock lock(&mu_);
  count_ -= std::min(n, count_);
}

uint64_t InflightCounter::count() const {
  absl::MutexLock lock(&mu_);
  return count_;
}

void InflightCounter::waitIdle() const {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](const uint64_t* count) { return *count == 0; }, &count_));
}

}  // namespace flotilla::storage
