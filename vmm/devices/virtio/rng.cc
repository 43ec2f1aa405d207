// VirtioRng (see rng.h).
#include "vmm/devices/virtio/rng.h"

#include <sys/random.h>

#include <cerrno>

namespace flotilla::vmm::virtio {

void VirtioRng::process(size_t index) {
  Virtqueue* queue = context_->queue(index);
  if (queue == nullptr) return;
  bool answered = false;
  do {
    while (true) {
      std::optional<DescriptorChain> chain = popChain(*context_, *queue);
      if (!chain.has_value()) break;
      uint32_t written = 0;
      for (const ChainBuffer& buffer : chain->writable) {
        uint32_t want = std::min(buffer.length, kMaxBytesPerRequest - written);
        uint32_t got = 0;
        while (got < want) {
          const ssize_t n = ::getrandom(buffer.data + got, want - got, 0);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) break;
          got += static_cast<uint32_t>(n);
        }
        written += got;
        if (got < want || written == kMaxBytesPerRequest) break;
      }
      queue->addUsed(chain->head, written);
      answered = true;
    }
  } while (context_->running() && queue->enableNotifications());
  if (answered) context_->signalUsed(index);
}

}  // namespace flotilla::vmm::virtio
