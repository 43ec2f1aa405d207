// COM1, a 16550A UART at I/O port 0x3f8: polled output only, no interrupts.
#pragma once

#include <stddef.h>

void serialInit(void);
// Writes the bytes, waiting for room in the transmitter before each one.
void serialWrite(const char* data, size_t length);
// True while some CPU is between the first and last byte of a serialWrite: an exception report
// then starts on a fresh line.
int serialMidLine(void);
