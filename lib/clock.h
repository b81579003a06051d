/* Clocks. Monotonic time for every deadline, timeout and rate limit (it
 * never jumps); wall-clock time only for what is shown or signed (a sheet's
 * date, an event's time).
 *
 * State machines do not call these: they take the time as an argument (an
 * injected clock) so their tests can drive time. Thread-safe.
 */
#ifndef VITALED_LIB_CLOCK_H
#define VITALED_LIB_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t clock_mono_ms(void);
/* CLOCK_MONOTONIC in microseconds (benchmarks, latency figures). */
uint64_t clock_mono_us(void);
/* CLOCK_REALTIME in milliseconds since the epoch. */
int64_t clock_real_ms(void);

#endif
