/* clock.h - the two clocks of the runtime, named apart:
 *   clock_wall_s()   wall-clock seconds since the epoch (timestamps shown to users)
 *   clock_mono_ms()  monotonic milliseconds with sub-ms precision (uv_hrtime), for rate math
 * Loop time (uv_now) is a third, coarser clock: code that has the loop reads it directly. */
#ifndef CHATGW_CLOCK_H
#define CHATGW_CLOCK_H

double clock_wall_s(void);
double clock_mono_ms(void);

#endif
