// Command-line parsing (see cmdline.h). Strict on purpose: an unknown key, a key of another
// workload, a duplicate, or a malformed number is an error, so that a typo in a test cannot
// silently run the wrong experiment.
#include "cmdline.h"

#include "layout.h"
#include "print.h"

#define DEFAULT_COUNTER_MIB 64
#define MAX_REGION_MIB 4096
#define DEFAULT_BLK_MIB 16
#define DEFAULT_BLK_QD 4
#define DEFAULT_BENCH_BS 4096
#define DEFAULT_BENCH_MIB 64
#define DEFAULT_BENCH_SECONDS 5
#define MAX_BENCH_BS (1 << 20)
#define MAX_QUEUE_SIZE 32768  // the largest split virtqueue (virtio 1.2, 2.7)
#define SECTOR_SIZE 512

struct WorkloadName {
  const char* name;
  enum Workload workload;
};

static const struct WorkloadName kWorkloads[] = {
    {"idle", WORKLOAD_IDLE},           {"selftest", WORKLOAD_SELFTEST},
    {"compute", WORKLOAD_COMPUTE},     {"counter", WORKLOAD_COUNTER},
    {"dirty", WORKLOAD_DIRTY},         {"blk", WORKLOAD_BLK},
    {"blk-bench", WORKLOAD_BLK_BENCH}, {"net", WORKLOAD_NET},
};

#define ONLY(workload) (1u << (workload))
#define ANY_WORKLOAD 0xffffffffu
#define VIRTIO_WORKLOADS (ONLY(WORKLOAD_BLK) | ONLY(WORKLOAD_BLK_BENCH) | ONLY(WORKLOAD_NET))

enum ParameterKind {
  KIND_NUMBER,       // decimal, in [min, max], into a uint64_t
  KIND_CHOICE,       // one of `choices`, its index into a uint64_t
  KIND_IPV4_PREFIX,  // a.b.c.d/n into net_ip and net_prefix
  KIND_MAC,          // xx:xx:xx:xx:xx:xx into net_mac
  KIND_VIRTIO_MMIO,  // <size>@<base>:<irq>[:<id>], appended to virtio_devices; may repeat
};

static const char* const kBenchPatterns[] = {"randread", "randwrite", "seqread", "seqwrite", 0};

struct Parameter {
  const char* key;
  uint32_t workloads;  // bit (1 << workload) set for each workload that takes it
  enum ParameterKind kind;
  size_t offset;  // KIND_NUMBER, KIND_CHOICE: of the uint64_t in struct GuestConfig
  uint64_t min, max;
  bool required;
  const char* const* choices;  // KIND_CHOICE: the names, 0-terminated
};

#define FIELD(name) offsetof(struct GuestConfig, name)

