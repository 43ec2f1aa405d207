// The memory functions the compiler may call even in freestanding code. Written with string
// instructions so that the compiler cannot turn them back into calls to themselves.
#include "lib.h"

void* memcpy(void* destination, const void* source, size_t size) {
  void* result = destination;
  __asm__ volatile("rep movsb" : "+D"(destination), "+S"(source), "+c"(size) : : "memory");
  return result;
}

void* memmove(void* destination, const void* source, size_t size) {
  if (destination <= source || (const char*)source + size <= (char*)destination) {
    return memcpy(destination, source, size);
  }
  // Overlapping with the destination above the source: copy backwards.
  char* d = (char*)destination + size - 1;
  const char* s = (const char*)source + size - 1;
  __asm__ volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(size) : : "memory");
  return destination;
}

void* memset(void* destination, int value, size_t size) {
  void* result = destination;
  __asm__ volatile("rep stosb" : "+D"(destination), "+c"(size) : "a"(value) : "memory");
  return result;
}

int memcmp(const void* a, const void* b, size_t size) {
  const unsigned char* x = a;
  const unsigned char* y = b;
  for (size_t i = 0; i < size; ++i) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}
