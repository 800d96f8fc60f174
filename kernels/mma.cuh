/*
 * mma: the PTX wrappers the tensor-core kernels share (prefill_attention.cu,
 * vision_attention.cu, and gemm_wgmma.cu's copies): cp.async 16-byte copies, ldmatrix (plain
 * and transposed), the m16n8k16 bf16 MMA with fp32 accumulation, ex2.approx, and bf16x2
 * packing. sm_80 and later.
 */
#ifndef QVL_KERNELS_MMA_CUH
#define QVL_KERNELS_MMA_CUH

#include <stdint.h>

#include <cuda_bf16.h>

/* 16-byte global → shared copy to shared address s; when !valid nothing is read and the 16
 * bytes are zeroed. */
static __device__ __forceinline__ void cp_async16_shared(unsigned s, const void *src, bool valid)
{
	int n = valid ? 16 : 0;
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(n));
}

/* The same to a generic pointer into shared memory. */
static __device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
	cp_async16_shared((unsigned)__cvta_generic_to_shared(dst), src, valid);
}

static __device__ __forceinline__ void cp_async_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::);
}

static __device__ __forceinline__ void cp_async_wait_all(void)
{
	asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

/* Until at most N of this thread's most recent cp.async groups are still in flight. */
template <int N> static __device__ __forceinline__ void cp_async_wait(void)
{
	asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

static __device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p)
{
	unsigned a = (unsigned)__cvta_generic_to_shared(p);
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(a));
}

static __device__ __forceinline__ void ldsm_x4_trans(uint32_t r[4], const void *p)
{
	unsigned a = (unsigned)__cvta_generic_to_shared(p);
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(a));
}

/* c (16×8 fp32) += a (16×16 bf16, row) · b (16×8 bf16, col) */
static __device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], uint32_t b0,
						uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
		     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
		     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* 2^x, flushing denormal results to 0 (they are below bf16's relevance here); 2^-inf = 0 */
static __device__ __forceinline__ float fast_exp2(float x)
{
	float y;
	asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
	return y;
}

static __device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi)
{
	__nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
	return *(uint32_t *)&v;
}

#endif
