/*
 * bench_stream_cuda: how long G CTAs take to read B bytes from device memory, launched back to
 * back on cold data — the floor under any kernel of ours that streams a decode projection's
 * weights (B = 8.4, 16.8, 25.2 and 50.3 MB: o, qkv, down and gate/up of Qwen3-VL-2B), and how
 * many CTAs, and how many bytes in flight each, it takes to get there.
 *
 *   usage: bench_stream_cuda
 *   exits 77 when no GPU is visible
 *
 * Two ways of reading, nothing computed but an XOR that keeps the loads alive:
 *   ldg U:      256 threads a CTA, each with U 16-byte loads in flight (__ldcs, streaming);
 *               U = 4 is 16 KB in flight a CTA, U = 8 32 KB
 *   bulk N×S:   one thread issues 1-D bulk copies (cp.async.bulk, the copy engine) of S bytes
 *               into a ring of N stages completing on mbarriers; 128 threads wait for each
 *               stage, read a word of it, and the stage is refilled; N·S bytes in flight a CTA
 * B (rounded down to 4 KB for plain loads, to a stage for bulk copies) is split evenly: each
 * CTA reads a contiguous share, the shares within one unit of each other (table 1).
 *
 * Table 2 puts the read (bulk 4 × 32 KB, 132 CTAs) behind a small kernel like the step's
 * RMSNorm, pairs back to back, once in plain stream order and once with PDL: the small kernel
 * lets its successor be scheduled at its start and the read issues its first four stages
 * before griddepcontrol.wait, as a GEMM of ours could with its weights; what the read adds to
 * the small kernel's time is then its cost in a step.
 * Time: median of 15 measurements of 10 launches (or pairs) back to back between CUDA events,
 * each launch on other data of a 2 GiB pool, so none of it is in the 50 MB L2.
 *
 * What it says (H100 80GB HBM3, tests/bench/PERF.md session 9): with bulk copies and 64-192 KB
 * in flight a CTA, 64-132 CTAs read 8.4 MB in ~5.8 µs, 16.8 MB in ~8.4, 25.2 MB in ~11.1 and
 * 50.3 MB in ~19.4, i.e. 2.1-2.9 µs over the time at 2.9 TB/s, a launch's ramp and tail. Behind
 * a small kernel with PDL the same reads add only 0.5-1.6 µs over that time.
 */
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "cuda_check.h"

/* CTA b of G takes units [b·n/G, (b+1)·n/G) of n: every CTA within one unit of the others. */
static __device__ __forceinline__ void cta_range(size_t n, size_t *lo, size_t *hi)
{
	*lo = n * blockIdx.x / gridDim.x;
	*hi = n * (blockIdx.x + 1) / gridDim.x;
}

template <int U>
__global__ void __launch_bounds__(256) ldg_kernel(const uint4 *src, size_t n_vec_all,
						  unsigned *sink)
{
	size_t lo, hi;
	cta_range(n_vec_all, &lo, &hi);
	const uint4 *p = src + lo;
	const size_t n_vec = hi - lo;
	unsigned acc = 0;
	for (size_t i = threadIdx.x; i < n_vec; i += 256 * U) {
		uint4 v[U];
#pragma unroll
		for (int u = 0; u < U; u++) {
			size_t j = i + (size_t)u * 256;
			v[u] = j < n_vec ? __ldcs(p + j) : make_uint4(0, 0, 0, 0);
		}
#pragma unroll
		for (int u = 0; u < U; u++)
			acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
	}
	if (acc == 0x12345678u)   /* never, in practice: keeps the loads */
		sink[0] = acc;
}

static __device__ __forceinline__ uint32_t smem_u32(const void *p)
{
	return (uint32_t)__cvta_generic_to_shared(p);
}

