// net: a virtio-net device (virtio 1.2, section 5.1) with a static IPv4 address (net.ip=), no
// offloads: answers ARP requests for its address, ICMP echo requests, and UDP datagrams to any
// port (the payload goes back to the sender, addresses and ports swapped). Reports link changes
// (VIRTIO_NET_F_STATUS) and, when the device asks for an announcement (VIRTIO_NET_S_ANNOUNCE,
// e.g. after a live migration), sends a gratuitous ARP and acknowledges on the control queue.
// Runs until killed, or exits 0 after net.packets replies.
#include <stdint.h>

#include "guest.h"
#include "io.h"
#include "lib.h"
#include "print.h"
#include "tsc.h"
#include "virtio.h"
#include "workloads/workloads.h"

// Feature bits (section 5.1.3).
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_F_CTRL_VQ 17
#define VIRTIO_NET_F_GUEST_ANNOUNCE 21
// Configuration space (section 5.1.4): mac[6], then le16 status.
#define CONFIG_MAC 0
#define CONFIG_STATUS 6
#define VIRTIO_NET_S_LINK_UP 1
#define VIRTIO_NET_S_ANNOUNCE 2
// Control queue (section 5.1.6.5).
#define VIRTIO_NET_CTRL_ANNOUNCE 3
#define VIRTIO_NET_CTRL_ANNOUNCE_ACK 0
#define VIRTIO_NET_OK 0

#define QUEUE_RX 0
#define QUEUE_TX 1
#define QUEUE_CTRL 2  // 2N with N = 1 queue pair (no VIRTIO_NET_F_MQ)

// struct virtio_net_hdr: 12 bytes with VIRTIO_F_VERSION_1 (num_buffers always present). With
// no offload negotiated everything in it is 0 on transmit, and the device sets no GSO on
// receive.
#define NET_HEADER_SIZE 12
// Without VIRTIO_NET_F_MRG_RXBUF or guest offloads, receive buffers of at least 1526 bytes
// (section 5.1.6.3.1): the header plus a 1514-byte frame.
#define RX_BUFFER_SIZE 2048
#define TX_SLOT_SIZE 2048
#define TX_FRAME_OFFSET 64  // the header at 0, the frame here: two descriptors per packet
#define MAX_FRAME 1514

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define IP_PROTOCOL_ICMP 1
#define IP_PROTOCOL_UDP 17
#define CONFIG_POLL_US 10000  // polling mode: InterruptStatus is read this often (a VM exit)

struct Net {
  struct VirtioDevice device;
  struct Virtq rx, tx, ctrl;
  bool has_status, has_ctrl_announce;
  uint8_t mac[6];
  uint32_t ip, prefix;
  uint8_t* rx_buffers;
  uint8_t* tx_slots;
  uint16_t* free_tx;
  uint32_t free_tx_count;
  uint8_t* ctrl_buffer;  // class, command | ack
  uint16_t ip_id;
  uint16_t status;
  uint64_t rx_packets, tx_packets, arp, icmp, udp, dropped, replies;
};

__attribute__((noreturn)) static void fatal(const char* why) {
  report("error net %s", why);
  exitGuest(GUEST_EXIT_CHECK_FAILED);
}

