// Command-line parsing (see cmdline.h). Strict on purpose: an unknown key, a key of another
// workload, a duplicate, or a malformed number is an error, so that a typo in a test cannot
// silently run the wrong experiment.
#include "cmdline.h"

#include "layout.h"
#include "print.h"

#define DEFAULT_COUNTER_MIB 64
#define MAX_REGION_MIB 4096

struct WorkloadName {
  const char* name;
  enum Workload workload;
};

static const struct WorkloadName kWorkloads[] = {
    {"idle", WORKLOAD_IDLE},       {"selftest", WORKLOAD_SELFTEST}, {"compute", WORKLOAD_COMPUTE},
    {"counter", WORKLOAD_COUNTER}, {"dirty", WORKLOAD_DIRTY},
};

struct Parameter {
  const char* key;
  enum Workload workload;
  size_t offset;  // of the uint64_t in struct GuestConfig
  uint64_t min, max;
  bool required;
};

static const struct Parameter kParameters[] = {
    {"cpus", WORKLOAD_SELFTEST, offsetof(struct GuestConfig, cpus), 1, MAX_CPUS, false},
    {"iterations", WORKLOAD_COMPUTE, offsetof(struct GuestConfig, iterations), 1, UINT64_MAX,
     false},
    {"counter_mib", WORKLOAD_COUNTER, offsetof(struct GuestConfig, counter_mib), 1, MAX_REGION_MIB,
     false},
    {"dirty_mib", WORKLOAD_DIRTY, offsetof(struct GuestConfig, dirty_mib), 1, MAX_REGION_MIB, true},
    {"rate_mbps", WORKLOAD_DIRTY, offsetof(struct GuestConfig, rate_mbps), 1, 1000000, true},
    {"duration_s", WORKLOAD_DIRTY, offsetof(struct GuestConfig, duration_s), 1, 1000000, false},
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
      format(why, why_size, "unknown workload '%.*s' (known: idle selftest compute counter dirty)",
             (int)valueLength(&word), valueOf(&word));
      return false;
    }
    config->workload = kWorkloads[i].workload;
    config->workload_name = kWorkloads[i].name;
  }
  return true;
}

bool parseCommandLine(const char* cmdline, struct GuestConfig* config, char* why, size_t why_size) {
  *config = (struct GuestConfig){0};
  config->counter_mib = DEFAULT_COUNTER_MIB;
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
    if (parameter->workload != config->workload) {
      format(why, why_size, "%s is not a parameter of workload %s", parameter->key,
             config->workload_name);
      return false;
    }
    if (given[i]) {
      format(why, why_size, "%s is given twice", parameter->key);
      return false;
    }
    given[i] = true;
    uint64_t value;
    if (!parseDecimal(valueOf(&word), valueLength(&word), &value) || value < parameter->min ||
        value > parameter->max) {
      format(why, why_size, "%s=%.*s: expected a decimal number from %lu to %lu", parameter->key,
             (int)valueLength(&word), valueOf(&word), parameter->min, parameter->max);
      return false;
    }
    *(uint64_t*)((char*)config + parameter->offset) = value;
  }
  for (size_t i = 0; i < COUNT(kParameters); ++i) {
    if (kParameters[i].required && kParameters[i].workload == config->workload && !given[i]) {
      format(why, why_size, "workload %s needs %s=", config->workload_name, kParameters[i].key);
      return false;
    }
  }
  return true;
}