template <int NST, int SB>
__global__ void __launch_bounds__(128) bulk_kernel(const uint8_t *src, size_t n_stages_all,
						   unsigned *sink, int pdl)
{
	extern __shared__ __align__(128) uint8_t ring[];
	__shared__ __align__(8) uint64_t full[NST];
	size_t lo, hi;
	cta_range(n_stages_all, &lo, &hi);
	const uint8_t *p = src + lo * SB;
	const int n = (int)(hi - lo);
	if (threadIdx.x == 0) {
		for (int s = 0; s < NST; s++)
			asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(&full[s])));
		asm volatile("fence.mbarrier_init.release.cluster;");
	}
	__syncthreads();
	auto issue = [&](int i) {
		const int s = i % NST;
		asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;"
			     ::"r"(smem_u32(&full[s])), "r"(SB));
		asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes "
			     "[%0], [%1], %2, [%3];"
			     ::"r"(smem_u32(ring + (size_t)s * SB)), "l"(p + (size_t)i * SB), "r"(SB),
			     "r"(smem_u32(&full[s]))
			     : "memory");
	};
	if (threadIdx.x == 0)
		for (int i = 0; i < NST && i < n; i++)
			issue(i);
	if (pdl)   /* the first stages are in flight under the predecessor; nothing after this
		    * would read what it writes, but a GEMM's activations would */
		asm volatile("griddepcontrol.wait;" ::: "memory");
	unsigned acc = 0;
	for (int i = 0; i < n; i++) {
		const int s = i % NST;
		const uint32_t parity = (i / NST) & 1;
		uint32_t done = 0;
		do {
			asm volatile("{\n.reg .pred q;\n"
				     "mbarrier.try_wait.parity.shared::cta.b64 q, [%1], %2;\n"
				     "selp.u32 %0, 1, 0, q;\n}\n"
				     : "=r"(done)
				     : "r"(smem_u32(&full[s])), "r"(parity)
				     : "memory");
		} while (!done);
		acc ^= ((const unsigned *)(ring + (size_t)s * SB))[threadIdx.x];
		__syncthreads();   /* every thread is done with stage s before it is refilled */
		if (threadIdx.x == 0 && i + NST < n)
			issue(i + NST);
	}
	if (acc == 0x12345678u)
		sink[0] = acc;
}

struct variant {
	const char *name;
	size_t unit;   /* the bytes read are a multiple of this, split evenly over the CTAs */
	void (*launch)(int g, const uint8_t *src, size_t bytes, unsigned *sink);
};

template <int U> static void launch_ldg(int g, const uint8_t *src, size_t bytes, unsigned *sink)
{
	ldg_kernel<U><<<g, 256>>>((const uint4 *)src, bytes / 16, sink);
}

template <int NST, int SB>
static void launch_bulk(int g, const uint8_t *src, size_t bytes, unsigned *sink)
{
	bulk_kernel<NST, SB><<<g, 128, NST * SB>>>(src, bytes / SB, sink, 0);
}

/* A decode step's small kernel (an RMSNorm of 128 rows of 2048 fp32: ~1 MB read and written)
 * that lets its successor be scheduled as soon as it starts, as the step's kernels do. */
__global__ void __launch_bounds__(256) small_kernel(const float *x, float *y, int n, int pdl)
{
	if (pdl) {
		asm volatile("griddepcontrol.wait;" ::: "memory");
		asm volatile("griddepcontrol.launch_dependents;");
	}
	for (int i = blockIdx.x * 256 + threadIdx.x; i < n; i += gridDim.x * 256)
		y[i] = x[i] * 1.0001f;
}

/* kernel with args, on stream 0, with the programmatic-serialisation attribute when pdl */
template <typename... A> static void launch_ex(void (*k)(A...), int g, int threads, size_t smem,
					       bool pdl, A... args)
{
	cudaLaunchConfig_t cfg = {};
	cfg.gridDim = dim3(g);
	cfg.blockDim = dim3(threads);
	cfg.dynamicSmemBytes = smem;
	cudaLaunchAttribute attr[1];
	attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
	attr[0].val.programmaticStreamSerializationAllowed = pdl;
	cfg.attrs = attr;
	cfg.numAttrs = 1;
	CUDA_CHECK(cudaLaunchKernelEx(&cfg, k, args...));
}

/* Each next() is the following `total` bytes of the pool, wrapping at its end: a launch never
 * reads what one of the last pool/total launches read, so nothing it reads is in the L2. */
struct rotor {
	uint8_t *pool;
	size_t size, total, step, off;
	rotor(uint8_t *p, size_t sz, size_t tot)
		: pool(p), size(sz), total(tot), step((tot + 4095) & ~(size_t)4095), off(0)
	{
	}
	uint8_t *next(void)
	{
		if (off + total > size)
			off = 0;
		uint8_t *b = pool + off;
		off += step;
		return b;
	}
};

/* µs a call of one(): the median of 15 measurements (after 2 untimed ones) of 10 calls back to
 * back between CUDA events. */
template <typename F> static float median_us(cudaEvent_t e0, cudaEvent_t e1, F one)
{
	enum { MEASURES = 17, WARM = 2, REPS = 10 };
	std::vector<float> t;
	for (int r = 0; r < MEASURES; r++) {
		CUDA_CHECK(cudaEventRecord(e0));
		for (int k = 0; k < REPS; k++)
			one();
		CUDA_CHECK(cudaEventRecord(e1));
		CUDA_CHECK(cudaEventSynchronize(e1));
		CUDA_CHECK(cudaGetLastError());
		float ms;
		CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
		if (r >= WARM)
			t.push_back(ms * 1000.f / REPS);
	}
	std::sort(t.begin(), t.end());
	return t[t.size() / 2];
}

