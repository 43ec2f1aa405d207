// BlockBackend: where a virtual disk's blocks live (a raw file, an iSCSI LUN). The VMM's
// virtio-blk device turns guest requests into BlockRequests whose buffers point straight into
// guest memory; the backend performs them asynchronously and reports each completion, with
// the tag the device gave, to the BlockCompletionSink on a thread of the backend's own.
//
// Threading: submit(), drain(), sizeBytes() and resize() may be called from any thread;
// completions arrive on the backend's thread, never from inside submit(). A completion is
// reported exactly once for every submitted request, also when the backend fails or closes.
// The sink may call submit() from inside completed() (a closed loop), but not drain(),
// resize() or the destructor. A request's buffers must stay valid (guest memory mapped) until
// its completion was reported or the backend was destroyed.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace flotilla::storage {

enum class BlockOp : uint8_t {
  kRead,
  kWrite,
  kFlush,        // makes every completed write durable
  kDiscard,      // the range may read back as anything afterwards (zeroes on a raw file)
  kWriteZeroes,  // the range reads back as zeroes afterwards
};

struct BlockRequest {
  uint64_t tag = 0;  // the caller's, returned with the completion
  BlockOp op = BlockOp::kRead;
  uint64_t offset = 0;  // bytes; a multiple of blockSize() (0 for kFlush)
  // kRead/kWrite: the buffers, in order (their total length is the request's length).
  std::vector<iovec> iov;
  // kDiscard/kWriteZeroes: the length in bytes (a multiple of blockSize()).
  uint64_t length = 0;
};

enum class BlockResult : uint8_t {
  kOk,
  kIoError,      // the request failed (the backend logged why)
  kUnsupported,  // the backend cannot do this operation (e.g. kDiscard on an iSCSI LUN without
                 // UNMAP)
};

struct BlockCompletion {
  uint64_t tag = 0;
  BlockResult result = BlockResult::kOk;
};

class BlockCompletionSink {
 public:
  virtual ~BlockCompletionSink() = default;
  // A batch of completed requests (one or more), in completion order.
  virtual void completed(std::span<const BlockCompletion> completions) = 0;
};

struct BlockCapabilities {
  bool discard = false;
  bool write_zeroes = false;
  bool flush = true;  // false when every write is already durable
};

class BlockBackend {
 public:
  // Reports every request still in flight, then closes: requests not yet started fail with
  // kIoError; a raw file's requests already in the kernel are waited for (their buffers may be
  // written until then) and reported with their result; an iSCSI LUN's fail with kIoError.
  // The sink must outlive the backend.
  virtual ~BlockBackend() = default;

  // Where completions go; set once, before the first submit().
  virtual void setCompletionSink(BlockCompletionSink* sink) = 0;

  // Starts the requests (in any order relative to each other; a request's iov vector is moved
  // from). Requests beyond the disk's end, misaligned ones, or writes to a read-only disk
  // complete with kIoError. Never blocks on I/O: what the backend cannot start at once waits
  // in its own queue. Any size and iovec count is accepted (split internally).
  virtual void submit(std::span<BlockRequest> requests) = 0;

  // Waits until every submitted request has completed, then flushes. Migration and
  // snapshots call it after the device stopped submitting.
  virtual absl::Status drain() = 0;

  virtual uint64_t sizeBytes() const = 0;
  virtual uint32_t blockSize() const = 0;  // logical block size in bytes (512 or 4096)
  virtual bool readOnly() const = 0;
  virtual BlockCapabilities capabilities() const = 0;
  // What the disk is, for logs and errors: "file /var/lib/x.img", "iscsi://.../1".
  virtual std::string describe() const = 0;

  // Grows (or shrinks) the disk to `bytes` (a multiple of blockSize()): a raw file is
  // truncated; an iSCSI LUN cannot be resized from here, so this re-reads its capacity and
  // fails unless it is `bytes`. Returns the new size.
  virtual absl::StatusOr<uint64_t> resize(uint64_t bytes) = 0;
};

struct RawFileOptions {
  bool read_only = false;
  // Queue depth of the asynchronous engine (io_uring entries).
  uint32_t queue_depth = 128;
};

// Opens an existing raw image file. Errors name the file and say what to do (create it with
// `truncate -s SIZE FILE` / `qemu-img create -f raw FILE SIZE`, fix its permissions, ...).
absl::StatusOr<std::unique_ptr<BlockBackend>> openRawFile(const std::string& path,
                                                          const RawFileOptions& options);

struct IscsiOptions {
  bool read_only = false;
  std::string initiator_name = "iqn.2026-01.org.flotilla:vmm";
  // How long the backend keeps reconnecting to a target that went away, retrying the
  // requests in flight, before it fails them with kIoError.
  absl::Duration reconnect_timeout = absl::Seconds(30);
  // How long the first login may take before open fails.
  absl::Duration connect_timeout = absl::Seconds(5);
  // The VM's generation (docs/storage.md "Fencing by generation"): every login registers it as
  // a SCSI-3 persistent reservation key, preempts the keys of older generations and holds the
  // LUN's reservation (Write Exclusive, Registrants Only). Opening a LUN a newer generation
  // registered fails with FailedPrecondition; once a newer generation takes the LUN over,
  // every request fails. Unset (and on read-only disks, which never write): no reservation.
  std::optional<uint64_t> generation;
};

// Logs in to `url` (iscsi://HOST[:PORT]/IQN/LUN), reads the LUN's capacity and, with a
// generation, takes its reservation. Errors name the URL and say what failed (unreachable
// portal, unknown target, no such LUN, login refused, a newer generation holds the LUN).
absl::StatusOr<std::unique_ptr<BlockBackend>> openIscsi(const std::string& url,
                                                        const IscsiOptions& options);

}  // namespace flotilla::storage
