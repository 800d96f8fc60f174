/*
 * sha256: SHA-256 (FIPS 180-4), streaming and one-shot, for content hashes — the chat template
 * check, image content hashes (megabytes per image) and prefix-cache block keys. Dependency-free:
 * a portable implementation, and the x86 SHA extensions (SHA-NI) when the CPU has them, chosen
 * at sha256_init — about 5x faster, which matters for image hashes. Both are checked against the
 * FIPS test vectors and against each other in tests/check_sha256.c.
 */
#ifndef QVL_SHA256_H
#define QVL_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256_ctx {
	uint32_t h[8];
	void (*blocks)(uint32_t h[8], const uint8_t *p, size_t nblocks);  /* the implementation */
	uint64_t nbytes;
	uint8_t buf[64];
	size_t nbuf;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
/* The same, always with the portable implementation (for tests and comparisons). */
void sha256_init_portable(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, uint8_t out[32]);
void sha256(const void *data, size_t n, uint8_t out[32]);
/* Lower-case hex of a digest into hex[65]. */
void sha256_hex(const uint8_t digest[32], char hex[65]);

#endif
