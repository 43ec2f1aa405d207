// Formatting and line output (see print.h). Used at CPL3, and at CPL0 by the exception handler.
#include "print.h"

#include <stdint.h>

#include "serial.h"

#define REPORT_PREFIX "flotilla-guest: "
#define REPORT_LINE_MAX 512

struct Output {
  char* out;
  size_t size;
  size_t length;
};

static void put(struct Output* output, char c) {
  if (output->length + 1 < output->size) output->out[output->length++] = c;
}

static void putUnsigned(struct Output* output, uint64_t value, unsigned base) {
  char digits[20];
  int count = 0;
  do {
    unsigned digit = (unsigned)(value % base);
    digits[count++] = (char)(digit < 10 ? '0' + digit : 'a' + digit - 10);
    value /= base;
  } while (value != 0);
  while (count > 0) put(output, digits[--count]);
}

size_t formatV(char* out, size_t size, const char* format, va_list args) {
  struct Output output = {out, size, 0};
  for (const char* p = format; *p != '\0'; ++p) {
    if (*p != '%') {
      put(&output, *p);
      continue;
    }
    ++p;
    size_t precision = (size_t)-1;  // %.*s: at most this many characters of the string
    if (p[0] == '.' && p[1] == '*') {
      int given = va_arg(args, int);
      precision = given < 0 ? 0 : (size_t)given;
      p += 2;
    }
    int is_long = 0;
    if (*p == 'l') {
      is_long = 1;
      ++p;
    }
    switch (*p) {
      case 's': {
        const char* s = va_arg(args, const char*);
        for (size_t i = 0; i < precision && s[i] != '\0'; ++i) put(&output, s[i]);
        break;
      }
      case 'c':
        put(&output, (char)va_arg(args, int));
        break;
      case 'd': {
        int64_t value = is_long ? va_arg(args, int64_t) : va_arg(args, int);
        if (value < 0) {
          put(&output, '-');
          putUnsigned(&output, (uint64_t)0 - (uint64_t)value, 10);
        } else {
          putUnsigned(&output, (uint64_t)value, 10);
        }
        break;
      }
      case 'u':
        putUnsigned(&output, is_long ? va_arg(args, uint64_t) : va_arg(args, unsigned), 10);
        break;
      case 'x':
        putUnsigned(&output, is_long ? va_arg(args, uint64_t) : va_arg(args, unsigned), 16);
        break;
      case '%':
        put(&output, '%');
        break;
      default:  // unknown conversion (a bug in a format string): show it, do not guess
        put(&output, '%');
        if (*p == '\0')
          --p;  // a trailing '%': stop at the terminator
        else
          put(&output, *p);
        break;
    }
  }
  if (size > 0) out[output.length] = '\0';
  return output.length;
}

size_t format(char* out, size_t size, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  size_t length = formatV(out, size, fmt, args);
  va_end(args);
  return length;
}

void report(const char* fmt, ...) {
  char line[REPORT_LINE_MAX];
  size_t length = format(line, sizeof(line), "%s", REPORT_PREFIX);
  va_list args;
  va_start(args, fmt);
  // Leave room for the newline, which is appended even when the text was truncated.
  length += formatV(line + length, sizeof(line) - length - 1, fmt, args);
  va_end(args);
  line[length++] = '\n';
  serialWrite(line, length);
}
