/*
 * pdl: programmatic dependent launch for the kernels of a decode step.
 *
 * A decode step of one sequence is ~290 small kernels in a row; between two of them the GPU
 * drains the first and ramps the second, a microsecond or two each that no kernel can hide on
 * its own. With PDL (sm_90) a kernel launched through kn_launch may be scheduled while its
 * predecessor's last CTAs still run: every kernel here first waits for its predecessor to
 * complete (kn_pdl_wait, griddepcontrol.wait: full completion and memory visibility, so the
 * order of reads and writes is exactly the stream's), then lets its own successor be scheduled
 * (kn_pdl_trigger).
 *
 * What may overlap: launch and CTA start-up, and reads of memory that no kernel of the step
 * writes. Before its kn_pdl_wait a kernel may read only such memory (the weights: the GEMV of
 * gemm.cu asks the L2 for its first rows of W with kn_prefetch_l2 and loads its first pieces of
 * them into registers there, so that its DRAM ramp hides under the predecessor; rmsnorm loads
 * its weight vector; gemm.h and rmsnorm.h state the contract that this puts on them), or memory
 * its header proves final (paged_attention.h: the block table and the cached positions before
 * the new one); everything a predecessor may have written (activations,
 * residuals, KV) is read, and anything at all is written, only after the wait, so the results
 * are exactly those of plain stream order. A kernel that keeps a whole wave of CTAs resident
 * leaves no room for its successor's CTAs; the GEMV caps its grid for that reason.
 *
 * A kernel launched this way after a kernel that never triggers (cuBLASLt's, a memcpy) simply
 * starts when that one ends. QVL_PDL=0 in the environment launches without the attribute (for
 * A/B measurements). CUDA graphs keep the programmatic edges when a stream is captured.
 */
#ifndef QVL_KERNELS_PDL_CUH
#define QVL_KERNELS_PDL_CUH

#include <stdlib.h>

#include <cuda_runtime.h>

#include "cuda_check.h"

static __device__ __forceinline__ void kn_pdl_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

static __device__ __forceinline__ void kn_pdl_trigger(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

/* Asks the L2 to fetch bytes (a multiple of 16) at p (16-byte aligned, global memory) without
 * waiting for them (cp.async.bulk.prefetch.L2, sm_90; a no-op elsewhere). Only a hint: nothing
 * is written and no later load depends on it for correctness. */
static __device__ __forceinline__ void kn_prefetch_l2(const void *p, unsigned bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
	asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

static inline int kn_pdl_enabled(void)
{
	static int on = -1;   /* read once */
	if (on < 0) {
		const char *s = getenv("QVL_PDL");
		on = !(s && *s == '0');
	}
	return on;
}

/* kernel<<<grid, block, smem, stream>>>(args...), with PDL allowed. */
template <typename... KArgs, typename... Args>
static void kn_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
		      cudaStream_t stream, Args &&...args)
{
	cudaLaunchAttribute attr;
	attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
	attr.val.programmaticStreamSerializationAllowed = kn_pdl_enabled();
	cudaLaunchConfig_t cfg = {};
	cfg.gridDim = grid;
	cfg.blockDim = block;
	cfg.dynamicSmemBytes = smem;
	cfg.stream = stream;
	cfg.attrs = &attr;
	cfg.numAttrs = 1;
	CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, static_cast<Args &&>(args)...));
}

#endif
