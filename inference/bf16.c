/*
 * bf16: float arrays to bf16 in bulk (bf16.h has the scalar conversions and the rounding rule).
 *
 * The vision tower rounds an image's pixel_values to bf16 on the host before the upload
 * (vision_cuda.c: 1.2 M values for a 448x448 image, on the image request's critical path). The
 * scalar loop does not vectorise (its NaN branch); on x86-64 with AVX2 (checked at run time) 16
 * values a step take the same integer operations as f32_to_bf16 on 8-lane vectors, NaN lanes
 * selected by a mask, so the bits are f32_to_bf16's for every input. Dev machine (one core,
 * 1.2 M random bit patterns, arrays resident): 0.40 ms scalar, 0.12-0.16 ms AVX2.
 */
#include "bf16.h"

#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>

/* Values [0, n rounded down to 16) of src into dst; returns how many. */
__attribute__((target("avx2")))
static size_t round_avx2(uint16_t *dst, const float *src, size_t n)
{
	const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
	const __m256i inf = _mm256_set1_epi32(0x7f800000);
	const __m256i half = _mm256_set1_epi32(0x7fff);
	const __m256i one = _mm256_set1_epi32(1);
	const __m256i quiet = _mm256_set1_epi32(0x400000);   /* 0x40 after the shift */
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256i u[2], r[2];
		u[0] = _mm256_loadu_si256((const __m256i *)(const void *)(src + i));
		u[1] = _mm256_loadu_si256((const __m256i *)(const void *)(src + i + 8));
		for (int k = 0; k < 2; k++) {
			/* |u| > inf as signed 32-bit: both sides are below 2^31 */
			__m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u[k], abs_mask), inf);
			__m256i odd = _mm256_and_si256(_mm256_srli_epi32(u[k], 16), one);
			__m256i rn = _mm256_add_epi32(u[k], _mm256_add_epi32(half, odd));
			r[k] = _mm256_srli_epi32(_mm256_blendv_epi8(rn, _mm256_or_si256(u[k], quiet),
								    nan), 16);
		}
		/* packus works within 128-bit lanes: (r0 lo, r1 lo, r0 hi, r1 hi) → reorder */
		__m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8);
		_mm256_storeu_si256((__m256i *)(void *)(dst + i), p);
	}
	return i;
}
#endif

void bf16_round_array(uint16_t *dst, const float *src, size_t n)
{
	size_t i = 0;
#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx2"))
		i = round_avx2(dst, src, n);
#endif
	for (; i < n; i++)
		dst[i] = f32_to_bf16(src[i]);
}
