/*
 * silu_mul.cuh: the SwiGLU arithmetic of silu_mul.h as a device function, shared by the silu_mul
 * kernels and by gemm_wgmma.cu's gate/up epilogue (kn_gemm_glu, gemm.h), so that both compute
 * the same bits from the same fp32 gate and up values.
 */
#ifndef QVL_KERNELS_SILU_MUL_CUH
#define QVL_KERNELS_SILU_MUL_CUH

/* The bf16 bits (round to nearest even; NaN stays NaN) of silu(g)·u = g / (1 + exp(−g)) · u in
 * fp32, with the accurate expf and IEEE division. */
static __device__ __forceinline__ unsigned kn_silu_mul_bits(float g, float u)
{
	float v = g / (1.0f + expf(-g)) * u;
	unsigned b = __float_as_uint(v);
	if ((b & 0x7fffffffu) > 0x7f800000u)
		return ((b >> 16) | 0x40u) & 0xffffu;
	return (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
}

#endif
