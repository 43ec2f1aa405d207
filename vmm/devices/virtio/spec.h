// Constants of the virtio 1.2 specification that Flotilla's devices use: device types,
// status bits, feature bits, the virtio-mmio register map, split-virtqueue layouts, and the
// virtio-blk, virtio-net, virtio-rng and virtio-balloon request formats.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flotilla::vmm::virtio {

// Device types (virtio 1.2 section 5).
inline constexpr uint32_t kDeviceNet = 1;
inline constexpr uint32_t kDeviceBlock = 2;
inline constexpr uint32_t kDeviceRng = 4;
inline constexpr uint32_t kDeviceBalloon = 5;

// Device status field (2.1).
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// Reserved feature bits (6).
inline constexpr int kFeatureIndirectDesc = 28;
inline constexpr int kFeatureEventIdx = 29;
inline constexpr int kFeatureVersion1 = 32;
inline constexpr int kFeatureAccessPlatform = 33;

constexpr uint64_t featureBit(int bit) {
  return uint64_t{1} << bit;
}
constexpr bool hasFeature(uint64_t features, int bit) {
  return (features & featureBit(bit)) != 0;
}

// virtio-mmio registers, version 2 (4.2.2).
namespace mmio {
inline constexpr uint32_t kMagic = 0x74726976;  // "virt"
inline constexpr uint32_t kVersion = 2;
inline constexpr uint32_t kVendorId = 0x544f4c46;  // "FLOT"
inline constexpr uint64_t kMagicValue = 0x000;
inline constexpr uint64_t kVersionReg = 0x004;
inline constexpr uint64_t kDeviceId = 0x008;
inline constexpr uint64_t kVendorIdReg = 0x00c;
inline constexpr uint64_t kDeviceFeatures = 0x010;
inline constexpr uint64_t kDeviceFeaturesSel = 0x014;
inline constexpr uint64_t kDriverFeatures = 0x020;
inline constexpr uint64_t kDriverFeaturesSel = 0x024;
inline constexpr uint64_t kQueueSel = 0x030;
inline constexpr uint64_t kQueueNumMax = 0x034;
inline constexpr uint64_t kQueueNum = 0x038;
inline constexpr uint64_t kQueueReady = 0x044;
inline constexpr uint64_t kQueueNotify = 0x050;
inline constexpr uint64_t kInterruptStatus = 0x060;
inline constexpr uint64_t kInterruptAck = 0x064;
inline constexpr uint64_t kStatus = 0x070;
inline constexpr uint64_t kQueueDescLow = 0x080;
inline constexpr uint64_t kQueueDescHigh = 0x084;
inline constexpr uint64_t kQueueDriverLow = 0x090;
inline constexpr uint64_t kQueueDriverHigh = 0x094;
inline constexpr uint64_t kQueueDeviceLow = 0x0a0;
inline constexpr uint64_t kQueueDeviceHigh = 0x0a4;
inline constexpr uint64_t kShmSel = 0x0ac;
inline constexpr uint64_t kShmLenLow = 0x0b0;
inline constexpr uint64_t kShmLenHigh = 0x0b4;
inline constexpr uint64_t kShmBaseLow = 0x0b8;
inline constexpr uint64_t kShmBaseHigh = 0x0bc;
inline constexpr uint64_t kConfigGeneration = 0x0fc;
inline constexpr uint64_t kConfig = 0x100;
// Each device gets a 4 KiB window (the registers and up to 3.75 KiB of configuration).
inline constexpr uint64_t kWindowSize = 0x1000;

inline constexpr uint32_t kInterruptUsedBuffer = 1;
inline constexpr uint32_t kInterruptConfigChange = 2;
}  // namespace mmio

// Split virtqueues (2.7).
inline constexpr uint16_t kDescNext = 1;
inline constexpr uint16_t kDescWrite = 2;
inline constexpr uint16_t kDescIndirect = 4;
inline constexpr uint16_t kAvailNoInterrupt = 1;
inline constexpr uint16_t kUsedNoNotify = 1;
inline constexpr uint16_t kMaxQueueSize = 32768;

struct Descriptor {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Descriptor) == 16);

struct UsedElement {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(UsedElement) == 8);

constexpr uint64_t descriptorTableBytes(uint16_t size) {
  return uint64_t{16} * size;
}
// flags, idx, ring[size], used_event
constexpr uint64_t availRingBytes(uint16_t size) {
  return 6 + uint64_t{2} * size;
}
// flags, idx, ring[size], avail_event
constexpr uint64_t usedRingBytes(uint16_t size) {
  return 6 + uint64_t{8} * size;
}

