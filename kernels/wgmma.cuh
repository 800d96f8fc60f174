/*
 * wgmma: the PTX wrappers of Hopper's tensor-core products for gemm_wgmma.cu and
 * prefill_attention_wgmma.cu (sm_90a only: wgmma is an arch-specific instruction, so these
 * compile to a trap elsewhere and the host never launches them there).
 *
 * wgmma.mma_async: one warpgroup (4 warps, 128 threads) computes D (64 × N, fp32 registers) +=
 * A (64 × 16) · B (16 × N), A and B read from shared memory through 64-bit matrix descriptors.
 * Operands are "K-major" (16-bit elements contiguous along k; wgmma_desc_sw128_mn below is the
 * one exception, an MN-major B) in the 128-byte
 * swizzled layout: a tile of R rows × 64 elements is R rows of 128 bytes, 8-row groups 1024
 * bytes apart (the descriptor's stride byte offset), and within a group the 16-byte chunk c of
 * row r sits at chunk position c ^ (r mod 8). The tile must start 1024-byte aligned; the k16
 * slices of the 64 elements are the descriptor's start address plus 32 bytes each (the
 * hardware applies the swizzle to the final address).
 *
 * Accumulator layout of m64nN (per warpgroup thread t, warp w = t / 32, lane l = t mod 32): for
 * each 8-column block j, registers 4j .. 4j+3 hold D[r][c], D[r][c+1], D[r+8][c], D[r+8][c+1]
 * with r = 16w + l / 4 and c = 8j + 2 (l mod 4).
 */
#ifndef QVL_KERNELS_WGMMA_CUH
#define QVL_KERNELS_WGMMA_CUH

#include <stdint.h>

/* The descriptor of an MN-major, 128-byte swizzled operand (B read "transposed", imm-trans-b 1:
 * 16-bit elements contiguous along N): k-row r of a 64-wide N block is 128 bytes at r · 128,
 * 8-row groups 1024 bytes apart (stride byte offset), chunk c of row r at chunk position
 * c ^ (r mod 8), and the next 64 N elements lbo_bytes further (leading byte offset). A k16
 * slice starts 16 rows (2048 bytes) after the previous one. */
static __device__ __forceinline__ uint64_t wgmma_desc_sw128_mn(uint32_t smem_addr, uint32_t lbo_bytes)
{
	uint64_t d = 0;
	d |= (uint64_t)((smem_addr & 0x3FFFF) >> 4);
	d |= (uint64_t)((lbo_bytes >> 4) & 0x3FFF) << 16;
	d |= (uint64_t)(1024 >> 4) << 32;
	d |= (uint64_t)1 << 62;
	return d;
}

/* The descriptor of a K-major, 128-byte swizzled tile at shared address smem_addr. */
static __device__ __forceinline__ uint64_t wgmma_desc_sw128(uint32_t smem_addr)
{
	uint64_t d = 0;
	d |= (uint64_t)((smem_addr & 0x3FFFF) >> 4);   /* start address, bits 0-13 */
	d |= (uint64_t)1 << 16;                         /* leading byte offset (unused here) */
	d |= (uint64_t)(1024 >> 4) << 32;               /* stride byte offset: 8 rows of 128 B */
	d |= (uint64_t)1 << 62;                         /* swizzle mode: 128 bytes */
	return d;
}

static __device__ __forceinline__ void wgmma_fence(void)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
	asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

static __device__ __forceinline__ void wgmma_commit(void)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
	asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

/* Waits until at most N committed wgmma groups of this warpgroup are pending. */
template <int N> static __device__ __forceinline__ void wgmma_wait(void)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
	asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}

/* Makes this thread's generic-proxy writes to shared memory (cp.async data included) visible
 * to the async proxy that wgmma reads through. */
static __device__ __forceinline__ void fence_proxy_async_smem(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

/* Register-pinning helper: keeps the compiler from moving accumulator reads or writes across
 * a wgmma (its registers are written asynchronously until wgmma_wait). */
template <int N> static __device__ __forceinline__ void wgmma_pin(float (&d)[N])
{
#pragma unroll
	for (int i = 0; i < N; i++)
		asm volatile("" : "+f"(d[i])::"memory");
}

/* D (64 × N) (+)= A (64 × 16, descriptor a) · B (16 × N, descriptor b); scale_d 0: D = A·B.
 * One macro per shape, instantiated for bf16 and fp16: the instruction names both, and inline
 * asm takes only a literal string (the operand lists are the accumulator registers in order). */
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WGMMA_ASM(...) asm volatile(__VA_ARGS__)
#else
#define WGMMA_ASM(...) __trap()
#endif

/* The accumulator operands of the wrappers below: the registers %0 .. %N−1 of the asm string
 * and the matching "+f" list, for N = 32 and 64. */
#define WGMMA_D32_REGS                                                                            \
	"%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"                   \
	"%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define WGMMA_D64_REGS                                                                            \
	WGMMA_D32_REGS ","                                                                        \
	"%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"         \
	"%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define WGMMA_D32_OPS(d)                                                                          \
	"+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),       \
	"+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]),                \
	"+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]),             \
	"+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]),             \
	"+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]),             \
	"+f"(d[31])