static const struct Parameter kParameters[] = {
    {"cpus", ONLY(WORKLOAD_SELFTEST), KIND_NUMBER, FIELD(cpus), 1, MAX_CPUS, false, 0},
    {"iterations", ONLY(WORKLOAD_COMPUTE), KIND_NUMBER, FIELD(iterations), 1, UINT64_MAX, false, 0},
    {"counter_mib", ONLY(WORKLOAD_COUNTER), KIND_NUMBER, FIELD(counter_mib), 1, MAX_REGION_MIB,
     false, 0},
    {"dirty_mib", ONLY(WORKLOAD_DIRTY), KIND_NUMBER, FIELD(dirty_mib), 1, MAX_REGION_MIB, true, 0},
    {"rate_mbps", ONLY(WORKLOAD_DIRTY), KIND_NUMBER, FIELD(rate_mbps), 1, 1000000, true, 0},
    {"duration_s", ONLY(WORKLOAD_DIRTY), KIND_NUMBER, FIELD(duration_s), 1, 1000000, false, 0},
    // QEMU's microvm appends these to any command line when it has virtio-mmio devices (with
    // acpi=off), so every workload accepts them; only the virtio workloads use them.
    {"virtio_mmio.device", ANY_WORKLOAD, KIND_VIRTIO_MMIO, 0, 0, 0, false, 0},
    {"virtio.indirect", VIRTIO_WORKLOADS, KIND_NUMBER, FIELD(virtio_indirect), 0, 1, false, 0},
    {"virtio.event_idx", VIRTIO_WORKLOADS, KIND_NUMBER, FIELD(virtio_event_idx), 0, 1, false, 0},
    {"virtio.irq", VIRTIO_WORKLOADS, KIND_NUMBER, FIELD(virtio_irq), 0, 1, false, 0},
    {"virtio.queue_size", VIRTIO_WORKLOADS, KIND_NUMBER, FIELD(virtio_queue_size), 2,
     MAX_QUEUE_SIZE, false, 0},
    {"blk.mib", ONLY(WORKLOAD_BLK), KIND_NUMBER, FIELD(blk_mib), 1, 1 << 20, false, 0},
    {"blk.seed", ONLY(WORKLOAD_BLK), KIND_NUMBER, FIELD(blk_seed), 0, UINT64_MAX, false, 0},
    {"blk.qd", ONLY(WORKLOAD_BLK), KIND_NUMBER, FIELD(blk_qd), 1, 64, false, 0},
    {"blk.verify-only", ONLY(WORKLOAD_BLK), KIND_NUMBER, FIELD(blk_verify_only), 0, 1, false, 0},
    {"blk.loop", ONLY(WORKLOAD_BLK), KIND_NUMBER, FIELD(blk_loop), 0, 1, false, 0},
    {"bench.pattern", ONLY(WORKLOAD_BLK_BENCH), KIND_CHOICE, FIELD(bench_pattern), 0, 0, false,
     kBenchPatterns},
    {"bench.bs", ONLY(WORKLOAD_BLK_BENCH), KIND_NUMBER, FIELD(bench_bs), SECTOR_SIZE, MAX_BENCH_BS,
     false, 0},
    {"bench.qd", ONLY(WORKLOAD_BLK_BENCH), KIND_NUMBER, FIELD(bench_qd), 1, 128, false, 0},
    {"bench.seconds", ONLY(WORKLOAD_BLK_BENCH), KIND_NUMBER, FIELD(bench_seconds), 1, 1000000,
     false, 0},
    {"bench.ops", ONLY(WORKLOAD_BLK_BENCH), KIND_NUMBER, FIELD(bench_ops), 1, UINT64_MAX, false, 0},
    {"bench.mib", ONLY(WORKLOAD_BLK_BENCH), KIND_NUMBER, FIELD(bench_mib), 1, 1 << 20, false, 0},
    {"net.ip", ONLY(WORKLOAD_NET), KIND_IPV4_PREFIX, 0, 0, 0, true, 0},
    {"net.mac", ONLY(WORKLOAD_NET), KIND_MAC, 0, 0, 0, false, 0},
    {"net.packets", ONLY(WORKLOAD_NET), KIND_NUMBER, FIELD(net_packets), 1, UINT64_MAX, false, 0},
    {"net.stats", ONLY(WORKLOAD_NET), KIND_NUMBER, FIELD(net_stats), 0, 1, false, 0},
};

#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

// A word of the command line: [start, start + length), split at its first '='.
struct Word {
  const char* start;
  size_t length;
  size_t key_length;  // == length when there is no '='
};

static bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// Finds the next word at or after *cursor; false at the end.
static bool nextWord(const char** cursor, struct Word* word) {
  const char* p = *cursor;
  while (isSpace(*p)) ++p;
  if (*p == '\0') return false;
  word->start = p;
  while (*p != '\0' && !isSpace(*p)) ++p;
  word->length = (size_t)(p - word->start);
  word->key_length = 0;
  while (word->key_length < word->length && word->start[word->key_length] != '=') {
    ++word->key_length;
  }
  *cursor = p;
  return true;
}

static bool keyIs(const struct Word* word, const char* key) {
  size_t i = 0;
  for (; i < word->key_length; ++i) {
    if (key[i] != word->start[i]) return false;
  }
  return key[i] == '\0';
}