// virtio-blk (5.2).
namespace blk {
inline constexpr int kFeatureSizeMax = 1;
inline constexpr int kFeatureSegMax = 2;
inline constexpr int kFeatureRo = 5;
inline constexpr int kFeatureBlkSize = 6;
inline constexpr int kFeatureFlush = 9;
inline constexpr int kFeatureTopology = 10;
inline constexpr int kFeatureDiscard = 13;
inline constexpr int kFeatureWriteZeroes = 14;

inline constexpr uint32_t kTypeIn = 0;
inline constexpr uint32_t kTypeOut = 1;
inline constexpr uint32_t kTypeFlush = 4;
inline constexpr uint32_t kTypeGetId = 8;
inline constexpr uint32_t kTypeDiscard = 11;
inline constexpr uint32_t kTypeWriteZeroes = 13;

inline constexpr uint8_t kStatusOk = 0;
inline constexpr uint8_t kStatusIoErr = 1;
inline constexpr uint8_t kStatusUnsupported = 2;

inline constexpr uint64_t kSectorSize = 512;
inline constexpr uint32_t kIdBytes = 20;
inline constexpr uint32_t kWriteZeroesFlagUnmap = 1;

struct RequestHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

struct DiscardSegment {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;
};
static_assert(sizeof(DiscardSegment) == 16);

// Configuration layout offsets (struct virtio_blk_config).
inline constexpr uint64_t kConfigCapacity = 0;
inline constexpr uint64_t kConfigSizeMax = 8;
inline constexpr uint64_t kConfigSegMax = 12;
inline constexpr uint64_t kConfigBlkSize = 20;
inline constexpr uint64_t kConfigPhysicalBlockExp = 24;
inline constexpr uint64_t kConfigMinIoSize = 26;
inline constexpr uint64_t kConfigOptIoSize = 28;
inline constexpr uint64_t kConfigMaxDiscardSectors = 36;
inline constexpr uint64_t kConfigMaxDiscardSeg = 40;
inline constexpr uint64_t kConfigDiscardSectorAlignment = 44;
inline constexpr uint64_t kConfigMaxWriteZeroesSectors = 48;
inline constexpr uint64_t kConfigMaxWriteZeroesSeg = 52;
inline constexpr uint64_t kConfigWriteZeroesMayUnmap = 56;
inline constexpr uint64_t kConfigBytes = 60;
}  // namespace blk

// virtio-net (5.1).
namespace net {
inline constexpr int kFeatureCsum = 0;
inline constexpr int kFeatureGuestCsum = 1;
inline constexpr int kFeatureCtrlGuestOffloads = 2;
inline constexpr int kFeatureMtu = 3;
inline constexpr int kFeatureMac = 5;
inline constexpr int kFeatureGuestTso4 = 7;
inline constexpr int kFeatureGuestTso6 = 8;
inline constexpr int kFeatureGuestEcn = 9;
inline constexpr int kFeatureGuestUfo = 10;
inline constexpr int kFeatureHostTso4 = 11;
inline constexpr int kFeatureHostTso6 = 12;
inline constexpr int kFeatureHostEcn = 13;
inline constexpr int kFeatureHostUfo = 14;
inline constexpr int kFeatureMrgRxbuf = 15;
inline constexpr int kFeatureStatus = 16;
inline constexpr int kFeatureCtrlVq = 17;
inline constexpr int kFeatureGuestAnnounce = 21;

inline constexpr uint16_t kStatusLinkUp = 1;
inline constexpr uint16_t kStatusAnnounce = 2;

// struct virtio_net_hdr with num_buffers (VIRTIO_F_VERSION_1): 12 bytes.
struct Header {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
static_assert(sizeof(Header) == 12);
inline constexpr uint8_t kHeaderGsoNone = 0;

// Configuration layout offsets (struct virtio_net_config).
inline constexpr uint64_t kConfigMac = 0;
inline constexpr uint64_t kConfigStatus = 6;
inline constexpr uint64_t kConfigMaxQueuePairs = 8;
inline constexpr uint64_t kConfigMtu = 10;
inline constexpr uint64_t kConfigBytes = 12;

// Control queue (5.1.6.5).
inline constexpr uint8_t kCtrlAnnounce = 3;
inline constexpr uint8_t kCtrlAnnounceAck = 0;
inline constexpr uint8_t kCtrlOk = 0;
inline constexpr uint8_t kCtrlErr = 1;
}  // namespace net

// virtio-balloon (5.5).
namespace balloon {
inline constexpr int kFeatureStatsVq = 1;
inline constexpr int kFeatureDeflateOnOom = 2;
inline constexpr uint64_t kPageSize = 4096;  // balloon page frame numbers are 4 KiB pages
inline constexpr uint64_t kConfigNumPages = 0;
inline constexpr uint64_t kConfigActual = 4;
inline constexpr uint64_t kConfigBytes = 8;

#pragma pack(push, 1)
struct Stat {
  uint16_t tag;
  uint64_t val;
};
#pragma pack(pop)
static_assert(sizeof(Stat) == 10);
}  // namespace balloon

}  // namespace flotilla::vmm::virtio