#define WGMMA_D64_OPS(d)                                                                          \
	WGMMA_D32_OPS(d),                                                                         \
	"+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]),             \
	"+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]),             \
	"+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),             \
	"+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),             \
	"+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]),             \
	"+f"(d[62]), "+f"(d[63])

/* The same for N = 48 registers (m64n96). */
#define WGMMA_D48_REGS                                                                            \
	WGMMA_D32_REGS ","                                                                        \
	"%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47"
#define WGMMA_D48_OPS(d)                                                                          \
	WGMMA_D32_OPS(d),                                                                         \
	"+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]),             \
	"+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]),             \
	"+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47])

/* The same for N = 128 registers (m64n256). */
#define WGMMA_D128_REGS                                                                     \
	WGMMA_D64_REGS "," \
	"%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79," \
	"%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95," \
	"%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111," \
	"%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define WGMMA_D128_OPS(d)                                                                   \
	WGMMA_D64_OPS(d), \
	"+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), \
	"+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), \
	"+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), \
	"+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), \
	"+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), \
	"+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), \
	"+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), \
	"+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), \
	"+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), \
	"+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), \
	"+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])

#define WGMMA_M64N64K16(TY)                                                                        \
static __device__ __forceinline__ void wgmma_m64n64k16_##TY(float(&d)[32], uint64_t a,             \
								uint64_t b, int scale_d)           \
{                                                                                                  \
	WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                     \
		  "wgmma.mma_async.sync.aligned.m64n64k16.f32." #TY "." #TY " {" WGMMA_D32_REGS    \
		  "}, %32, %33, p, 1, 1, 0, 0;\n}\n"                                               \
		  : WGMMA_D32_OPS(d)                                                               \
		  : "l"(a), "l"(b), "r"(scale_d));                                                 \
}

#define WGMMA_M64N128K16(TY)                                                                       \
static __device__ __forceinline__ void wgmma_m64n128k16_##TY(float(&d)[64], uint64_t a,            \
								uint64_t b, int scale_d)           \
{                                                                                                  \
	WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                     \
		  "wgmma.mma_async.sync.aligned.m64n128k16.f32." #TY "." #TY " {" WGMMA_D64_REGS   \
		  "}, %64, %65, p, 1, 1, 0, 0;\n}\n"                                               \
		  : WGMMA_D64_OPS(d)                                                               \
		  : "l"(a), "l"(b), "r"(scale_d));                                                 \
}

/* D (64 × 128) += A (64 × 16, bf16 in registers: four .b32 a thread, the m16n8k16 A fragment of
 * the thread's warp for rows 16w..16w+15) · B (16 × 128, MN-major descriptor b: imm-trans-b 1).
 * The C layout of m64nN is this A layout for 16 columns (two 8-column blocks), so an fp32 score
 * tile feeds the next product straight from its accumulators. */
static __device__ __forceinline__ void wgmma_m64n128k16_bf16_rs_tb(float (&d)[64],
								  const uint32_t (&a)[4], uint64_t b)
{
	WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
		  "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {" WGMMA_D64_REGS
		  "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
		  : WGMMA_D64_OPS(d)
		  : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
}

/* m64n96k16, fp16 operands only (the decode steps' gate/up product, gemm_glu_tma.cu) */
static __device__ __forceinline__ void wgmma_m64n96k16_f16(float (&d)[48], uint64_t a, uint64_t b,
							    int scale_d)
{
	WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %50, 0;\n"
		  "wgmma.mma_async.sync.aligned.m64n96k16.f32.f16.f16 {" WGMMA_D48_REGS
		  "}, %48, %49, p, 1, 1, 0, 0;\n}\n"
		  : WGMMA_D48_OPS(d)
		  : "l"(a), "l"(b), "r"(scale_d));
}

/* m64n256k16, fp16 operands only (the prompt steps' gate/up product, gemm_glu_tma.cu) */
static __device__ __forceinline__ void wgmma_m64n256k16_f16(float (&d)[128], uint64_t a, uint64_t b,
							     int scale_d)
{
	WGMMA_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
		  "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {" WGMMA_D128_REGS
		  "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
		  : WGMMA_D128_OPS(d)
		  : "l"(a), "l"(b), "r"(scale_d));
}

WGMMA_M64N64K16(bf16)
WGMMA_M64N64K16(f16)
WGMMA_M64N128K16(bf16)
WGMMA_M64N128K16(f16)

#undef WGMMA_M64N64K16
#undef WGMMA_M64N128K16
#undef WGMMA_D32_REGS
#undef WGMMA_D64_REGS
#undef WGMMA_D32_OPS
#undef WGMMA_D64_OPS
#undef WGMMA_D128_REGS
#undef WGMMA_D48_REGS
#undef WGMMA_D48_OPS
#undef WGMMA_D128_OPS
#undef WGMMA_ASM

#endif
