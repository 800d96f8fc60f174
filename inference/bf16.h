/*
 * bf16: conversions between float and the 16-bit floats of model files (bfloat16, IEEE half).
 *
 * bf16 is the top half of an IEEE float32; float → bf16 rounds to nearest, ties to even, as
 * PyTorch does (NaN stays NaN). f16 conversions follow IEEE 754 binary16 with subnormals, as
 * torch's .half() and .float() do. All inline and branch-light: they sit in inner loops of the
 * CPU backend and of weight loading.
 */
#ifndef QVL_BF16_H
#define QVL_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static inline uint16_t f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)      /* NaN: keep it quiet and non-zero */
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u);            /* round to nearest even */
	return (uint16_t)(u >> 16);
}

/* dst[i] = f32_to_bf16(src[i]) for i < n, the same bits, vectorised where the CPU allows
 * (bf16.c). */
void bf16_round_array(uint16_t *dst, const float *src, size_t n);

static inline float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;
	uint32_t u;
	if (exp == 0x1f) {
		u = sign | 0x7f800000u | (man << 13);           /* inf / NaN */
	} else if (exp != 0) {
		u = sign | ((exp + 112u) << 23) | (man << 13);  /* normal: rebias 15 → 127 */
	} else if (man == 0) {
		u = sign;                                       /* ±0 */
	} else {                                                /* subnormal: normalise */
		int e = -1;
		do {
			man <<= 1;
			e++;
		} while (!(man & 0x400u));
		u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
	}
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static inline uint16_t f32_to_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
	uint32_t a = u & 0x7fffffffu;
	if (a > 0x7f800000u)
		return sign | 0x7e00u;                          /* NaN */
	if (a >= 0x477ff000u)                                   /* rounds to ≥ 65520: inf */
		return sign | 0x7c00u;
	if (a < 0x38800000u) {                                  /* below 2^-14: subnormal or 0 */
		if (a < 0x33000000u)                            /* below half the smallest subnormal */
			return sign;
		/* value = man * 2^(E-150); the subnormal count is value * 2^24 = man >> (126-E) */
		uint32_t man = (a & 0x7fffffu) | 0x800000u;
		uint32_t s = 126u - (a >> 23);
		uint32_t r = man >> s;
		uint32_t rem = man & ((1u << s) - 1u), mid = 1u << (s - 1);
		if (rem > mid || (rem == mid && (r & 1u)))
			r++;
		return sign | (uint16_t)r;
	}
	uint32_t r = a - 0x38000000u;                           /* rebias 127 → 15, keep 10+13 bits */
	r += 0xfffu + ((r >> 13) & 1u);                         /* round to nearest even */
	return sign | (uint16_t)(r >> 13);
}

/* f32_to_f16(bf16_to_f32(b)), the short way where it is exact: a bf16 of magnitude 2^-14 …
 * 65280 (bf16 exponents 113 … 142) is an fp16 normal with the same 8 significant bits (the
 * decoder's fp16 weights, text_cuda.c); everything else takes the general path. */
static inline uint16_t bf16_to_f16(uint16_t b)
{
	uint32_t e = (b >> 7) & 0xffu;
	if (e >= 113u && e <= 142u)
		return (uint16_t)((b & 0x8000u) | ((e - 112u) << 10) | ((b & 0x7fu) << 3));
	return f32_to_f16(bf16_to_f32(b));
}

#endif
