// Helpers shared by the block backends: checking a request against the disk, cutting a
// scatter-gather list into pieces, and counting requests in flight for drain().
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "storage/block_backend.h"

namespace flotilla::storage {

// The number of bytes a request covers: the iovecs' total for reads and writes, `length` for
// discards and write-zeroes, 0 for flushes.
uint64_t requestBytes(const BlockRequest& request);

// Why `request` cannot be performed on a disk of `size_bytes` with `block_size` byte blocks,
// or "" when it can: a misaligned offset or length, a range past the end of the disk, a
// write, discard or write-zeroes to a read-only disk.
std::string checkRequest(const BlockRequest& request, uint64_t size_bytes, uint32_t block_size,
                         bool read_only);

// The total length of a scatter-gather list.
uint64_t iovecBytes(std::span<const iovec> iov);

// The bytes [offset, offset + length) of the buffers `iov` describes, as a scatter-gather list
// of its own, with at most `max_entries` entries (the rest is left for a later piece: the
// returned list may cover less than `length`). Empty entries are skipped.
std::vector<iovec> sliceIovecs(std::span<const iovec> iov, uint64_t offset, uint64_t length,
                               size_t max_entries = SIZE_MAX);

// Writes zeroes into the buffers from byte `offset` of the list to its end.
void zeroIovecsFrom(std::span<const iovec> iov, uint64_t offset);

// Counts the requests that were submitted and not yet reported, so that drain() can wait for
// none to be left.
class InflightCounter {
 public:
  void add(uint64_t n);
  void done(uint64_t n);
  uint64_t count() const;
  // Blocks until the count is zero.
  void waitIdle() const;

 private:
  mutable absl::Mutex mu_;
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
};

// "read", "write", "flush", "discard", "write-zeroes".
const char* blockOpName(BlockOp op);

}  // namespace flotilla::storage
