/*
 * rng: a counter-based random generator (splitmix64 of key + counter).
 *
 * Value i of a stream depends only on (key, i), never on how many values were drawn before or
 * on which thread drew them: a checkpoint made by `qvl mkmodel --seed N` is identical however
 * its work is split, and a test can regenerate any element directly. splitmix64 passes BigCrush
 * when used this way (as a hash of a Weyl sequence) and costs a few multiplies per 64 bits.
 */
#ifndef QVL_RNG_H
#define QVL_RNG_H

#include <stdint.h>

static inline uint64_t rng_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A stream key from a seed and a stream number (a tensor's index, a request id…). */
static inline uint64_t rng_key(uint64_t seed, uint64_t stream)
{
	return rng_mix64(rng_mix64(seed + 0x9e3779b97f4a7c15ull) ^ (stream * 0xd1b54a32d192ed03ull));
}

/* The i-th 64-bit value of the stream. */
static inline uint64_t rng_u64(uint64_t key, uint64_t i)
{
	return rng_mix64(key + (i + 1) * 0x9e3779b97f4a7c15ull);
}

/* Map 32 random bits to a float uniform in [-1, 1) (24-bit resolution). */
static inline float rng_sym_unit(uint32_t bits)
{
	return (float)(int32_t)(bits & 0xffffff00u) * (1.0f / 2147483648.0f);
}

#endif