template <int NST, int SB> static void allow_smem(void)
{
	CUDA_CHECK(cudaFuncSetAttribute(bulk_kernel<NST, SB>,
					cudaFuncAttributeMaxDynamicSharedMemorySize, NST * SB));
}

int main(void)
{
	int n_dev = 0;
	if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < 1) {
		fprintf(stderr, "bench_stream_cuda: no GPU\n");
		return 77;
	}
	cudaDeviceProp prop;
	CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
	allow_smem<4, 16384>();
	allow_smem<8, 16384>();
	allow_smem<4, 32768>();
	allow_smem<6, 32768>();
	const variant vs[] = {
		{ "ldg U=4 (16 KB in flight a CTA)", 4096, launch_ldg<4> },
		{ "ldg U=8 (32 KB)", 4096, launch_ldg<8> },
		{ "bulk 4 x 16 KB", 16384, launch_bulk<4, 16384> },
		{ "bulk 8 x 16 KB", 16384, launch_bulk<8, 16384> },
		{ "bulk 4 x 32 KB", 32768, launch_bulk<4, 32768> },
		{ "bulk 6 x 32 KB", 32768, launch_bulk<6, 32768> },
	};
	const double mb[] = { 8.39, 16.8, 25.2, 50.3 };
	const int gs[] = { 16, 32, 48, 64, 96, 128, 132, 264 };
	const size_t pool = (size_t)2 << 30;
	uint8_t *buf;
	unsigned *sink;
	CUDA_CHECK(cudaMalloc((void **)&buf, pool));
	CUDA_CHECK(cudaMemset(buf, 1, pool));
	CUDA_CHECK(cudaMalloc((void **)&sink, 4));
	cudaEvent_t e0, e1;
	CUDA_CHECK(cudaEventCreate(&e0));
	CUDA_CHECK(cudaEventCreate(&e1));
	printf("bench_stream_cuda on %s (%d SMs): µs a launch, median of 15 × 10 back-to-back "
	       "launches on cold data, (TB/s)\n", prop.name, prop.multiProcessorCount);
	for (const variant &v : vs) {
		printf("\n%-34s", v.name);
		for (double m : mb)
			printf(" %8.1f MB     ", m);
		printf("\n");
		for (int g : gs) {
			printf("  G = %3d %24s", g, "");
			for (double m : mb) {
				const size_t total = (size_t)(m * 1e6) / v.unit * v.unit;
				rotor rot(buf, pool, total);
				const float us = median_us(e0, e1, [&] {
					v.launch(g, rot.next(), total, sink);
				});
				printf(" %6.2f (%4.2f) ", us, (double)total / us * 1e-6);
			}
			printf("\n");
		}
	}
	/* Table 2: the read behind a small kernel, without and with PDL (its first stages issued
	 * before griddepcontrol.wait), pairs back to back; what the read adds to the pair. */
	float *xa, *ya;
	const int n_small = 128 * 2048;
	CUDA_CHECK(cudaMalloc((void **)&xa, n_small * sizeof(float)));
	CUDA_CHECK(cudaMalloc((void **)&ya, n_small * sizeof(float)));
	CUDA_CHECK(cudaMemset(xa, 0, n_small * sizeof(float)));
	printf("\nBehind a small kernel (128 × 2048 fp32 scaled, 132 CTAs), bulk 4 x 32 KB, G = 132: "
	       "µs a pair, and what the read adds to the small kernel alone\n");
	printf("%-28s", "");
	for (double m : mb)
		printf(" %8.1f MB          ", m);
	printf("\n");
	auto time_pairs = [&](bool pdl, double m, bool with_read) {
		const size_t total = (size_t)(m * 1e6) / 32768 * 32768;
		rotor rot(buf, pool, total);
		return median_us(e0, e1, [&] {
			launch_ex(small_kernel, 132, 256, 0, pdl, (const float *)xa, ya, n_small,
				  (int)pdl);
			if (with_read)
				launch_ex(bulk_kernel<4, 32768>, 132, 128, (size_t)4 * 32768, pdl,
					  (const uint8_t *)rot.next(), total / 32768, sink, (int)pdl);
		});
	};
	for (int pdl = 0; pdl < 2; pdl++) {
		const float alone = time_pairs(pdl, mb[0], false);
		printf("%-28s", pdl ? "PDL" : "no PDL");
		for (double m : mb) {
			const float pair = time_pairs(pdl, m, true);
			printf(" %6.2f (+%5.2f)     ", pair, pair - alone);
		}
		printf("   (small kernel alone %.2f)\n", alone);
	}
	CUDA_CHECK(cudaFree(xa));
	CUDA_CHECK(cudaFree(ya));
	CUDA_CHECK(cudaFree(buf));
	CUDA_CHECK(cudaFree(sink));
	return 0;
}
