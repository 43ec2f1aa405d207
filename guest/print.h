// Output lines of the guest's protocol: every line starts with "flotilla-guest: " and ends
// with "\n" (README.md lists the lines).
#pragma once

#include <stdarg.h>
#include <stddef.h>

// A small printf into `out` (always NUL-terminated, truncated to fit): %s %.*s %c %d %u %x, with an
// `l` modifier for 64-bit integers, and %%. Returns the length written.
size_t formatV(char* out, size_t size, const char* format, va_list args);
size_t format(char* out, size_t size, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

// Prints "flotilla-guest: <formatted>\n" on the serial port in one write.
void report(const char* format, ...) __attribute__((format(printf, 1, 2)));