static uint16_t getBe16(const uint8_t* p) {
  return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t getBe32(const uint8_t* p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void putBe16(uint8_t* p, uint16_t value) {
  p[0] = (uint8_t)(value >> 8);
  p[1] = (uint8_t)value;
}

static void putBe32(uint8_t* p, uint32_t value) {
  putBe16(p, (uint16_t)(value >> 16));
  putBe16(p + 2, (uint16_t)value);
}

// The Internet checksum (RFC 1071) of `length` bytes, on top of a partial `sum`.
static uint32_t checksumAdd(uint32_t sum, const uint8_t* data, uint32_t length) {
  for (uint32_t i = 0; i + 1 < length; i += 2) sum += getBe16(data + i);
  if (length & 1) sum += (uint32_t)data[length - 1] << 8;
  return sum;
}

static uint16_t checksumFinish(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static void formatMac(const uint8_t mac[6], char* out, size_t size) {
  static const char kHex[] = "0123456789abcdef";
  size_t at = 0;
  for (int i = 0; i < 6 && at + 3 <= size; ++i) {
    out[at++] = kHex[mac[i] >> 4];
    out[at++] = kHex[mac[i] & 15];
    out[at++] = i < 5 ? ':' : '\0';
  }
}

// --- transmit ---

static void reclaimTx(struct Net* net) {
  void* cookie;
  uint32_t length;
  while (virtqGetUsed(&net->tx, &cookie, &length)) {
    net->free_tx[net->free_tx_count++] = (uint16_t)(uint64_t)cookie;
  }
}

// A frame buffer to fill, or 0 when every slot is in flight (waits a little first).
static uint8_t* txFrame(struct Net* net, uint16_t* slot) {
  reclaimTx(net);
  const uint64_t give_up = rdtsc() + microsecondsToTsc(100000);
  while (net->free_tx_count == 0) {
    virtqKick(&net->tx);
    struct Virtq* queues[1] = {&net->tx};
    virtioWait(&net->device, queues, 1);
    reclaimTx(net);
    if (rdtsc() > give_up) return 0;
  }
  *slot = net->free_tx[--net->free_tx_count];
  return net->tx_slots + (uint64_t)*slot * TX_SLOT_SIZE + TX_FRAME_OFFSET;
}

static void txSend(struct Net* net, uint16_t slot, uint32_t frame_length) {
  uint8_t* base = net->tx_slots + (uint64_t)slot * TX_SLOT_SIZE;
  memset(base, 0, NET_HEADER_SIZE);  // no checksum offload, no GSO, num_buffers 0
  const struct VirtqBuffer buffers[2] = {
      {(uint64_t)base, NET_HEADER_SIZE, false},
      {(uint64_t)base + TX_FRAME_OFFSET, frame_length, false},
  };
  if (!virtqAdd(&net->tx, buffers, 2, (void*)(uint64_t)slot)) {
    fatal("internal: no room in the transmit queue for a free slot");
  }
  net->tx_packets++;
}

static void putEthernet(uint8_t* frame, const uint8_t* destination, const uint8_t* source,
                        uint16_t type) {
  memcpy(frame, destination, 6);
  memcpy(frame + 6, source, 6);
  putBe16(frame + 12, type);
}

// An ARP packet (RFC 826) for IPv4 over Ethernet; 60 bytes with padding.
static uint32_t putArp(uint8_t* frame, const uint8_t* eth_destination, uint16_t operation,
                       const uint8_t* sender_mac, uint32_t sender_ip, const uint8_t* target_mac,
                       uint32_t target_ip) {
  putEthernet(frame, eth_destination, sender_mac, ETHERTYPE_ARP);
  uint8_t* arp = frame + 14;
  putBe16(arp, 1);  // hardware: Ethernet
  putBe16(arp + 2, ETHERTYPE_IPV4);
  arp[4] = 6;
  arp[5] = 4;
  putBe16(arp + 6, operation);
  memcpy(arp + 8, sender_mac, 6);
  putBe32(arp + 14, sender_ip);
  memcpy(arp + 18, target_mac, 6);
  putBe32(arp + 24, target_ip);
  memset(arp + 28, 0, 60 - 14 - 28);
  return 60;
}

// --- receive ---

static void answerArp(struct Net* net, const uint8_t* frame, uint32_t length) {
  const uint8_t* arp = frame + 14;
  if (length < 14 + 28 || getBe16(arp) != 1 || getBe16(arp + 2) != ETHERTYPE_IPV4 || arp[4] != 6 ||
      arp[5] != 4 || getBe16(arp + 6) != 1 || getBe32(arp + 24) != net->ip) {
    net->dropped++;  // not a request for our address
    return;
  }
  uint16_t slot;
  uint8_t* reply = txFrame(net, &slot);
  if (reply == 0) {
    net->dropped++;
    return;
  }
  const uint32_t reply_length =
      putArp(reply, frame + 6, 2, net->mac, net->ip, arp + 8, getBe32(arp + 14));
  txSend(net, slot, reply_length);
  net->arp++;
  net->replies++;
}

static void answerIpv4(struct Net* net, const uint8_t* frame, uint32_t length) {
  const uint8_t* ip = frame + 14;
  if (length < 14 + 20 || ip[0] >> 4 != 4) {
    net->dropped++;
    return;
  }
  const uint32_t header_length = (ip[0] & 15) * 4u;
  const uint32_t total = getBe16(ip + 2);
  if (header_length < 20 || total < header_length || 14 + total > length ||
      checksumFinish(checksumAdd(0, ip, header_length)) != 0 || getBe32(ip + 16) != net->ip ||
      (getBe16(ip + 6) & 0x3fff) != 0) {
    net->dropped++;  // malformed, corrupt, not ours, or a fragment
    return;
  }
  const uint8_t protocol = ip[9];
  const uint8_t* payload = ip + header_length;
  const uint32_t payload_length = total - header_length;
  const uint32_t peer = getBe32(ip + 12);
  const bool icmp_echo =
      protocol == IP_PROTOCOL_ICMP && payload_length >= 8 && payload[0] == 8 && payload[1] == 0;
  const bool udp = protocol == IP_PROTOCOL_UDP && payload_length >= 8 &&
                   getBe16(payload + 4) <= payload_length && getBe16(payload + 4) >= 8;
  if (!icmp_echo && !udp) {
    net->dropped++;
    return;
  }
  uint16_t slot;
  uint8_t* reply = txFrame(net, &slot);
  if (reply == 0) {
    net->dropped++;
    return;
  }
  putEthernet(reply, frame + 6, net->mac, ETHERTYPE_IPV4);
  uint8_t* reply_ip = reply + 14;
  uint8_t* reply_payload = reply_ip + 20;  // no IP options in replies
  uint32_t reply_payload_length;
  if (icmp_echo) {
    // ICMP echo reply (RFC 792): same identifier, sequence and data; type 0.
    reply_payload_length = payload_length;
    memcpy(reply_payload, payload, payload_length);
    reply_payload[0] = 0;
    putBe16(reply_payload + 2, 0);
    putBe16(reply_payload + 2, checksumFinish(checksumAdd(0, reply_payload, payload_length)));
    net->icmp++;
  } else {
    // UDP (RFC 768): ports swapped, the same payload, a correct checksum.
    const uint32_t udp_length = getBe16(payload + 4);
    reply_payload_length = udp_length;
    putBe16(reply_payload, getBe16(payload + 2));
    putBe16(reply_payload + 2, getBe16(payload));
    putBe16(reply_payload + 4, (uint16_t)udp_length);
    putBe16(reply_payload + 6, 0);
    memcpy(reply_payload + 8, payload + 8, udp_length - 8);
    uint8_t pseudo[12];
    putBe32(pseudo, net->ip);
    putBe32(pseudo + 4, peer);
    pseudo[8] = 0;
    pseudo[9] = IP_PROTOCOL_UDP;
    putBe16(pseudo + 10, (uint16_t)udp_length);
    uint16_t sum =
        checksumFinish(checksumAdd(checksumAdd(0, pseudo, 12), reply_payload, udp_length));
    putBe16(reply_payload + 6, sum == 0 ? 0xffff : sum);  // 0 would mean "no checksum"
    net->udp++;
  }
  const uint32_t reply_total = 20 + reply_payload_length;
  reply_ip[0] = 0x45;  // version 4, 5 words of header
  reply_ip[1] = 0;
  putBe16(reply_ip + 2, (uint16_t)reply_total);
  putBe16(reply_ip + 4, net->ip_id++);
  putBe16(reply_ip + 6, 0);
  reply_ip[8] = 64;  // TTL
  reply_ip[9] = protocol;
  putBe16(reply_ip + 10, 0);
  putBe32(reply_ip + 12, net->ip);
  putBe32(reply_ip + 16, peer);
  putBe16(reply_ip + 10, checksumFinish(checksumAdd(0, reply_ip, 20)));
  uint32_t frame_length = 14 + reply_total;
  if (frame_length < 60) {
    memset(reply + frame_length, 0, 60 - frame_length);
    frame_length = 60;
  }
  txSend(net, slot, frame_length);
  net->replies++;
}

static void receive(struct Net* net, const uint8_t* buffer, uint32_t length) {
  net->rx_packets++;
  if (length < NET_HEADER_SIZE + 14 || length > RX_BUFFER_SIZE) {
    net->dropped++;
    return;
  }
  const uint8_t* frame = buffer + NET_HEADER_SIZE;
  const uint32_t frame_length = length - NET_HEADER_SIZE;
  static const uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  if (memcmp(frame, net->mac, 6) != 0 && memcmp(frame, kBroadcast, 6) != 0) {
    net->dropped++;
    return;
  }
  switch (getBe16(frame + 12)) {
    case ETHERTYPE_ARP:
      answerArp(net, frame, frame_length);
      break;
    case ETHERTYPE_IPV4:
      answerIpv4(net, frame, frame_length);
      break;
    default:
      net->dropped++;
  }
}

static void postRx(struct Net* net, uint16_t index) {
  const struct VirtqBuffer buffer = {(uint64_t)net->rx_buffers + (uint64_t)index * RX_BUFFER_SIZE,
                                     RX_BUFFER_SIZE, true};
  if (!virtqAdd(&net->rx, &buffer, 1, (void*)(uint64_t)index)) {
    fatal("internal: no room in the receive queue for a buffer it returned");
  }
}

// --- status, announcements ---

static uint16_t readStatus(struct Net* net) {
  return net->has_status ? virtioConfig16(&net->device, CONFIG_STATUS) : VIRTIO_NET_S_LINK_UP;
}

static void announce(struct Net* net) {
  // A gratuitous ARP: a request for our own address, sent to everyone.
  static const uint8_t kBroadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  static const uint8_t kZero[6] = {0};
  uint16_t slot;
  uint8_t* frame = txFrame(net, &slot);
  if (frame == 0) fatal("no transmit buffer for the gratuitous ARP");
  txSend(net, slot, putArp(frame, kBroadcast, 1, net->mac, net->ip, kZero, net->ip));
  virtqKick(&net->tx);
  // Then VIRTIO_NET_CTRL_ANNOUNCE_ACK, which clears VIRTIO_NET_S_ANNOUNCE.
  uint8_t* command = net->ctrl_buffer;
  command[0] = VIRTIO_NET_CTRL_ANNOUNCE;
  command[1] = VIRTIO_NET_CTRL_ANNOUNCE_ACK;
  command[16] = 0xff;
  const struct VirtqBuffer buffers[2] = {{(uint64_t)command, 2, false},
                                         {(uint64_t)command + 16, 1, true}};
  if (!virtqAdd(&net->ctrl, buffers, 2, 0)) fatal("internal: the control queue is full");
  virtqKick(&net->ctrl);
  void* cookie;
  uint32_t length;
  struct Virtq* queues[1] = {&net->ctrl};
  while (!virtqGetUsed(&net->ctrl, &cookie, &length)) virtioWait(&net->device, queues, 1);
  const uint8_t ack = *(volatile uint8_t*)(command + 16);
  report("net announce garp=1 ack=%s", ack == VIRTIO_NET_OK ? "ok" : "err");
}

static void checkStatus(struct Net* net, bool initial) {
  const uint16_t status = readStatus(net);
  if (!initial && ((status ^ net->status) & VIRTIO_NET_S_LINK_UP)) {
    report("net link=%s", status & VIRTIO_NET_S_LINK_UP ? "up" : "down");
  }
  net->status = status;
  if ((status & VIRTIO_NET_S_ANNOUNCE) && net->has_ctrl_announce) announce(net);
}

// --- setup and loop ---

static void setUp(struct Net* net, const struct GuestConfig* config) {
  char why[256];
  struct VirtioMmioEntry entry;
  if (!virtioFindDevice(config, VIRTIO_ID_NET, &entry)) {
    format(why, sizeof(why), "no virtio-net device among the %u virtio_mmio.device= entries",
           config->virtio_device_count);
    fatal(why);
  }
  // No offload, no mergeable buffers, no multiqueue: the device must then send plain frames.
  const uint64_t wanted = VIRTIO_FEATURE(VIRTIO_NET_F_MAC) | VIRTIO_FEATURE(VIRTIO_NET_F_STATUS) |
                          VIRTIO_FEATURE(VIRTIO_NET_F_CTRL_VQ) |
                          VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_ANNOUNCE);
  if (!virtioStart(&net->device, &entry, VIRTIO_ID_NET, "net", config, wanted, why, sizeof(why))) {
    fatal(why);
  }
  const uint64_t features = net->device.features;
  net->has_status = (features & VIRTIO_FEATURE(VIRTIO_NET_F_STATUS)) != 0;
  const bool has_ctrl = (features & VIRTIO_FEATURE(VIRTIO_NET_F_CTRL_VQ)) != 0;
  net->has_ctrl_announce = has_ctrl && (features & VIRTIO_FEATURE(VIRTIO_NET_F_GUEST_ANNOUNCE));
  const char* mac_source = "device";
  if (features & VIRTIO_FEATURE(VIRTIO_NET_F_MAC)) {
    uint32_t generation;
    do {
      generation = virtioConfigGeneration(&net->device);
      for (int i = 0; i < 6; ++i) net->mac[i] = virtioConfig8(&net->device, CONFIG_MAC + i);
    } while (virtioConfigGeneration(&net->device) != generation);
  } else if (config->net_mac_given) {
    memcpy(net->mac, config->net_mac, 6);
    mac_source = "cmdline";
  } else {
    fatal("the device has no MAC address (VIRTIO_NET_F_MAC) and net.mac= is not given");
  }
  net->ip = config->net_ip;
  net->prefix = config->net_prefix;

  if (!virtqSetup(&net->device, &net->rx, QUEUE_RX, 0, 1, config, why, sizeof(why)) ||
      !virtqSetup(&net->device, &net->tx, QUEUE_TX, 0, 2, config, why, sizeof(why)) ||
      (has_ctrl &&
       !virtqSetup(&net->device, &net->ctrl, QUEUE_CTRL, 0, 2, config, why, sizeof(why)))) {
    fatal(why);
  }
  if (net->tx.max_chain < 2) fatal("the transmit queue has a single entry");
  net->rx_buffers = virtioAlloc((uint64_t)net->rx.size * RX_BUFFER_SIZE, 4096, "receive buffers");
  // Each packet holds one slot: one descriptor with indirect tables, else two.
  const uint32_t tx_slots = net->device.indirect ? net->tx.size : net->tx.size / 2u;
  net->tx_slots = virtioAlloc((uint64_t)tx_slots * TX_SLOT_SIZE, 4096, "transmit buffers");
  net->free_tx = virtioAlloc(2ull * tx_slots, 8, "transmit slots");
  for (uint32_t i = 0; i < tx_slots; ++i) net->free_tx[net->free_tx_count++] = (uint16_t)i;
  net->ctrl_buffer = virtioAlloc(64, 64, "control buffer");
  // Section 5.1.5: fill the receive queue before DRIVER_OK.
  for (uint16_t i = 0; i < net->rx.size; ++i) postRx(net, i);
  virtioDriverOk(&net->device);
  virtqKick(&net->rx);

  checkStatus(net, true);
  char mac[18];
  formatMac(net->mac, mac, sizeof(mac));
  const uint32_t ip = net->ip;
  report(
      "net up mac=%s ip=%u.%u.%u.%u/%u link=%s mac_source=%s features=0x%lx queue_size=%u "
      "indirect=%u event_idx=%u irq=%u announce=%u",
      mac, ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255, net->prefix,
      !net->has_status                     ? "unknown"
      : net->status & VIRTIO_NET_S_LINK_UP ? "up"
                                           : "down",
      mac_source, features, net->rx.size, net->device.indirect, net->device.event_idx,
      net->device.irq_mode, net->has_ctrl_announce);
}

void runNet(const struct GuestConfig* config) {
  static struct Net net;
  setUp(&net, config);
  uint64_t config_changes = net.device.config_changes;
  const uint64_t now = rdtsc();
  struct RateLimiter config_poll = rateLimiterStart(now, microsecondsToTsc(CONFIG_POLL_US));
  struct RateLimiter stats = rateLimiterStart(now, tscPerSecond());
  struct Virtq* queues[2] = {&net.rx, &net.tx};
  for (;;) {
    bool received = false;
    void* cookie;
    uint32_t length;
    while (virtqGetUsed(&net.rx, &cookie, &length)) {
      const uint16_t index = (uint16_t)(uint64_t)cookie;
      receive(&net, net.rx_buffers + (uint64_t)index * RX_BUFFER_SIZE, length);
      postRx(&net, index);
      received = true;
    }
    if (received) {
      virtqKick(&net.rx);
      virtqKick(&net.tx);
    }
    reclaimTx(&net);

    const uint64_t tsc = rdtsc();
    if (net.device.irq_mode || rateLimiterDue(&config_poll, tsc)) {
      if (virtioPollConfigChanges(&net.device) != config_changes) {
        config_changes = net.device.config_changes;
        checkStatus(&net, false);
      }
    }
    if (config->net_stats && rateLimiterDue(&stats, tsc)) {
      report("net stats rx=%lu tx=%lu arp=%lu icmp=%lu udp=%lu dropped=%lu", net.rx_packets,
             net.tx_packets, net.arp, net.icmp, net.udp, net.dropped);
    }
    if (config->net_packets != 0 && net.replies >= config->net_packets) {
      while (net.tx.in_flight != 0) {  // the replies are out before the guest ends
        virtioWait(&net.device, &queues[1], 1);
        reclaimTx(&net);
      }
      report("net done replies=%lu rx=%lu tx=%lu arp=%lu icmp=%lu udp=%lu dropped=%lu", net.replies,
             net.rx_packets, net.tx_packets, net.arp, net.icmp, net.udp, net.dropped);
      exitGuest(GUEST_EXIT_SUCCESS);
    }
    if (!received) virtioWait(&net.device, queues, 2);
  }
}
