/* Start-up for qemu's mps2 boards (Cortex-M4F mps2-an386, Cortex-M7 mps2-an500), bare metal with newlib.
 *
 * The vector table gives the initial stack and the reset handler; the reset handler turns the FPU on (the firmware
 * is built with the hard-float ABI, and the first floating-point instruction would fault otherwise), copies .data's
 * initial values from flash, zeroes .bss, paints the stack so a run can measure how deep it went, opens semihosting's
 * stdio, runs the C++ constructors, calls main and exits with its status. It does newlib's crt0 work itself because
 * rdimon's crt0 moves the stack to where the debugger's heap report says (qemu: the end of the board's 16 MB PSRAM),
 * outside the RAM the linker script reserves and measures.
 *
 * SysTick counts the processor clock. Under `qemu-system-arm -icount shift=0` every instruction advances the virtual
 * clock by 1 ns and the mps2 clock is 25 MHz, so one tick is 40 instructions: edgecnn_instructions() is the number of
 * instructions executed since edgecnn_start_counting(), exact to 40. */
#include <stddef.h>
#include <stdint.h>

extern uint32_t __data_start__, __data_end__, __data_load__, __bss_start__, __bss_end__, __StackTop, __StackLimit;
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
extern int main(void);
extern void exit(int status);
extern void _exit(int status);
extern void *_sbrk(ptrdiff_t increment);
extern char end;

#define STACK_PAINT 0xA5A5A5A5u
#define CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SYSTICK_MAX 0x00FFFFFFu
#define INSTRUCTIONS_PER_TICK 40u

static volatile uint32_t systick_wraps;

void Reset_Handler(void) {
#if defined(__ARM_FP)
  CPACR |= 0xFu << 20; /* CP10 and CP11 (the FPU): full access */
  __asm volatile("dsb\n isb");
#endif
  for (uint32_t *src = &__data_load__, *dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (uint32_t *p = &__bss_start__; p < &__bss_end__; ++p) *p = 0;
  /* Paint the stack below this function's frame: the deepest unpainted word later shows the stack's peak. */
  uint32_t here;
  for (volatile uint32_t *p = &__StackLimit; p < &here - 64; ++p) *p = STACK_PAINT;
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}

/* A fault ends the run with exit status 70 (the firmware crashed) rather than hanging qemu. */
void Fault_Handler(void) { _exit(70); }

void SysTick_Handler(void) { ++systick_wraps; }

void edgecnn_start_counting(void) {
  SYST_CSR = 0;
  SYST_RVR = SYSTICK_MAX;
  SYST_CVR = 0;
  systick_wraps = 0;
  SYST_CSR = 0x7u; /* enable, interrupt on wrap, processor clock */
}

uint64_t edgecnn_instructions(void) {
  uint32_t wraps, value;
  do { /* a wrap between the two reads would pair a new count with the old wraps */
    wraps = systick_wraps;
    value = SYST_CVR;
  } while (wraps != systick_wraps);
  const uint64_t ticks = (uint64_t)wraps * (SYSTICK_MAX + 1u) + (value ? SYSTICK_MAX + 1u - value : 0u);
  return ticks * INSTRUCTIONS_PER_TICK;
}

/* Bytes of the reserved stack a run has touched so far (the painted words it overwrote). */
uint32_t edgecnn_stack_used(void) {
  const uint32_t *p = &__StackLimit;
  while (p < &__StackTop && *p == STACK_PAINT) ++p;
  return (uint32_t)((uintptr_t)&__StackTop - (uintptr_t)p);
}

__attribute__((section(".vectors"), used)) void (*const vector_table[16])(void) = {
    (void (*)(void))(&__StackTop), Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, SysTick_Handler,
};

/* Bytes of heap newlib has handed out so far (its stdio buffers: TFLM itself allocates nothing). */
uint32_t edgecnn_heap_used(void) { return (uint32_t)((char *)_sbrk(0) - &end); }