static const char* valueOf(const struct Word* word) {
  return word->start + word->key_length + 1;
}
static size_t valueLength(const struct Word* word) {
  return word->length - word->key_length - 1;
}

static bool valueIs(const struct Word* word, const char* text) {
  const char* value = valueOf(word);
  size_t length = valueLength(word);
  size_t i = 0;
  for (; i < length; ++i) {
    if (text[i] != value[i]) return false;
  }
  return text[i] == '\0';
}

// A decimal number without sign, or false when it is not one or does not fit 64 bits.
static bool parseDecimal(const char* text, size_t length, uint64_t* value) {
  if (length == 0) return false;
  uint64_t result = 0;
  for (size_t i = 0; i < length; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    uint64_t digit = (uint64_t)(text[i] - '0');
    if (result > (UINT64_MAX - digit) / 10) return false;
    result = result * 10 + digit;
  }
  *value = result;
  return true;
}

// A number in hex with a 0x prefix, or in decimal; false when malformed or above 64 bits.
static bool parseHexOrDecimal(const char* text, size_t length, uint64_t* value) {
  if (length > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    uint64_t result = 0;
    for (size_t i = 2; i < length; ++i) {
      char c = text[i];
      uint64_t digit;
      if (c >= '0' && c <= '9') {
        digit = (uint64_t)(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        digit = (uint64_t)(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        digit = (uint64_t)(c - 'A' + 10);
      } else {
        return false;
      }
      if (result >> 60) return false;
      result = (result << 4) | digit;
    }
    *value = result;
    return true;
  }
  return parseDecimal(text, length, value);
}

// Index of the first `stop` character in text[0, length), or length.
static size_t findChar(const char* text, size_t length, char stop) {
  size_t i = 0;
  while (i < length && text[i] != stop) ++i;
  return i;
}

// <size>@<base>:<irq>[:<id>] as Linux's virtio_mmio driver takes it: size with an optional
// K/M/G suffix, size and base in decimal or 0x-hex, the IRQ in decimal; the platform device id
// is accepted and ignored.
static bool parseVirtioMmio(const char* text, size_t length, struct VirtioMmioEntry* entry) {
  size_t at = findChar(text, length, '@');
  if (at == 0 || at == length) return false;
  size_t size_length = at;
  uint64_t shift = 0;
  switch (text[size_length - 1]) {
    case 'K':
    case 'k':
      shift = 10;
      break;
    case 'M':
    case 'm':
      shift = 20;
      break;
    case 'G':
    case 'g':
      shift = 30;
      break;
  }
  if (shift != 0) --size_length;
  uint64_t size;
  if (!parseHexOrDecimal(text, size_length, &size) || size == 0 || size >> (64 - shift - 1)) {
    return false;
  }
  size <<= shift;
  const char* rest = text + at + 1;
  size_t rest_length = length - at - 1;
  size_t colon = findChar(rest, rest_length, ':');
  if (colon == rest_length) return false;
  uint64_t base, irq, id;
  if (!parseHexOrDecimal(rest, colon, &base)) return false;
  const char* irq_text = rest + colon + 1;
  size_t irq_length = rest_length - colon - 1;
  size_t second_colon = findChar(irq_text, irq_length, ':');
  if (!parseDecimal(irq_text, second_colon, &irq) || irq > 255) return false;
  if (second_colon != irq_length &&
      !parseDecimal(irq_text + second_colon + 1, irq_length - second_colon - 1, &id)) {
    return false;
  }
  entry->base = base;
  entry->size = size;
  entry->irq = (uint32_t)irq;
  return true;
}

// a.b.c.d/n (n 1-32), into host byte order.
static bool parseIpv4Prefix(const char* text, size_t length, uint32_t* ip, uint32_t* prefix) {
  uint32_t address = 0;
  size_t i = 0;
  for (int octet = 0; octet < 4; ++octet) {
    size_t end = i;
    while (end < length && text[end] >= '0' && text[end] <= '9') ++end;
    uint64_t value;
    if (end - i > 3 || !parseDecimal(text + i, end - i, &value) || value > 255) return false;
    address = (address << 8) | (uint32_t)value;
    if (end == length || text[end] != (octet < 3 ? '.' : '/')) return false;
    i = end + 1;
  }
  uint64_t bits;
  if (!parseDecimal(text + i, length - i, &bits) || bits < 1 || bits > 32) return false;
  *ip = address;
  *prefix = (uint32_t)bits;
  return true;
}

static int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// xx:xx:xx:xx:xx:xx, a unicast address.
static bool parseMac(const char* text, size_t length, uint8_t mac[6]) {
  if (length != 17) return false;
  for (int i = 0; i < 6; ++i) {
    int high = hexDigit(text[3 * i]), low = hexDigit(text[3 * i + 1]);
    if (high < 0 || low < 0 || (i < 5 && text[3 * i + 2] != ':')) return false;
    mac[i] = (uint8_t)(high << 4 | low);
  }
  return (mac[0] & 1) == 0;
}

static bool findWorkload(const char* cmdline, struct GuestConfig* config, char* why,
                         size_t why_size) {
  config->workload = WORKLOAD_IDLE;
  config->workload_name = "idle";
  bool seen = false;
  struct Word word;
  for (const char* cursor = cmdline; nextWord(&cursor, &word);) {
    if (!keyIs(&word, "workload") || word.key_length == word.length) continue;
    if (seen) {
      format(why, why_size, "workload is given twice");
      return false;
    }
    seen = true;
    size_t i = 0;
    while (i < COUNT(kWorkloads) && !valueIs(&word, kWorkloads[i].name)) ++i;
    if (i == COUNT(kWorkloads)) {
      char known[128] = "";
      size_t length = 0;
      for (size_t w = 0; w < COUNT(kWorkloads); ++w) {
        length += format(known + length, sizeof(known) - length, "%s%s", w == 0 ? "" : " ",
                         kWorkloads[w].name);
      }
      format(why, why_size, "unknown workload '%.*s' (known: %s)", (int)valueLength(&word),
             valueOf(&word), known);
      return false;
    }
    config->workload = kWorkloads[i].workload;
    config->workload_name = kWorkloads[i].name;
  }
  return true;
}

// Parses one value of `parameter` into `config`; false with the reason in `why`.
static bool parseValue(const struct Parameter* parameter, const struct Word* word,
                       struct GuestConfig* config, char* why, size_t why_size) {
  const char* value = valueOf(word);
  size_t length = valueLength(word);
  uint64_t* field = (uint64_t*)((char*)config + parameter->offset);
  switch (parameter->kind) {
    case KIND_NUMBER: {
      uint64_t number;
      if (!parseDecimal(value, length, &number) || number < parameter->min ||
          number > parameter->max) {
        format(why, why_size, "%s=%.*s: expected a decimal number from %lu to %lu", parameter->key,
               (int)length, value, parameter->min, parameter->max);
        return false;
      }
      *field = number;
      return true;
    }
    case KIND_CHOICE: {
      char known[128] = "";
      size_t known_length = 0;
      for (uint64_t i = 0; parameter->choices[i] != 0; ++i) {
        if (valueIs(word, parameter->choices[i])) {
          *field = i;
          return true;
        }
        known_length += format(known + known_length, sizeof(known) - known_length, "%s%s",
                               i == 0 ? "" : " ", parameter->choices[i]);
      }
      format(why, why_size, "%s=%.*s: expected one of: %s", parameter->key, (int)length, value,
             known);
      return false;
    }
    case KIND_IPV4_PREFIX:
      if (!parseIpv4Prefix(value, length, &config->net_ip, &config->net_prefix)) {
        format(why, why_size, "%s=%.*s: expected an IPv4 address and prefix length, like %s",
               parameter->key, (int)length, value, "10.0.0.2/24");
        return false;
      }
      return true;
    case KIND_MAC:
      if (!parseMac(value, length, config->net_mac)) {
        format(why, why_size, "%s=%.*s: expected a unicast MAC address, like %s", parameter->key,
               (int)length, value, "52:54:00:12:34:56");
        return false;
      }
      config->net_mac_given = true;
      return true;
    case KIND_VIRTIO_MMIO:
      if (config->virtio_device_count == MAX_VIRTIO_MMIO_DEVICES) {
        format(why, why_size, "more than %u virtio_mmio.device= words", MAX_VIRTIO_MMIO_DEVICES);
        return false;
      }
      if (!parseVirtioMmio(value, length, &config->virtio_devices[config->virtio_device_count])) {
        format(why, why_size, "%s=%.*s: expected <size>@<base>:<irq>, like %s", parameter->key,
               (int)length, value, "512@0xfeb00e00:12");
        return false;
      }
      ++config->virtio_device_count;
      return true;
  }
  return false;
}

// Checks that span several parameters.
static bool checkCombinations(struct GuestConfig* config, char* why, size_t why_size) {
  if (config->virtio_queue_size & (config->virtio_queue_size - 1)) {
    format(why, why_size, "virtio.queue_size=%lu: a split virtqueue's size is a power of 2",
           config->virtio_queue_size);
    return false;
  }
  if (config->workload == WORKLOAD_BLK && config->blk_verify_only && config->blk_loop) {
    format(why, why_size, "blk.verify-only=1 and blk.loop=1 exclude each other");
    return false;
  }
  if (config->workload == WORKLOAD_BLK_BENCH) {
    if (config->bench_bs % SECTOR_SIZE != 0) {
      format(why, why_size, "bench.bs=%lu: not a multiple of %u", config->bench_bs, SECTOR_SIZE);
      return false;
    }
    // Without a limit the benchmark runs for DEFAULT_BENCH_SECONDS.
    if (config->bench_seconds == 0 && config->bench_ops == 0) {
      config->bench_seconds = DEFAULT_BENCH_SECONDS;
    }
  }
  return true;
}

bool parseCommandLine(const char* cmdline, struct GuestConfig* config, char* why, size_t why_size) {
  *config = (struct GuestConfig){0};
  config->counter_mib = DEFAULT_COUNTER_MIB;
  config->blk_mib = DEFAULT_BLK_MIB;
  config->blk_seed = 1;
  config->blk_qd = DEFAULT_BLK_QD;
  config->bench_pattern = BENCH_RANDREAD;
  config->bench_bs = DEFAULT_BENCH_BS;
  config->bench_qd = 1;
  config->bench_mib = DEFAULT_BENCH_MIB;
  if (!findWorkload(cmdline, config, why, why_size)) return false;

  bool given[COUNT(kParameters)] = {false};
  struct Word word;
  for (const char* cursor = cmdline; nextWord(&cursor, &word);) {
    if (word.key_length == word.length || word.key_length == 0) {
      format(why, why_size, "'%.*s' is not key=value", (int)word.length, word.start);
      return false;
    }
    if (keyIs(&word, "workload")) continue;
    size_t i = 0;
    while (i < COUNT(kParameters) && !keyIs(&word, kParameters[i].key)) ++i;
    if (i == COUNT(kParameters)) {
      format(why, why_size, "unknown key '%.*s'", (int)word.key_length, word.start);
      return false;
    }
    const struct Parameter* parameter = &kParameters[i];
    if ((parameter->workloads & ONLY(config->workload)) == 0) {
      format(why, why_size, "%s is not a parameter of workload %s", parameter->key,
             config->workload_name);
      return false;
    }
    if (given[i] && parameter->kind != KIND_VIRTIO_MMIO) {
      format(why, why_size, "%s is given twice", parameter->key);
      return false;
    }
    given[i] = true;
    if (!parseValue(parameter, &word, config, why, why_size)) return false;
  }
  for (size_t i = 0; i < COUNT(kParameters); ++i) {
    if (kParameters[i].required && (kParameters[i].workloads & ONLY(config->workload)) &&
        !given[i]) {
      format(why, why_size, "workload %s needs %s=", config->workload_name, kParameters[i].key);
      return false;
    }
  }
  return checkCombinations(config, why, why_size);
}
