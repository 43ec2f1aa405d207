// The C library's memory functions, implemented in lib.c (there is no libc here).
#pragma once

#include <stddef.h>

void* memcpy(void* destination, const void* source, size_t size);
void* memmove(void* destination, const void* source, size_t size);
void* memset(void* destination, int value, size_t size);
int memcmp(const void* a, const void* b, size_t size);
