// COM1 16550A driver (see serial.h). Every register access is a VM exit, so output is costly:
// workloads print at most about once per second.
#include "serial.h"

#include "io.h"

#define COM1 0x3f8
#define UART_DATA 0         // THR when written (DLAB=0); divisor low byte when DLAB=1
#define UART_IER 1          // interrupt enable (DLAB=0); divisor high byte when DLAB=1
#define UART_FCR 2          // FIFO control
#define UART_LCR 3          // line control
#define UART_MCR 4          // modem control
#define UART_LSR 5          // line status
#define UART_LCR_DLAB 0x80  // divisor latch access
#define UART_LCR_8N1 0x03
#define UART_FCR_ENABLE_CLEAR 0x07  // enable the FIFOs and clear both
#define UART_MCR_DTR_RTS 0x03       // OUT2 stays off: it would route the UART IRQ to the PIC
#define UART_LSR_THRE 0x20          // transmit holding register empty

static volatile int writing;

void serialInit(void) {
  outb(COM1 + UART_IER, 0);  // polled: no UART interrupts
  outb(COM1 + UART_LCR, UART_LCR_DLAB);
  outb(COM1 + UART_DATA, 1);  // divisor 1: 115200 baud (meaningless to a VMM, set anyway)
  outb(COM1 + UART_IER, 0);
  outb(COM1 + UART_LCR, UART_LCR_8N1);
  outb(COM1 + UART_FCR, UART_FCR_ENABLE_CLEAR);
  outb(COM1 + UART_MCR, UART_MCR_DTR_RTS);
}

void serialWrite(const char* data, size_t length) {
  writing = 1;
  for (size_t i = 0; i < length; ++i) {
    // A VMM without a UART returns 0xff on reads, so this never spins forever there either.
    while ((inb(COM1 + UART_LSR) & UART_LSR_THRE) == 0) cpuRelax();
    outb(COM1 + UART_DATA, (unsigned char)data[i]);
  }
  writing = 0;
}

int serialMidLine(void) {
  return writing;
}
