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
 * Each CTA reads a contiguous B/G bytes (rounded down to the stage size, so the TB/s column is
 * the bytes actually read over the time). Time: median of 15 measurements of 10 launches back
 * to back between CUDA events (the launches pipeline as a step's kernels do without PDL), each
 * launch on other data of a 2 GiB pool, so none of it is in the 50 MB L2.
 *
 * What it says (H100 80GB HBM3, tests/bench/PERF.md session 9): with enough bytes in flight a
 * CTA (bulk copies), 32-132 CTAs read 8.4 MB in ~5.7 µs, 16.8 MB in ~8.3, 25.2 MB in ~11 and
 * 50.3 MB in ~18.5: 1.2-2.8 µs over the time at 2.9 TB/s, a launch's ramp and tail, which no
 * kernel reading those bytes avoids unless PDL starts its loads under the previous kernel.
 */
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CK(call)                                                                              \
	do {                                                                                  \
		cudaError_t e_ = (call);                                                      \
		if (e_ != cudaSuccess) {                                                      \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,            \
				cudaGetErrorString(e_));                                      \
			exit(1);                                                              \
		}                                                                             \
	} while (0)

template <int U>
__global__ void __launch_bounds__(256) ldg_kernel(const uint4 *src, size_t n_vec, unsigned *sink)
{
	const uint4 *p = src + (size_t)blockIdx.x * n_vec;
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
__global__ void __launch_bounds__(128) bulk_kernel(const uint8_t *src, size_t bytes, unsigned *sink)
{
	extern __shared__ __align__(128) uint8_t ring[];
	__shared__ __align__(8) uint64_t full[NST];
	const uint8_t *p = src + (size_t)blockIdx.x * bytes;
	const int n = (int)(bytes / SB);
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
	size_t unit;   /* a CTA's bytes are a multiple of this */
	void (*launch)(int g, const uint8_t *src, size_t bytes, unsigned *sink);
};

template <int U> static void launch_ldg(int g, const uint8_t *src, size_t bytes, unsigned *sink)
{
	ldg_kernel<U><<<g, 256>>>((const uint4 *)src, bytes / 16, sink);
}

template <int NST, int SB>
static void launch_bulk(int g, const uint8_t *src, size_t bytes, unsigned *sink)
{
	bulk_kernel<NST, SB><<<g, 128, NST * SB>>>(src, bytes, sink);
}

template <int NST, int SB> static void allow_smem(void)
{
	CK(cudaFuncSetAttribute(bulk_kernel<NST, SB>, cudaFuncAttributeMaxDynamicSharedMemorySize,
				NST * SB));
}

int main(void)
{
	int n_dev = 0;
	if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev < 1) {
		fprintf(stderr, "bench_stream_cuda: no GPU\n");
		return 77;
	}
	cudaDeviceProp prop;
	CK(cudaGetDeviceProperties(&prop, 0));
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
	CK(cudaMalloc((void **)&buf, pool));
	CK(cudaMemset(buf, 1, pool));
	CK(cudaMalloc((void **)&sink, 4));
	cudaEvent_t e0, e1;
	CK(cudaEventCreate(&e0));
	CK(cudaEventCreate(&e1));
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
				const size_t per = (size_t)(m * 1e6 / g) / v.unit * v.unit;
				if (per == 0) {
					printf(" %15s", "-");
					continue;
				}
				const size_t total = per * (size_t)g, step = (total + 4095) & ~(size_t)4095;
				size_t off = 0;
				std::vector<float> t;
				for (int r = 0; r < 17; r++) {
					enum { REPS = 10 };
					CK(cudaEventRecord(e0));
					for (int k = 0; k < REPS; k++) {
						if (off + total > pool)
							off = 0;
						v.launch(g, buf + off, per, sink);
						off += step;
					}
					CK(cudaEventRecord(e1));
					CK(cudaEventSynchronize(e1));
					CK(cudaGetLastError());
					float ms;
					CK(cudaEventElapsedTime(&ms, e0, e1));
					if (r >= 2)   /* two warm-up measurements */
						t.push_back(ms * 1000.f / REPS);
				}
				std::sort(t.begin(), t.end());
				const float us = t[t.size() / 2];
				printf(" %6.2f (%4.2f) ", us, (double)total / us * 1e-6);
			}
			printf("\n");
		}
	}
	CK(cudaFree(buf));
	CK(cudaFree(sink));
	return 0;
}
