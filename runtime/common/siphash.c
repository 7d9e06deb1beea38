/* siphash.c - SipHash-1-3 and the process-wide random key (see siphash.h). */
#include "siphash.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static uint64_t rotl64(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

#define SIP_ROUND(v0, v1, v2, v3)                                                                  \
  do {                                                                                             \
    v0 += v1;                                                                                      \
    v1 = rotl64(v1, 13);                                                                           \
    v1 ^= v0;                                                                                      \
    v0 = rotl64(v0, 32);                                                                           \
    v2 += v3;                                                                                      \
    v3 = rotl64(v3, 16);                                                                           \
    v3 ^= v2;                                                                                      \
    v0 += v3;                                                                                      \
    v3 = rotl64(v3, 21);                                                                           \
    v3 ^= v0;                                                                                      \
    v2 += v1;                                                                                      \
    v1 = rotl64(v1, 17);                                                                           \
    v1 ^= v2;                                                                                      \
    v2 = rotl64(v2, 32);                                                                           \
  } while (0)

uint64_t siphash13(const void *data, size_t len, const uint64_t key[2]) {
  const unsigned char *p = data;
  uint64_t k0 = key[0], k1 = key[1];
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
  size_t whole = len & ~(size_t)7;
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m = 0;
    for (int j = 7; j >= 0; j--)
      m = (m << 8) | p[i + (size_t)j];
    v3 ^= m;
    SIP_ROUND(v0, v1, v2, v3);
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t j = 0; j < (len & 7); j++)
    b |= (uint64_t)p[whole + j] << (8 * j);
  v3 ^= b;
  SIP_ROUND(v0, v1, v2, v3);
  v0 ^= b;
  v2 ^= 0xff;
  SIP_ROUND(v0, v1, v2, v3);
  SIP_ROUND(v0, v1, v2, v3);
  SIP_ROUND(v0, v1, v2, v3);
  return v0 ^ v1 ^ v2 ^ v3;
}

void siphash_process_key(uint64_t key[2]) {
  static uint64_t k[2];
  static int seeded;
  if (!seeded) {
    if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
      /* No entropy yet (very early boot): a weaker seed still beats a fixed one. */
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
      k[1] = (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&ts;
    }
    seeded = 1;
  }
  key[0] = k[0];
  key[1] = k[1];
}
