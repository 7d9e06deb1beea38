/* clock.c - wall and monotonic clocks (see clock.h). */
#include "clock.h"

#include <sys/time.h>
#include <uv.h>

double clock_wall_s(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

double clock_mono_ms(void) {
  return (double)uv_hrtime() / 1e6;
}
