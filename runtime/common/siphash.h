/* siphash.h - keyed SipHash-1-3 and the process-wide random key for hash tables whose keys a
 * client can choose (metrics label values, shared dictionary keys): without the key nobody
 * can precompute colliding inputs to build long chains. */
#ifndef CHATGW_SIPHASH_H
#define CHATGW_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* SipHash-1-3 (one compression round, three finalization rounds) of len bytes at data. */
uint64_t siphash13(const void *data, size_t len, const uint64_t key[2]);

/* Copies the process-wide random key into key. The key is drawn once, on the first call
 * (getrandom; before the entropy pool is ready, a weaker clock/pid/address seed), and stays
 * the same for the life of the process. Event loop thread only. */
void siphash_process_key(uint64_t key[2]);

#endif
